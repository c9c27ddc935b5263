/**
 * Start-up recovery: a download killed half-way resumes after a restart and ends byte-exact; leftovers that
 * cannot be resumed are removed; unreadable entries are skipped without failing.
 */

import { dirname, join } from "node:path";
import { createApp } from "../../src/app/app.ts";
import { recoverPartials } from "../../src/cache/recovery.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { makeRepo, sha256File } from "../helpers/make_repo.ts";
import { testConfig } from "../helpers/test_app.ts";
import { waitFor } from "../helpers/wait.ts";
import { PARTIAL_DIR, pathExists } from "../../src/cache/cache_paths.ts";
import { CacheStore, usableRecord } from "../../src/cache/cache_store.ts";
import { RECORD_AFTER_BYTES } from "../../src/download/partial_file.ts";

const FOLDER = "flexotest/os/x86_64";

async function put(path: string, data: Uint8Array | string): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  if (typeof data === "string") await Deno.writeTextFile(path, data);
  else await Deno.writeFile(path, data);
}

/** Every path below `dir`, relative, folders with a trailing "/", sorted. */
async function tree(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const rel = prefix + entry.name;
    if (entry.isDirectory) out.push(`${rel}/`, ...(await tree(join(dir, entry.name), `${rel}/`)));
    else out.push(rel);
  }
  return out.sort();
}

/** A mirror with a real package, a cache with its database, and a partial copy of the package in `.partial/`. */
async function crashedCache(
  options: { corruptPartial?: boolean } = {},
): Promise<{ mirrorDir: string; cacheDir: string; fileName: string; bytes: Uint8Array; half: number }> {
  const mirrorDir = await Deno.makeTempDir({ prefix: "flexo-recovery-mirror-" });
  const cacheDir = await Deno.makeTempDir({ prefix: "flexo-recovery-cache-" });
  const repo = await makeRepo(mirrorDir, {
    repo: "flexotest",
    packages: [{ name: "big", version: "1:2.0-1", size: 300_000 }],
  });
  const pkg = repo.packages[0];
  // The database as a client synced it through the proxy before the crash.
  await Deno.mkdir(join(cacheDir, FOLDER), { recursive: true });
  await Deno.copyFile(join(repo.osDir, "flexotest.db"), join(cacheDir, FOLDER, "flexotest.db"));
  const bytes = await Deno.readFile(pkg.path);
  const half = Math.floor(bytes.length / 2);
  const partial = bytes.slice(0, half);
  if (options.corruptPartial) partial[100] ^= 0xff;
  const partialPath = join(cacheDir, ".partial", FOLDER, pkg.fileName);
  await put(partialPath, partial);
  const mtime = (await Deno.stat(pkg.path)).mtime!.getTime();
  await put(`${partialPath}.meta.json`, JSON.stringify({ total: bytes.length, lastModified: mtime }));
  // What an interrupted write of the record leaves.
  await put(`${partialPath}.meta.json.tmp`, '{"total":');
  return { mirrorDir, cacheDir, fileName: pkg.fileName, bytes, half };
}

Deno.test("recoverPartials() keeps a download killed half-way; the restarted proxy resumes it byte-exact", async () => {
  const { mirrorDir, cacheDir, fileName, bytes, half } = await crashedCache();
  try {
    const report = await recoverPartials(cacheDir);
    assertEquals(report.resumable, [{ path: `${FOLDER}/${fileName}`, bytes: half, total: bytes.length }]);
    assertEquals(report.removed.map((r) => r.path), [
      join(cacheDir, ".partial", FOLDER, `${fileName}.meta.json.tmp`),
    ]);
    assertEquals(report.skipped, []);

    await using mirror = await startFakeMirror(mirrorDir);
    const app = createApp(testConfig(cacheDir, [mirror.url]));
    assertEquals(await app.packageIndex.loadAll(cacheDir), 1);
    const response = await app.fetch(new Request(`http://flexo.test/${FOLDER}/${fileName}`));
    assertEquals(response.status, 200);
    assertEquals(new Uint8Array(await response.arrayBuffer()), bytes);
    await app.downloads.idle();

    const gets = mirror.requests.filter((r) => r.path.endsWith(fileName) && r.method === "GET");
    assertEquals(gets.map((r) => r.range), [`bytes=${half}-`], "only the missing half was fetched");
    assertEquals(await Deno.readFile(join(cacheDir, FOLDER, fileName)), bytes);
    assertEquals(await tree(join(cacheDir, ".partial")), [
      "flexotest/",
      "flexotest/os/",
      "flexotest/os/x86_64/",
    ]);
    const again = await recoverPartials(cacheDir);
    assertEquals(again.resumable.length + again.skipped.length, 0);
    assertEquals(again.removed.length, 3, "the empty folders left behind go at the next start");
  } finally {
    await Deno.remove(mirrorDir, { recursive: true });
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("a kept partial with corrupt bytes is never committed: verification discards it and the next request is clean", async () => {
  const { mirrorDir, cacheDir, fileName, bytes } = await crashedCache({ corruptPartial: true });
  try {
    assertEquals((await recoverPartials(cacheDir)).resumable.length, 1);
    await using mirror = await startFakeMirror(mirrorDir);
    const app = createApp(testConfig(cacheDir, [mirror.url]));
    await app.packageIndex.loadAll(cacheDir);
    const get = () => app.fetch(new Request(`http://flexo.test/${FOLDER}/${fileName}`));
    const first = await get();
    let failed = first.status !== 200;
    try {
      await first.arrayBuffer();
    } catch {
      failed = true;
    }
    assert(failed, "the client's transfer does not end as if it were complete");
    await app.downloads.idle();
    assert(!(await pathExists(join(cacheDir, FOLDER, fileName))), "the corrupt file was not committed");
    assertEquals(app.stats.integrityRejections, 1);

    const second = await get();
    assertEquals(new Uint8Array(await second.arrayBuffer()), bytes);
    await app.downloads.idle();
    assertEquals(
      await sha256File(join(cacheDir, FOLDER, fileName)),
      await sha256File(join(mirrorDir, FOLDER, fileName)),
    );
  } finally {
    await Deno.remove(mirrorDir, { recursive: true });
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("recoverPartials() removes every leftover that cannot be resumed and keeps the ones that can", async () => {
  const cacheDir = await Deno.makeTempDir({ prefix: "flexo-recovery-" });
  try {
    const p = (rel: string) => join(cacheDir, ".partial", rel);
    const core = "core/os/x86_64";
    const data = new Uint8Array(300).fill(7);
    await put(p(`${core}/a-1-1-any.pkg.tar.zst`), data); // no record
    await put(p(`${core}/b-1-1-any.pkg.tar.zst`), data);
    await put(p(`${core}/b-1-1-any.pkg.tar.zst.meta.json`), "not json"); // unreadable record
    await put(p(`${core}/c-1-1-any.pkg.tar.zst`), data);
    await put(p(`${core}/c-1-1-any.pkg.tar.zst.meta.json`), '{"total":100}'); // more than announced
    await put(p(`${core}/d-1-1-any.pkg.tar.zst.meta.json`), '{"total":100}'); // record without download
    await put(p(`${core}/e-1-1-any.pkg.tar.zst`), new Uint8Array(0));
    await put(p(`${core}/e-1-1-any.pkg.tar.zst.meta.json`), '{"total":100}'); // nothing to resume
    await put(p(`${core}/core.db`), data);
    await put(p(`${core}/core.db.meta.json`), '{"total":1000}'); // databases are fetched whole
    await put(p(`${core}/f-1-1-any.pkg.tar.zst`), data);
    await put(p(`${core}/f-1-1-any.pkg.tar.zst.meta.json`), '{"total":1000}');
    await put(join(cacheDir, core, "f-1-1-any.pkg.tar.zst"), data); // already complete
    await put(p(`${core}/g-1-1-any.pkg.tar.zst`), data);
    await put(p(`${core}/g-1-1-any.pkg.tar.zst.meta.json`), '{"total":-5}'); // nonsense total
    await put(p(`${core}/import-1234.tmp`), data);
    await put(p(`extra/os/x86_64/h-1-1-any.pkg.tar.zst.meta.json`), "{}"); // its folder empties out
    // kept: a package with a total, a signature without one
    await put(p(`${core}/k-1-1-any.pkg.tar.zst`), data);
    await put(p(`${core}/k-1-1-any.pkg.tar.zst.meta.json`), '{"total":1000,"mirror":"https://m.example/"}');
    await put(p(`custom_repo/mine/x86_64/l-1-1-any.pkg.tar.zst.sig`), data);
    await put(p(`custom_repo/mine/x86_64/l-1-1-any.pkg.tar.zst.sig.meta.json`), "{}");

    const report = await recoverPartials(cacheDir);
    assertEquals(report.skipped, []);
    assertEquals(report.resumable.sort((a, b) => a.path.localeCompare(b.path)), [
      { path: `${core}/k-1-1-any.pkg.tar.zst`, bytes: 300, total: 1000 },
      { path: "custom_repo/mine/x86_64/l-1-1-any.pkg.tar.zst.sig", bytes: 300, total: undefined },
    ]);
    assertEquals(await tree(join(cacheDir, ".partial")), [
      "core/",
      "core/os/",
      "core/os/x86_64/",
      "core/os/x86_64/k-1-1-any.pkg.tar.zst",
      "core/os/x86_64/k-1-1-any.pkg.tar.zst.meta.json",
      "custom_repo/",
      "custom_repo/mine/",
      "custom_repo/mine/x86_64/",
      "custom_repo/mine/x86_64/l-1-1-any.pkg.tar.zst.sig",
      "custom_repo/mine/x86_64/l-1-1-any.pkg.tar.zst.sig.meta.json",
    ]);
    assert(
      await pathExists(join(cacheDir, core, "f-1-1-any.pkg.tar.zst")),
      "complete files are never touched",
    );
    const reasons = new Map(report.removed.map((r) => [r.path.slice(p("").length + 1), r.reason]));
    assertEquals(reasons.get(`${core}/a-1-1-any.pkg.tar.zst`), "an interrupted download without its record");
    assert(reasons.get(`${core}/c-1-1-any.pkg.tar.zst`)!.includes("more than the 100 announced"));
    assertEquals(
      reasons.get(`${core}/d-1-1-any.pkg.tar.zst.meta.json`),
      "a download record without its download",
    );
    assertEquals(
      reasons.get(`${core}/f-1-1-any.pkg.tar.zst`),
      "an interrupted download of a file already cached",
    );
    assertEquals(
      reasons.get(`${core}/g-1-1-any.pkg.tar.zst`),
      "an interrupted download whose record is unreadable",
    );
    // a, b×2, c×2, d, e×2, core.db×2, f×2, g×2, the .tmp, h and its three emptied folders
    assertEquals(report.removed.length, 19);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("recoverPartials() logs and skips entries it cannot handle, and accepts a cache without .partial", async () => {
  const cacheDir = await Deno.makeTempDir({ prefix: "flexo-recovery-" });
  try {
    assertEquals(await recoverPartials(cacheDir), { resumable: [], removed: [], skipped: [] });
    const dir = join(cacheDir, ".partial", "core", "os", "x86_64");
    await Deno.mkdir(dir, { recursive: true });
    await Deno.symlink("/nonexistent", join(dir, "link-1-1-any.pkg.tar.zst"));
    const locked = join(cacheDir, ".partial", "locked");
    await put(join(locked, "x-1-1-any.pkg.tar.zst"), "x");
    const isRoot = Deno.uid() === 0;
    if (!isRoot) await Deno.chmod(locked, 0o000);
    try {
      const report = await recoverPartials(cacheDir);
      const skipped = report.skipped.map((s) => s.path);
      assert(skipped.includes(join(dir, "link-1-1-any.pkg.tar.zst")), "a symbolic link is skipped");
      if (!isRoot) assert(skipped.includes(locked), "an unreadable folder is skipped");
      assert(await pathExists(join(dir, "link-1-1-any.pkg.tar.zst")), "and left as it is");
    } finally {
      if (!isRoot) await Deno.chmod(locked, 0o755);
    }
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

/** Starts `main.ts` on a free port and waits until it listens; its log is collected in `log`. */
async function startFlexo(configPath: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("../../main.ts", import.meta.url).pathname, "--config", configPath],
    stdout: "null",
    stderr: "piped",
    env: { FLEXO_LOG: "info" },
  }).spawn();
  const log: string[] = [];
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let port: number | undefined;
  const deadline = Date.now() + 30_000;
  while (port === undefined && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    log.push(value);
    port = Number(log.join("").match(/Listening on http:\/\/127\.0\.0\.1:(\d+)\//)?.[1]) || undefined;
  }
  assert(port, `flexo did not start listening:\n${log.join("")}`);
  const drained = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      log.push(value);
    }
  })();
  return { child, url: `http://127.0.0.1:${port}/`, log, drained };
}

Deno.test("main.ts killed with SIGKILL during a download resumes it after the restart; start-up recovery and cleaning run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-recovery-kill-" });
  try {
    const mirrorDir = join(dir, "mirror");
    const cache = join(dir, "cache");
    const core = "core/os/x86_64";
    const fileName = "big-1-1-x86_64.pkg.tar.zst";
    const bytes = crypto.getRandomValues(new Uint8Array(60_000)).slice();
    // Larger than what a download writes before its record (RECORD_AFTER_BYTES), which a restart needs.
    const full = new Uint8Array(RECORD_AFTER_BYTES + 1_800_000);
    for (let i = 0; i < full.length; i += bytes.length) full.set(bytes.subarray(0, full.length - i), i);
    await put(join(mirrorDir, core, fileName), full);
    // Old versions for the start-up cleaning.
    await put(join(cache, core, "old-1-1-any.pkg.tar.zst"), "old");
    await put(join(cache, core, "old-2-1-any.pkg.tar.zst"), "new");

    await using mirror = await startFakeMirror(mirrorDir, { bytesPerSecond: 1_000_000 });
    const configPath = join(dir, "flexo.toml");
    await Deno.writeTextFile(
      configPath,
      `cache_directory = "${cache}"\nport = 0\nnum_versions_retain = 1\n` +
        `mirror_selection_method = "predefined"\nmirrors_predefined = ["${mirror.url}"]\n`,
    );

    const first = await startFlexo(configPath);
    const partialPath = join(cache, ".partial", core, fileName);
    let killedAt = 0;
    try {
      await waitFor(
        "the start-up cleaning removes the older version",
        async () => !(await pathExists(join(cache, core, "old-1-1-any.pkg.tar.zst"))),
      );
      assert(await pathExists(join(cache, core, "old-2-1-any.pkg.tar.zst")));
      const response = await fetch(`${first.url}${core}/${fileName}`);
      assertEquals(response.status, 200);
      await waitFor("the download writes its partial file", async () => {
        try {
          return (await Deno.stat(partialPath)).size > RECORD_AFTER_BYTES + 400_000;
        } catch {
          return false;
        }
      });
      first.child.kill("SIGKILL");
      await first.child.status;
      killedAt = (await Deno.stat(partialPath)).size;
      await response.body?.cancel().catch(() => {});
    } finally {
      try {
        first.child.kill("SIGKILL");
      } catch {
        // already ended
      }
      await first.drained;
    }
    assert(killedAt > 0 && killedAt < full.length, `killed half-way (${killedAt} bytes)`);
    assert(!(await pathExists(join(cache, core, fileName))), "nothing partial is complete");

    // A record whose download is gone, as a crash at the wrong moment leaves.
    await put(join(cache, ".partial", core, "gone-1-1-any.pkg.tar.zst.meta.json"), "{}");
    mirror.faults = {};
    mirror.clearRequests();
    const second = await startFlexo(configPath);
    try {
      const log = () => second.log.join("");
      assert(log().includes("Recovery: 1 interrupted download(s) to resume, 1 leftover(s) removed"), log());
      const response = await fetch(`${second.url}${core}/${fileName}`);
      assertEquals(new Uint8Array(await response.arrayBuffer()), full);
      const gets = mirror.requests.filter((r) => r.path.endsWith(fileName) && r.method === "GET");
      assertEquals(gets.map((r) => r.range), [`bytes=${killedAt}-`]);
      await waitFor(
        "the resumed file is committed",
        async () => await pathExists(join(cache, core, fileName)),
      );
      assertEquals(await Deno.readFile(join(cache, core, fileName)), full);
    } finally {
      second.child.kill("SIGTERM");
      await second.child.status;
      await second.drained;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recoverPartials() reads records by the store's rules: old ones are kept, invalid ones go with the reason", async () => {
  const cacheDir = await Deno.makeTempDir({ prefix: "flexo-recovery-" });
  try {
    const p = (rel: string) => join(cacheDir, PARTIAL_DIR, "core/os/x86_64", rel);
    const data = new Uint8Array(300).fill(7);
    // An old record: only a total, and a field this version does not know.
    await put(p("old-1-1-any.pkg.tar.zst"), data);
    await put(p("old-1-1-any.pkg.tar.zst.meta.json"), '{"total":1000,"etag":"x"}');
    await put(p("odd-1-1-any.pkg.tar.zst"), data);
    await put(p("odd-1-1-any.pkg.tar.zst.meta.json"), '{"total":1000,"lastModified":"yesterday"}');
    await put(p("list-1-1-any.pkg.tar.zst"), data);
    await put(p("list-1-1-any.pkg.tar.zst.meta.json"), "[1000]");

    const store = new CacheStore(cacheDir);
    const report = await recoverPartials(cacheDir, { store });
    assertEquals(report.resumable, [{
      path: "core/os/x86_64/old-1-1-any.pkg.tar.zst",
      bytes: 300,
      total: 1000,
    }]);
    const odd = report.removed.find((r) => r.path === p("odd-1-1-any.pkg.tar.zst"));
    assertEquals(odd?.reason, "an interrupted download whose record is unreadable");
    assert(odd?.detail?.includes("lastModified"), `the detail names the field: ${odd?.detail}`);
    const list = report.removed.find((r) => r.path === p("list-1-1-any.pkg.tar.zst"));
    assert(list?.detail?.includes("expected a JSON object"), `${list?.detail}`);
    // The store resumes exactly what recovery kept.
    const segments = ["core", "os", "x86_64", "old-1-1-any.pkg.tar.zst"];
    assertEquals(usableRecord(store.readPartialRecord(segments)), { total: 1000 });
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("recoverPartials() removes an interrupted download of a version older than one the cache holds", async () => {
  const cacheDir = await Deno.makeTempDir({ prefix: "flexo-recovery-" });
  try {
    const core = "core/os/x86_64";
    const p = (rel: string) => join(cacheDir, ".partial", core, rel);
    const data = new Uint8Array(300).fill(7);
    // A prefetch of linux 6.9 cut off by a stop; 6.10 came out and was cached before the next restart: nothing
    // will ask for 6.9 again, and its partial would stay in .partial/ (counted nowhere) for good.
    for (const name of ["linux-6.9-1-x86_64.pkg.tar.zst", "linux-6.9-1-x86_64.pkg.tar.zst.sig"]) {
      await put(p(name), data);
      await put(p(`${name}.meta.json`), '{"total":1000}');
    }
    await put(join(cacheDir, core, "linux-6.10-1-x86_64.pkg.tar.zst"), data);
    // Still the newest: kept for the next request to resume.
    await put(p("zstd-1.5.7-1-x86_64.pkg.tar.zst"), data);
    await put(p("zstd-1.5.7-1-x86_64.pkg.tar.zst.meta.json"), '{"total":1000}');
    await put(join(cacheDir, core, "zstd-1.5.6-1-x86_64.pkg.tar.zst"), data);

    const report = await recoverPartials(cacheDir);
    assertEquals(report.resumable.map((r) => r.path), [`${core}/zstd-1.5.7-1-x86_64.pkg.tar.zst`]);
    const reasons = new Map(report.removed.map((r) => [r.path.slice(p("").length + 1), r.reason]));
    assertEquals(
      reasons.get("linux-6.9-1-x86_64.pkg.tar.zst"),
      "an interrupted download of a version older than one cached",
    );
    assert(reasons.has("linux-6.9-1-x86_64.pkg.tar.zst.sig"), "its signature goes too");
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});
