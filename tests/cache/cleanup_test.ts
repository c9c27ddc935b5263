/**
 * Cleaning a real cache directory: retention across repositories and architectures, the size limit, files in
 * use, dry runs and the debounced background cleaner.
 */

import { dirname, join } from "node:path";
import { createApp } from "../../src/app/app.ts";
import { Cleaner, describeCleanup, inUseBy, runCleanup, scanCache } from "../../src/cache/cleanup.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { testConfig } from "../helpers/test_app.ts";
import { pathExists } from "../../src/cache/cache_paths.ts";
import { CacheStore } from "../../src/cache/cache_store.ts";

/** Writes `size` bytes to `<root>/<relative>`, creating folders; returns the absolute path. */
async function put(root: string, relative: string, size = 100, atimeMs?: number): Promise<string> {
  const path = join(root, relative);
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeFile(path, new Uint8Array(size).fill(size % 251));
  if (atimeMs !== undefined) await Deno.utime(path, new Date(atimeMs), new Date(atimeMs));
  return path;
}

/** A package file and its signature. */
async function putSigned(root: string, relative: string, size = 100, atimeMs?: number): Promise<string[]> {
  return [await put(root, relative, size, atimeMs), await put(root, `${relative}.sig`, 10, atimeMs)];
}

/** The files below `root` (relative, sorted), without hidden folders. */
async function listing(root: string): Promise<string[]> {
  const files = await scanCache(root);
  return files.map((file) => file.path.slice(root.length + 1)).sort();
}

async function withCache(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "flexo-cleanup-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const X86 = "core/os/x86_64";

Deno.test("runCleanup() keeps the newest versions per package and architecture in each repository folder, epochs and odd versions", async () => {
  await withCache(async (dir) => {
    // order by vercmp: 1:0.9 > 2.0 > 1.0.1 > 1.0 > 1.0a
    await putSigned(dir, `${X86}/foo-1.0a-1-x86_64.pkg.tar.zst`);
    await putSigned(dir, `${X86}/foo-1.0-1-x86_64.pkg.tar.zst`);
    await putSigned(dir, `${X86}/foo-1.0.1-1-x86_64.pkg.tar.zst`);
    await putSigned(dir, `${X86}/foo-2.0-1-x86_64.pkg.tar.zst`);
    // older versions in other repositories count in their own folders: each is its folder's newest
    await putSigned(dir, `extra/os/x86_64/foo-0.5-1-x86_64.pkg.tar.zst`);
    await putSigned(dir, `custom_repo/mine/x86_64/foo-0.1-1-x86_64.pkg.tar.zst`);
    await putSigned(dir, `${X86}/foo-1:0.9-1-x86_64.pkg.tar.zst`);
    // another architecture is another package: its single old version stays
    await putSigned(dir, `core/os/aarch64/foo-1.0a-1-aarch64.pkg.tar.zst`);
    // a name with dashes and a release with a dot
    await put(dir, `${X86}/lib32-gcc-libs-14.1.1+r1-1-x86_64.pkg.tar.zst`);
    await put(dir, `${X86}/lib32-gcc-libs-14.1.1+r1-1.1-x86_64.pkg.tar.zst`);
    await put(dir, `${X86}/lib32-gcc-libs-14.1.1-2-x86_64.pkg.tar.xz`);
    // not packages: never touched
    await put(dir, `${X86}/core.db`);
    await put(dir, `${X86}/foo-old.pkg.tar.zst`);
    await put(dir, `${X86}/orphan-0.1-1-x86_64.pkg.tar.zst.sig`);
    await put(dir, `.partial/${X86}/foo-0.1-1-x86_64.pkg.tar.zst`);

    const report = await runCleanup(dir, { keep: 2, maxBytes: undefined });
    assertEquals(await listing(dir), [
      "core/os/aarch64/foo-1.0a-1-aarch64.pkg.tar.zst",
      "core/os/aarch64/foo-1.0a-1-aarch64.pkg.tar.zst.sig",
      `${X86}/core.db`,
      `${X86}/foo-1:0.9-1-x86_64.pkg.tar.zst`,
      `${X86}/foo-1:0.9-1-x86_64.pkg.tar.zst.sig`,
      `${X86}/foo-2.0-1-x86_64.pkg.tar.zst`,
      `${X86}/foo-2.0-1-x86_64.pkg.tar.zst.sig`,
      `${X86}/foo-old.pkg.tar.zst`,
      `${X86}/lib32-gcc-libs-14.1.1+r1-1-x86_64.pkg.tar.zst`,
      `${X86}/lib32-gcc-libs-14.1.1+r1-1.1-x86_64.pkg.tar.zst`,
      `${X86}/orphan-0.1-1-x86_64.pkg.tar.zst.sig`,
      "custom_repo/mine/x86_64/foo-0.1-1-x86_64.pkg.tar.zst",
      "custom_repo/mine/x86_64/foo-0.1-1-x86_64.pkg.tar.zst.sig",
      "extra/os/x86_64/foo-0.5-1-x86_64.pkg.tar.zst",
      "extra/os/x86_64/foo-0.5-1-x86_64.pkg.tar.zst.sig",
    ]);
    assert(
      await pathExists(join(dir, `.partial/${X86}/foo-0.1-1-x86_64.pkg.tar.zst`)),
      "downloads are left alone",
    );
    assertEquals(report.removedFiles, 7);
    assertEquals(report.freedBytes, 3 * 110 + 100);
    assertEquals(report.remainingBytes, report.totalBytes - report.freedBytes);
    assertEquals(
      report.removed.map((v) => `${v.name} ${v.version} ${v.reason}`).sort(),
      [
        "foo 1.0-1 retention",
        "foo 1.0.1-1 retention",
        "foo 1.0a-1 retention",
        "lib32-gcc-libs 14.1.1-2 retention",
      ],
    );
    assertEquals((await runCleanup(dir, { keep: 2 })).removedFiles, 0, "a second run finds nothing");
  });
});

Deno.test("runCleanup() with dryRun reports the same removals and removes nothing; keep 0 keeps all", async () => {
  await withCache(async (dir) => {
    for (const version of ["1.0-1", "2.0-1", "3.0-1"]) {
      await putSigned(dir, `${X86}/bar-${version}-any.pkg.tar.zst`);
    }
    const before = await listing(dir);
    assertEquals((await runCleanup(dir, { keep: 0 })).removedFiles, 0);
    const dry = await runCleanup(dir, { keep: 1, dryRun: true });
    assertEquals(await listing(dir), before);
    assertEquals(dry.dryRun, true);
    assertEquals(dry.removedFiles, 4);
    assertEquals(dry.freedBytes, 220);
    const lines = describeCleanup(dry);
    assert(
      lines.some((line) =>
        line.startsWith("would remove ") && line.includes("bar-1.0-1-any.pkg.tar.zst.sig")
      ),
    );
    assert(lines.at(-1)!.startsWith("Would remove 4 files of 2 package versions; 220 B would be freed"));
    const real = await runCleanup(dir, { keep: 1 });
    assertEquals(real.removed.flatMap((v) => v.paths).sort(), dry.removed.flatMap((v) => v.paths).sort());
    assertEquals(await listing(dir), [
      `${X86}/bar-3.0-1-any.pkg.tar.zst`,
      `${X86}/bar-3.0-1-any.pkg.tar.zst.sig`,
    ]);
  });
});

Deno.test("runCleanup() evicts least recently used older versions over max_cache_size, newest last", async () => {
  await withCache(async (dir) => {
    const day = 86_400_000;
    const now = Date.now();
    // a: three versions, b: two versions; all 1000-byte packages without signatures
    await put(dir, `${X86}/a-1-1-any.pkg.tar.zst`, 1000, now - 1 * day); // older, used recently
    await put(dir, `${X86}/a-2-1-any.pkg.tar.zst`, 1000, now - 9 * day); // older, used long ago
    await put(dir, `${X86}/a-3-1-any.pkg.tar.zst`, 1000, now - 20 * day); // newest of a, oldest use
    await put(dir, `${X86}/b-1-1-any.pkg.tar.zst`, 1000, now - 5 * day); // older
    await put(dir, `${X86}/b-2-1-any.pkg.tar.zst`, 1000, now - 2 * day); // newest of b
    await put(dir, `${X86}/core.db`, 500, now - 30 * day); // counted, never evicted

    const report = await runCleanup(dir, { keep: 0, maxBytes: 3500 });
    assertEquals(report.totalBytes, 5500);
    assertEquals(report.removed.map((v) => `${v.name}-${v.version} ${v.reason}`), [
      "a-2-1 size",
      "b-1-1 size",
    ]);
    assertEquals(report.remainingBytes, 3500);
    assertEquals(report.overLimit, false);

    // Below what the newest versions need: the older ones go first, then the least recently used newest ones.
    const tight = await runCleanup(dir, { keep: 0, maxBytes: 1600 });
    assertEquals(tight.removed.map((v) => `${v.name}-${v.version}`), ["a-1-1", "a-3-1"]);
    assertEquals(await listing(dir), [`${X86}/b-2-1-any.pkg.tar.zst`, `${X86}/core.db`]);
    const impossible = await runCleanup(dir, { keep: 0, maxBytes: 100 });
    assertEquals(impossible.overLimit, true, "the database alone is over the limit");
    assert(describeCleanup(impossible).some((line) => line.includes("still larger than max_cache_size")));
  });
});

Deno.test("runCleanup() retention and size together: retention first, then the size limit on what is left", async () => {
  await withCache(async (dir) => {
    const now = Date.now();
    await put(dir, `${X86}/c-1-1-any.pkg.tar.zst`, 1000, now - 1000);
    await put(dir, `${X86}/c-2-1-any.pkg.tar.zst`, 1000, now - 3000);
    await put(dir, `${X86}/c-3-1-any.pkg.tar.zst`, 1000, now - 2000);
    const report = await runCleanup(dir, { keep: 2, maxBytes: 1500 });
    assertEquals(report.removed.map((v) => `${v.version} ${v.reason}`), ["1-1 retention", "2-1 size"]);
    assertEquals(await listing(dir), [`${X86}/c-3-1-any.pkg.tar.zst`]);
  });
});

Deno.test("runCleanup() never removes a version that a client is reading or that is being downloaded", async () => {
  await withCache(async (dir) => {
    const mirrorRoot = await Deno.makeTempDir({ prefix: "flexo-cleanup-mirror-" });
    try {
      const app = createApp(testConfig(dir, ["http://127.0.0.1:9/"]));
      const [read] = await putSigned(dir, `${X86}/d-1-1-any.pkg.tar.zst`);
      await putSigned(dir, `${X86}/d-2-1-any.pkg.tar.zst`);
      await put(dir, `${X86}/d-3-1-any.pkg.tar.zst`);
      await put(dir, `${X86}/d-4-1-any.pkg.tar.zst`);
      const inUse = inUseBy(app);

      const release = app.store.beginRead(read);
      const whileReading = await runCleanup(dir, { keep: 1, inUse });
      assertEquals(whileReading.removed.map((v) => v.version).sort(), ["2-1", "3-1"]);
      assert(await pathExists(read) && await pathExists(`${read}.sig`), "the version being read stays whole");
      release();

      // A download of d-1's signature keeps d-1's package file.
      await Deno.remove(`${read}.sig`);
      await put(mirrorRoot, `${X86}/d-1-1-any.pkg.tar.zst.sig`, 5000);
      await using mirror = await startFakeMirror(mirrorRoot, { stallAfterBytes: 100 });
      const slow = createApp(testConfig(dir, [mirror.url]), { limits: { lowSpeedTimeMs: 10_000 } });
      const response = await slow.fetch(new Request(`http://flexo.test/${X86}/d-1-1-any.pkg.tar.zst.sig`));
      assertEquals(response.status, 200);
      assertEquals(slow.downloads.list().length, 1);
      const whileDownloading = await runCleanup(dir, { keep: 1, inUse: inUseBy(slow) });
      assertEquals(whileDownloading.removedFiles, 0);
      assert(await pathExists(read), "the package whose signature is downloading stays");
      await response.body?.cancel();
      await mirror.close();
      await slow.downloads.idle();
      assertEquals((await runCleanup(dir, { keep: 1, inUse: inUseBy(slow) })).removedFiles, 1);
      assert(!(await pathExists(read)), "removed once nothing uses it");
    } finally {
      await Deno.remove(mirrorRoot, { recursive: true });
    }
  });
});

Deno.test("Cleaner runs once for several completions close together, never twice at once, and counts", async () => {
  await withCache(async (dir) => {
    for (const version of ["1-1", "2-1", "3-1"]) await putSigned(dir, `${X86}/e-${version}-any.pkg.tar.zst`);
    const app = createApp(testConfig(dir, ["http://127.0.0.1:9/"]));
    const removed: string[] = [];
    const timers = new FakeTimers();
    const cleaner = new Cleaner({
      cacheDir: dir,
      keep: 2,
      inUse: inUseBy(app),
      stats: app.stats,
      onRemoved: (path) => removed.push(path),
      delayMs: 50,
      ...timers.deps,
    });
    try {
      for (let i = 0; i < 5; i++) {
        cleaner.downloadCompleted();
        timers.advance(10);
      }
      assertEquals(cleaner.runs, 0, "nothing runs while completions keep coming");
      assertEquals(timers.pending, [50], "one run, postponed by each completion");
      timers.advance(40);
      assertEquals(cleaner.runs, 1, "it runs after 50 ms without completions");
      await cleaner.idle();
      assertEquals(cleaner.runs, 1);
      assertEquals(removed.length, 2);
      assertEquals(app.stats.retentionRemovals, 2);
      assertEquals(app.stats.retentionBytesFreed, 110);

      // Two runs asked for at once: the second waits for the first, so it finds nothing left to remove.
      await putSigned(dir, `${X86}/e-0-1-any.pkg.tar.zst`);
      const [first, second] = await Promise.all([cleaner.runNow(), cleaner.runNow()]);
      assertEquals(first?.removedFiles, 2);
      assertEquals(second?.removedFiles, 0);
      assertEquals(cleaner.runs, 3);
      assertEquals(app.stats.retentionRemovals, 4);
    } finally {
      await cleaner.stop();
    }
    cleaner.schedule();
    assertEquals(await cleaner.runNow(), undefined, "a stopped cleaner does nothing");
  });
});

Deno.test("Cleaner runs at the latest maxDelayMs after the first completion while completions keep coming", async () => {
  await withCache(async (dir) => {
    for (const version of ["1-1", "2-1"]) await putSigned(dir, `${X86}/k-${version}-any.pkg.tar.zst`);
    const timers = new FakeTimers();
    const cleaner = new Cleaner({
      cacheDir: dir,
      keep: 1,
      inUse: () => false,
      delayMs: 50,
      maxDelayMs: 100,
      ...timers.deps,
    });
    try {
      for (const at of [0, 30, 60, 90]) {
        timers.advance(at - timers.now());
        cleaner.downloadCompleted();
      }
      assertEquals(cleaner.runs, 0, "completions 30 ms apart: the quiet time of 50 ms never came");
      assertEquals(
        timers.pending,
        [10],
        "the last completion, at 90 ms, may postpone the run only to 100 ms",
      );
      timers.advance(10);
      assertEquals(cleaner.runs, 1);
      await cleaner.idle();
      cleaner.downloadCompleted();
      assertEquals(timers.pending, [50], "the next completion starts a new longest wait");
    } finally {
      await cleaner.stop();
    }
    assertEquals(timers.pending, [], "stop() cancels the scheduled run");
  });
});

Deno.test("Cleaner does nothing when num_versions_retain is 0 and max_cache_size is unset", async () => {
  await withCache(async (dir) => {
    for (const version of ["1-1", "2-1"]) await put(dir, `${X86}/f-${version}-any.pkg.tar.zst`);
    const cleaner = new Cleaner({ cacheDir: dir, keep: 0, inUse: () => false, delayMs: 1 });
    assertEquals(cleaner.enabled, false);
    assertEquals(await cleaner.start(), undefined);
    cleaner.downloadCompleted();
    await cleaner.stop();
    assertEquals(cleaner.runs, 0);
    assertEquals((await listing(dir)).length, 2);
  });
});

Deno.test("Cleaner wired to createApp() cleans after a download completes and marks the new file as used", async () => {
  await withCache(async (dir) => {
    const mirrorRoot = await Deno.makeTempDir({ prefix: "flexo-cleanup-mirror-" });
    try {
      const longAgo = Date.now() - 100 * 86_400_000;
      await put(dir, `${X86}/g-1-1-any.pkg.tar.zst`, 100, longAgo);
      await put(dir, `${X86}/g-2-1-any.pkg.tar.zst`, 100, longAgo);
      await put(mirrorRoot, `${X86}/g-3-1-any.pkg.tar.zst`, 300, longAgo);
      await using mirror = await startFakeMirror(mirrorRoot);
      const timers = new FakeTimers();
      // As in main.ts: the app tells the cleaner, which is made after it (it needs the app's in-use test).
      const app = createApp(testConfig(dir, [mirror.url]), {
        onDownloadComplete: (download) => cleaner.downloadCompleted(download.file),
      });
      const cleaner = new Cleaner({
        cacheDir: dir,
        keep: 2,
        maxBytes: 10_000,
        inUse: inUseBy(app),
        delayMs: 20,
        ...timers.deps,
      });
      try {
        const response = await app.fetch(new Request(`http://flexo.test/${X86}/g-3-1-any.pkg.tar.zst`));
        assertEquals((await response.arrayBuffer()).byteLength, 300);
        await app.downloads.idle();
        assertEquals(cleaner.runs, 0);
        assertEquals(timers.pending, [20], "the completed download asked for a run");
        timers.advance(20);
        await cleaner.idle();
        assertEquals(cleaner.runs, 1);
        assertEquals(await listing(dir), [`${X86}/g-2-1-any.pkg.tar.zst`, `${X86}/g-3-1-any.pkg.tar.zst`]);
        const info = await Deno.stat(join(dir, X86, "g-3-1-any.pkg.tar.zst"));
        assert(
          info.atime!.getTime() > Date.now() - 60_000,
          "the download counts as a use, not as upstream's date",
        );
        assertEquals(info.mtime!.getTime(), Math.floor(longAgo / 1000) * 1000, "mtime stays Last-Modified");
      } finally {
        await cleaner.stop();
      }
    } finally {
      await Deno.remove(mirrorRoot, { recursive: true });
    }
  });
});

Deno.test("scanCache() skips hidden folders and symbolic links and survives a missing cache", async () => {
  await withCache(async (dir) => {
    await put(dir, `${X86}/h-1-1-any.pkg.tar.zst`);
    await put(dir, `.hidden/h-0-1-any.pkg.tar.zst`);
    await Deno.symlink(join(dir, X86, "h-1-1-any.pkg.tar.zst"), join(dir, X86, "h-link-1-any.pkg.tar.zst"));
    assertEquals(await listing(dir), [`${X86}/h-1-1-any.pkg.tar.zst`]);
    assertEquals(await scanCache(join(dir, "missing")), []);
  });
});

Deno.test("runCleanup() and Cleaner remove through the store they are given: its files in memory check the disk at once", async () => {
  await withCache(async (dir) => {
    const store = new CacheStore(dir, { now: () => 0 });
    const segments = (version: string) => ["core", "os", "x86_64", `baz-${version}-any.pkg.tar.zst.sig`];
    for (const version of ["1.0-1", "2.0-1", "3.0-1"]) {
      await putSigned(dir, `${X86}/baz-${version}-any.pkg.tar.zst`);
      await store.loadHot(segments(version));
    }
    await runCleanup(dir, { keep: 2, store });
    // The clock stands still: only the store's own removals make it look at the disk.
    assertEquals(store.hotFile(segments("1.0-1")), undefined);
    assert(store.hotFile(segments("2.0-1")), "a kept file stays in memory");
    const cleaner = new Cleaner({ cacheDir: dir, keep: 1, inUse: () => false, store });
    await cleaner.runNow();
    assertEquals(store.hotFile(segments("2.0-1")), undefined);
    assert(store.hotFile(segments("3.0-1")));
  });
});
