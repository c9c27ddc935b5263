/**
 * The record of which packages clients fetched: kept right when the clock jumps.
 */

import { join } from "node:path";
import { PackageUsage, USAGE_FILE } from "../../src/prefetch/package_usage.ts";
import { assertEquals } from "../helpers/assert.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

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
