/**
 * The cache counts of a running proxy (/status, /metrics) are true after its start-up scan and right after
 * `flexo import` ran as another process: both are compared with a walk of the cache directory.
 */

import { join } from "node:path";
import { assertEquals } from "../helpers/assert.ts";
import { runFlexo, startFlexo, writeTestConfig } from "../helpers/flexo_process.ts";
import { makeRepo } from "../helpers/make_repo.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { waitFor } from "../helpers/wait.ts";

const FOLDER = "flexotest/os/x86_64";

/**
 * Bytes and files of the complete files below `root`: downloads in progress under `.partial/` and flexo's own
 * state under `.flexo/` (its usage record, the directory's lock) left out.
 */
async function onDisk(root: string, prefix = ""): Promise<{ bytes: number; files: number }> {
  const total = { bytes: 0, files: 0 };
  for await (const entry of Deno.readDir(join(root, prefix))) {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (relative === ".partial" || relative === ".flexo") continue;
    if (entry.isDirectory) {
      const below = await onDisk(root, relative);
      total.bytes += below.bytes;
      total.files += below.files;
    } else if (entry.isFile) {
      total.bytes += (await Deno.stat(join(root, relative))).size;
      total.files += 1;
    }
  }
  return total;
}

/** The cache numbers of `/status` and of `/metrics`. */
async function shown(url: string) {
  const status = await (await fetch(`${url}/status`)).json();
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const gauge = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(metrics)?.[1]);
  return {
    status: { bytes: status.cache.bytes, files: status.cache.files, complete: status.cache.complete },
    metrics: { bytes: gauge("flexo_cache_size_bytes"), files: gauge("flexo_cache_files") },
  };
}

Deno.test("a running proxy's cache counts are true after its start-up scan and right after flexo import", async () => {
  await withTempDir(async (work) => {
    const cacheDir = join(work, "cache");
    const repo = await makeRepo(join(work, "mirror"), {
      repo: "flexotest",
      packages: [
        { name: "present", version: "1.0-1", size: 20_000 },
        { name: "alpha", version: "1.0-1", size: 30_000 },
        { name: "beta", version: "2.0-1", size: 40_000 },
      ],
    });
    const pkg = (name: string) => repo.packages.find((p) => p.name === name)!;
    await Deno.mkdir(join(cacheDir, FOLDER), { recursive: true });
    await Deno.copyFile(join(repo.osDir, "flexotest.db"), join(cacheDir, FOLDER, "flexotest.db"));
    await Deno.copyFile(pkg("present").path, join(cacheDir, FOLDER, pkg("present").fileName));
    const pacmanCache = join(work, "pkg");
    await Deno.mkdir(pacmanCache);
    for (const name of ["alpha", "beta"]) {
      await Deno.copyFile(pkg(name).path, join(pacmanCache, pkg(name).fileName));
      await Deno.writeTextFile(join(pacmanCache, `${pkg(name).fileName}.sig`), `signature of ${name}`);
    }

    const config = await writeTestConfig(work, { cacheDir, mirror: "http://127.0.0.1:9/" });
    await Deno.writeTextFile(config, "\nshutdown_drain_secs = 0\n", { append: true });
    const flexo = await startFlexo(config);
    try {
      const before = await onDisk(cacheDir);
      assertEquals(before.files, 2);
      // The start-up scan runs in the background; another process's numbers are polled.
      await waitFor("the start-up scan", async () => (await shown(flexo.url)).status.complete);
      assertEquals(await shown(flexo.url), { status: { ...before, complete: true }, metrics: before });

      const imported = await runFlexo(["import", pacmanCache, "--config", config]);
      assertEquals(imported.code, 0, imported.stdout + imported.stderr);
      const after = await onDisk(cacheDir);
      assertEquals(after.files, 6, "two packages with their signatures were imported");
      await waitFor(
        "the counts of the imported files",
        async () => (await shown(flexo.url)).status.files === after.files,
      );
      assertEquals(await shown(flexo.url), { status: { ...after, complete: true }, metrics: after });
    } finally {
      await flexo.stop();
    }
  });
});
