/**
 * The record of which packages clients fetched: kept right when the clock jumps, saved durably, and saved
 * whole (or not at all) when the disk is full or a stop comes.
 */

import { join } from "node:path";
import { PackageUsage, USAGE_FILE } from "../../src/prefetch/package_usage.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { fakeFetch, serveBytes, testBytes } from "../helpers/fake_fetch.ts";
import { fillUp, hasCommand, mountTmpfs, umount } from "../helpers/fault_tools.ts";
import { testApp } from "../helpers/test_app.ts";
import { filesBelow, withTempDir } from "../helpers/temp_dir.ts";

const DAY_MS = 24 * 60 * 60 * 1000;

Deno.test("PackageUsage.fetchedSince() takes a fetch recorded while the clock was ahead as made now, so that it ages out", async () => {
  await withTempDir(async (dir) => {
    const start = Date.UTC(2026, 0, 1);
    const clock = { now: start + 10 * 365 * DAY_MS };
    const usage = new PackageUsage(dir, { now: () => clock.now });
    usage.recordFetch("core/os/x86_64", "zstd");
    await usage.flushed();

    // The clock is set right: the fetch counts as made now, and is saved so.
    clock.now = start;
    assertEquals(usage.fetchedSince(start - 30 * DAY_MS), [
      { folder: "core/os/x86_64", name: "zstd", lastFetched: start },
    ]);
    await usage.flushed();
    const saved = JSON.parse(await Deno.readTextFile(join(dir, USAGE_FILE)));
    assertEquals(saved.folders["core/os/x86_64"].zstd, start);

    // Nobody fetches it for 31 days: it is no longer wanted, after a restart too.
    clock.now = start + 31 * DAY_MS;
    assertEquals(usage.fetchedSince(clock.now - 30 * DAY_MS), []);
    const restarted = new PackageUsage(dir, { now: () => clock.now });
    await restarted.load();
    assertEquals(restarted.fetchedSince(clock.now - 30 * DAY_MS), []);
  });
});

Deno.test("PackageUsage.flush() saves again what a failed save could not write", async () => {
  await withTempDir(async (dir) => {
    // `.flexo` is a file: the save cannot make its folder, and fails (logged, not thrown).
    await Deno.writeTextFile(join(dir, ".flexo"), "");
    const usage = new PackageUsage(dir, { now: () => Date.UTC(2026, 0, 1) });
    usage.recordFetch("core/os/x86_64", "zstd");
    await usage.flushed();
    await Deno.remove(join(dir, ".flexo"));

    // A graceful stop's flush writes what the failed save had, although no fetch came since.
    await usage.flush();
    const saved = JSON.parse(await Deno.readTextFile(join(dir, USAGE_FILE)));
    assertEquals(Object.keys(saved.folders["core/os/x86_64"]), ["zstd"]);
  });
});

Deno.test("PackageUsage.flush() waits for a save that is running, so that a stop does not cut it off", async () => {
  await withTempDir(async (dir) => {
    const usage = new PackageUsage(dir, { now: () => Date.UTC(2026, 0, 1) });
    usage.recordFetch("core/os/x86_64", "zstd");
    // No await in between: the save has only started.
    await usage.flush();
    const saved = JSON.parse(Deno.readTextFileSync(join(dir, USAGE_FILE)));
    assertEquals(Object.keys(saved.folders["core/os/x86_64"]), ["zstd"]);
  });
});

Deno.test("PackageUsage.flushed() on a full disk keeps the last record, leaves no temporary file and does not throw", async (t) => {
  await withTempDir(async (dir) => {
    const disk = join(dir, "disk");
    await Deno.mkdir(disk);
    if (!(await mountTmpfs(disk, "256k"))) {
      await t.step({ name: "skipped: cannot mount a tmpfs here (needs root)", ignore: true, fn: () => {} });
      return;
    }
    try {
      const usage = new PackageUsage(disk, { now: () => Date.UTC(2026, 0, 1) });
      usage.recordFetch("core/os/x86_64", "zstd");
      await usage.flushed();
      const before = await Deno.readTextFile(join(disk, USAGE_FILE));
      await fillUp(join(disk, "filler"));
      // Enough names that the record no longer fits in what a full tmpfs may still take.
      for (let i = 0; i < 2000; i++) usage.recordFetch("core/os/x86_64", `package-with-a-long-name-${i}`);
      await usage.flushed();
      assertEquals(await Deno.readTextFile(join(disk, USAGE_FILE)), before, "the last record stays whole");
      assertEquals(await filesBelow(join(disk, ".flexo")), ["package_usage.json"], "no temporary file stays");
    } finally {
      await umount(disk);
    }
  });
});

Deno.test("PackageUsage.flushed() finds the record written durably: the file is flushed before its rename, the folder after", async (t) => {
  if (!(await hasCommand("strace"))) {
    await t.step({ name: "skipped: strace is not installed", ignore: true, fn: () => {} });
    return;
  }
  await withTempDir(async (dir) => {
    const script = join(dir, "save.ts");
    const module = new URL("../../src/prefetch/package_usage.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { PackageUsage } from ${JSON.stringify(module)};\n` +
        `const usage = new PackageUsage(${JSON.stringify(join(dir, "cache"))}, { now: () => 1 });\n` +
        `usage.recordFetch("core/os/x86_64", "zstd");\nawait usage.flushed();\n`,
    );
    const output = await new Deno.Command("strace", {
      args: [
        "-f",
        "-e",
        "trace=openat,fsync,fdatasync,rename,renameat,renameat2",
        Deno.execPath(),
        "run",
        "-A",
        "--config",
        new URL("../../deno.json", import.meta.url).pathname,
        script,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const trace = new TextDecoder().decode(output.stderr);
    assertEquals(output.success, true, trace);
    // Thread ids and descriptor numbers vary (the runtime moves file calls to threads): the order tells.
    const lines = trace.split("\n");
    const opened = lines.findIndex((line) => /openat\(.*package_usage\.json\.tmp".*= \d+\s*$/.test(line));
    const renamed = lines.findIndex((line) => /rename.*package_usage\.json\.tmp/.test(line));
    const flushed = lines.findIndex((line, i) => i > opened && /\bf(data)?sync\(/.test(line));
    const folder = lines.findLastIndex((line) => /openat\(.*\/\.flexo", O_RDONLY/.test(line));
    const folderFlushed = lines.findIndex((line, i) => i > folder && /\bfsync\(/.test(line));
    assert(opened >= 0 && renamed > opened, trace);
    assert(flushed > opened && flushed < renamed, `the file is flushed before its rename:\n${trace}`);
    assert(folder > renamed && folderFlushed > folder, `the folder is flushed after the rename:\n${trace}`);
  });
});

Deno.test("FlexoApp.flush() resolves once the package usage of the last request is on disk, for a stop to await", async () => {
  const { fetch } = fakeFetch((_url, req) => serveBytes(testBytes(1000), req));
  const app = await testApp(["http://a.test/"], { fetch, config: { prefetch: { enabled: true } } });
  try {
    const response = await app.get("/core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst");
    assertEquals(response.status, 200);
    await response.body?.cancel();
    await app.flush();
    // Read at once, synchronously: what main.ts finds on disk when it ends the process right after the flush.
    const saved = JSON.parse(Deno.readTextFileSync(join(app.dir, USAGE_FILE)));
    assertEquals(Object.keys(saved.folders["core/os/x86_64"]), ["zstd"]);
  } finally {
    await app.cleanup();
  }
});

Deno.test("PackageUsage.noteRun() keeps when the last prefetch run ended, for load() after a restart", async () => {
  await withTempDir(async (dir) => {
    const usage = new PackageUsage(dir, { now: () => 5 * DAY_MS });
    usage.recordFetch("core/os/x86_64", "zstd");
    usage.noteRun(4 * DAY_MS);
    await usage.flushed();
    const restarted = new PackageUsage(dir, { now: () => 6 * DAY_MS });
    await restarted.load();
    assertEquals(restarted.lastRunAt(), 4 * DAY_MS);
    assertEquals(restarted.fetchedSince(0).map((used) => used.name), ["zstd"]);
  });
});
