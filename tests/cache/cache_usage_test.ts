import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { CacheUsage } from "../../src/cache/cache_usage.ts";
import { scanCache } from "../../src/cache/cleanup.ts";

async function write(root: string, path: string, size: number): Promise<string> {
  const full = join(root, path);
  await Deno.mkdir(join(full, ".."), { recursive: true });
  await Deno.writeFile(full, new Uint8Array(size));
  return full;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "flexo-usage-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("CacheUsage.start() counts complete files and leaves out downloads in progress", async () => {
  await withDir(async (dir) => {
    await write(dir, "core/os/x86_64/core.db", 1000);
    await write(dir, "core/os/x86_64/a-1-1-x86_64.pkg.tar.zst", 5000);
    await write(dir, "custom_repo/arm/aarch64/b-1-1-aarch64.pkg.tar.xz", 300);
    await write(dir, ".partial/extra/os/x86_64/c-1-1-x86_64.pkg.tar.zst", 7000);
    await write(dir, ".partial/extra/os/x86_64/c-1-1-x86_64.pkg.tar.zst.meta.json", 20);
    const usage = new CacheUsage(dir);
    assertEquals(usage.snapshot(), { bytes: 0, files: 0, complete: false });
    await usage.start();
    assertEquals(usage.snapshot(), { bytes: 6300, files: 3, complete: true });
  });
});

Deno.test("CacheUsage.start() counts the files that cleaning and max_cache_size count: none of flexo's hidden records", async () => {
  await withDir(async (dir) => {
    await write(dir, "core/os/x86_64/a-1-1-x86_64.pkg.tar.zst", 5000);
    // The prefetch's record of what clients used: rewritten as clients come, and never watched (cache_watch.ts).
    await write(dir, ".flexo/package_usage.json", 700);
    await write(dir, "core/os/x86_64/.keep", 3);
    const usage = new CacheUsage(dir);
    await usage.start();
    const scanned = await scanCache(dir);
    assertEquals(usage.snapshot(), {
      bytes: scanned.reduce((sum, file) => sum + file.size, 0),
      files: scanned.length,
      complete: true,
    });
    assertEquals(usage.snapshot(), { bytes: 5000, files: 1, complete: true });
  });
});

Deno.test("CacheUsage.added() and removed() keep the numbers current; a replaced database is not counted twice", async () => {
  await withDir(async (dir) => {
    const db = await write(dir, "core/os/x86_64/core.db", 1000);
    const usage = new CacheUsage(dir);
    await usage.start();
    assertEquals(usage.snapshot(), { bytes: 1000, files: 1, complete: true });
    usage.added(5000, { path: join(dir, "core/os/x86_64/a-1-1-x86_64.pkg.tar.zst") });
    assertEquals(usage.snapshot(), { bytes: 6000, files: 2, complete: true });
    usage.added(1200, { path: db });
    assertEquals(usage.snapshot(), { bytes: 6200, files: 2, complete: true });
    usage.added(100, { path: "extra/os/x86_64/extra.db" });
    usage.removed(5000, { path: join(dir, "core/os/x86_64/a-1-1-x86_64.pkg.tar.zst") });
    assertEquals(usage.snapshot(), { bytes: 1300, files: 2, complete: true });
    usage.added(40);
    usage.removed(10_000);
    assertEquals(usage.snapshot(), { bytes: 0, files: 2, complete: true }, "never below zero");
  });
});

Deno.test("CacheUsage counts files added or removed during the first scan exactly once", async () => {
  await withDir(async (dir) => {
    for (let i = 0; i < 400; i++) await write(dir, `core/os/x86_64/p${i}-1-1-x86_64.pkg.tar.zst`, 10);
    const usage = new CacheUsage(dir);
    const scan = usage.start();
    // While the scan runs: one file appears, one is removed, one database is replaced.
    const added = await write(dir, "core/os/x86_64/new-1-1-x86_64.pkg.tar.zst", 500);
    usage.added(500, { path: added });
    const gone = join(dir, "core/os/x86_64/p150-1-1-x86_64.pkg.tar.zst");
    await Deno.remove(gone);
    usage.removed(10, { path: gone });
    assertEquals(usage.snapshot().complete, false, "the test needs the scan to be still running here");
    await scan;
    assertEquals(usage.snapshot(), { bytes: 399 * 10 + 500, files: 400, complete: true });
    assertEquals(usage.start(), scan, "the scan runs once");
  });
});

Deno.test("CacheUsage.start() reports a missing cache directory as empty without an error", async () => {
  await withDir(async (dir) => {
    const errors: Error[] = [];
    const usage = new CacheUsage(join(dir, "not-there"), { onError: (e) => errors.push(e) });
    await usage.start();
    assertEquals(usage.snapshot(), { bytes: 0, files: 0, complete: true });
    assertEquals(errors, []);
  });
});

Deno.test("CacheUsage.rescan() makes the numbers true after another process changed the cache", async () => {
  await withDir(async (dir) => {
    await write(dir, "core/os/x86_64/core.db", 1000);
    const gone = await write(dir, "core/os/x86_64/old-1-1-x86_64.pkg.tar.zst", 300);
    const usage = new CacheUsage(dir);
    await usage.start();
    assertEquals(usage.snapshot(), { bytes: 1300, files: 2, complete: true });
    // Another process (flexo import, flexo clean) adds two files and removes one: the proxy is not told.
    await write(dir, "extra/os/x86_64/a-1-1-x86_64.pkg.tar.zst", 5000);
    await write(dir, "extra/os/x86_64/a-1-1-x86_64.pkg.tar.zst.sig", 100);
    await Deno.remove(gone);
    assertEquals(usage.snapshot(), { bytes: 1300, files: 2, complete: true }, "stale until counted again");
    const rescan = usage.rescan();
    assertEquals(usage.snapshot().bytes, 1300, "the old numbers stay shown while the walk runs");
    await rescan;
    assertEquals(usage.snapshot(), { bytes: 6100, files: 3, complete: true });
  });
});

Deno.test("CacheUsage.rescan() counts the proxy's own changes during the walk exactly once", async () => {
  await withDir(async (dir) => {
    for (let i = 0; i < 400; i++) await write(dir, `core/os/x86_64/p${i}-1-1-x86_64.pkg.tar.zst`, 10);
    const usage = new CacheUsage(dir);
    await usage.start();
    const rescan = usage.rescan();
    const added = await write(dir, "core/os/x86_64/new-1-1-x86_64.pkg.tar.zst", 500);
    usage.added(500, { path: added });
    assertEquals(usage.snapshot(), { bytes: 4500, files: 401, complete: true }, "shown at once");
    const again = usage.rescan();
    assertEquals(again, rescan, "asked during a walk: one promise for it and the walk that follows");
    await rescan;
    assertEquals(usage.snapshot(), { bytes: 4500, files: 401, complete: true });
    assertEquals([...usage.takeReported()], ["core/os/x86_64/new-1-1-x86_64.pkg.tar.zst"]);
    assertEquals(usage.takeReported().size, 0, "taken once");
  });
});

Deno.test("CacheUsage.start() keeps no path of a package file once it has counted them", async () => {
  await withDir(async (dir) => {
    for (let i = 0; i < 300; i++) {
      await write(dir, `extra/os/x86_64/p${i}-1-1-x86_64.pkg.tar.zst`, 10);
      await write(dir, `extra/os/x86_64/p${i}-1-1-x86_64.pkg.tar.zst.sig`, 1);
    }
    await write(dir, "extra/os/x86_64/extra.db", 100);
    await write(dir, "extra/os/x86_64/extra.db.sig", 1);
    const usage = new CacheUsage(dir);
    await usage.start();
    assertEquals(usage.snapshot(), { bytes: 3401, files: 602, complete: true });
    assertEquals(usage.rememberedPaths, 2, "only the database and its signature, which may be replaced");
    usage.added(10, { path: "extra/os/x86_64/q-1-1-x86_64.pkg.tar.zst" });
    assertEquals(usage.rememberedPaths, 2);
  });
});

/** Folders nested below `root` until their path is longer than Linux reads (PATH_MAX): a folder none may list. */
async function unreadableFolder(root: string): Promise<void> {
  // Made step by step from inside, as a path that long cannot be given to mkdir either.
  const name = "d".repeat(250);
  const script = `cd "$1" && for i in $(seq 18); do mkdir ${name} && cd ${name} || exit 1; done`;
  await Deno.mkdir(root, { recursive: true });
  const made = await new Deno.Command("bash", { args: ["-c", script, "bash", root] }).output();
  assertEquals(made.success, true, "the test needs a folder too deep to list");
}

Deno.test("CacheUsage.start() counts every other folder when one cannot be read, and says which", async () => {
  await withDir(async (dir) => {
    // As a folder that the flexo user may not read (made by root with mode 0700) fails; root may read anything.
    await unreadableFolder(join(dir, "custom_repo"));
    for (let i = 0; i < 40; i++) await write(dir, `repo${i}/os/x86_64/p-1-1-x86_64.pkg.tar.zst`, 10);
    const errors: Error[] = [];
    const usage = new CacheUsage(dir, { onError: (error) => errors.push(error) });
    await usage.start();
    assertEquals(usage.snapshot(), { bytes: 400, files: 40, complete: true });
    assertEquals(errors.length, 1);
    assert(errors[0].message.includes(join(dir, "custom_repo")), errors[0].message);
  });
});
