/**
 * The `clean` and `import` commands of main.ts, run as a user runs them.
 */

import { dirname, join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { makeRepo } from "../helpers/make_repo.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const X86 = "core/os/x86_64";

async function flexo(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: Record<string, string> = { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };
  for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    clearEnv: true,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

async function put(path: string, size: number): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeFile(path, new Uint8Array(size));
}

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) out.push(entry.name);
  return out.sort();
}

Deno.test("main.ts clean --dry-run prints what it would remove and keeps it; clean removes it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-main-clean-" });
  try {
    const cache = join(dir, "cache");
    const config = join(dir, "flexo.toml");
    await Deno.writeTextFile(config, `cache_directory = "${cache}"\nnum_versions_retain = 1\n`);
    for (const version of ["1.0-1", "1:0.5-1", "2.0-1"]) {
      await put(join(cache, X86, `tool-${version}-x86_64.pkg.tar.zst`), 1024);
      await put(join(cache, X86, `tool-${version}-x86_64.pkg.tar.zst.sig`), 512);
    }
    await put(join(cache, X86, "core.db"), 100);
    const before = await files(join(cache, X86));

    const dry = await flexo(["clean", "--dry-run", "--config", config]);
    assertEquals(dry.code, 0, dry.stderr);
    const lines = dry.stdout.trim().split("\n");
    assertEquals(lines.slice(0, 4).sort(), [
      `would remove ${join(cache, X86, "tool-1.0-1-x86_64.pkg.tar.zst")} (older version)`,
      `would remove ${join(cache, X86, "tool-1.0-1-x86_64.pkg.tar.zst.sig")} (older version)`,
      `would remove ${join(cache, X86, "tool-2.0-1-x86_64.pkg.tar.zst")} (older version)`,
      `would remove ${join(cache, X86, "tool-2.0-1-x86_64.pkg.tar.zst.sig")} (older version)`,
    ]);
    assertEquals(
      lines.at(-1),
      "Would remove 4 files of 2 package versions; 3 KiB would be freed, 1.6 KiB left.",
    );
    assertEquals(await files(join(cache, X86)), before, "a dry run removes nothing");

    const real = await flexo(["clean", "--config", config]);
    assertEquals(real.code, 0, real.stderr);
    assertEquals(real.stdout.split("\n").filter((line) => line.startsWith("removed ")).length, 4);
    assert(
      real.stdout.includes("Removed 4 files of 2 package versions; 3 KiB freed, 1.6 KiB left."),
      real.stdout,
    );
    assertEquals(await files(join(cache, X86)), [
      "core.db",
      "tool-1:0.5-1-x86_64.pkg.tar.zst",
      "tool-1:0.5-1-x86_64.pkg.tar.zst.sig",
    ]);

    const again = await flexo(["clean", "--config", config]);
    assert(again.stdout.startsWith("Nothing to remove; 3 files"), again.stdout);

    await Deno.writeTextFile(config, `cache_directory = "${cache}"\nnum_versions_retain = 0\n`);
    const off = await flexo(["clean", "--config", config]);
    assert(off.stdout.startsWith("Nothing to do: num_versions_retain = 0"), off.stdout);

    const misuse = await flexo(["check-config", "--dry-run", "--config", config]);
    assertEquals(misuse.code, 2);
    assert(misuse.stderr.includes("--dry-run goes with the clean and prefetch commands"), misuse.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts import DIR seeds the cache from a pacman cache, and says what to do without databases", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-main-import-" });
  try {
    const cache = join(dir, "cache");
    const config = join(dir, "flexo.toml");
    const pacmanCache = join(dir, "pkg");
    await Deno.mkdir(pacmanCache);
    await Deno.writeTextFile(config, `cache_directory = "${cache}"\n`);
    const repo = await makeRepo(join(dir, "mirror"), {
      repo: "core",
      packages: [{ name: "zlib", version: "1.3-1" }],
    });
    const pkg = repo.packages[0];
    await Deno.copyFile(pkg.path, join(pacmanCache, pkg.fileName));

    const blind = await flexo(["import", pacmanCache, "--config", config]);
    assertEquals(blind.code, 1);
    assert(blind.stderr.includes("no repository database in"), blind.stderr);

    await Deno.mkdir(join(cache, X86), { recursive: true });
    await Deno.copyFile(join(repo.osDir, "core.db"), join(cache, X86, "core.db"));
    const result = await flexo(["import", pacmanCache, "--config", config]);
    assertEquals(result.code, 0, result.stderr);
    assertEquals(result.stdout.split("\n")[0], `imported ${join(cache, X86, pkg.fileName)}`);
    assert(result.stdout.includes("Imported 1 packages"), result.stdout);
    assertEquals(await Deno.readFile(join(cache, X86, pkg.fileName)), await Deno.readFile(pkg.path));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
