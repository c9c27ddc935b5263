/**
 * The prefetch schedule with an injected clock and timers: when the first run starts, when the next one is
 * due after a run (long, failed or asked for by hand), and that stop() ends the schedule. The runs themselves
 * find nothing to do (an empty cache and usage record); one step of each run waits for the test to let it go,
 * so that the test decides how long a run takes.
 */

import { prefetchSchema } from "../../src/config/config_schema.ts";
import type { PrefetchDeps } from "../../src/prefetch/prefetch_run.ts";
import { PREFETCH_START_DELAY_MS, Prefetcher } from "../../src/prefetch/prefetcher.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { waitFor } from "../helpers/wait.ts";

/** A prefetcher on fake timers whose runs each wait in `packageIndex.idle()` until `finishRun()`. */
function scheduled(prefetch: Record<string, unknown>, saved: { lastRunAt?: number } = {}) {
  const timers = new FakeTimers();
  let release: ((error?: Error) => void) | undefined;
  let runsStarted = 0;
  const deps = {
    store: { statComplete: () => undefined, freeBytes: () => undefined },
    downloads: { list: () => [] },
    packageIndex: {
      folders: () => [],
      databasesIn: () => [],
      entriesIn: () => [],
      idle: () => {
        runsStarted++;
        return new Promise<void>((resolve, reject) => {
          release = (error) => error ? reject(error) : resolve();
        });
      },
    },
    usage: {
      folders: () => [],
      fetchedSince: () => [],
      load: () => Promise.resolve(),
      lastRunAt: () => saved.lastRunAt,
      noteRun: (at: number) => void (saved.lastRunAt = at),
    },
    customRepoNames: new Set<string>(),
    now: timers.now,
  } as unknown as PrefetchDeps;
  const prefetcher = new Prefetcher(deps, prefetchSchema.parse({ enabled: true, ...prefetch }), timers);
  return {
    timers,
    prefetcher,
    runsStarted: () => runsStarted,
    /** Waits for a run to be under way, then ends it (with `error`, as a throw). */
    async finishRun(error?: Error): Promise<void> {
      await waitFor("a run waiting to end", () => release !== undefined);
      const end = release!;
      release = undefined;
      end(error);
      await waitFor("the run to end", () => !prefetcher.status().running);
    },
  };
}

Deno.test("Prefetcher.start() schedules the first run one interval after the start, not before", async () => {
  const s = scheduled({ interval: "3s" });
  s.timers.advance(10_000);
  await s.prefetcher.start();
  assertEquals(s.prefetcher.status().nextRunAt, 13_000);
  assertEquals(s.timers.pending, [3000]);
  s.timers.advance(2999);
  assertEquals(s.prefetcher.status().running, false, "one millisecond before the interval: no run");
  s.timers.advance(1);
  assertEquals(s.prefetcher.status().running, true, "at the interval: the run starts");
  assertEquals(s.prefetcher.status().nextRunAt, undefined, "no next run is announced while this one runs");
  await s.finishRun();
  assertEquals(s.runsStarted(), 1);
  s.prefetcher.stop();
});

Deno.test("Prefetcher.start() schedules nothing when prefetch is disabled, and a second start() no second timer", async () => {
  const disabled = scheduled({ enabled: false });
  await disabled.prefetcher.start();
  assertEquals(disabled.timers.pending, []);
  assertEquals(disabled.prefetcher.status().nextRunAt, undefined);
  const enabled = scheduled({ interval: "1h 30min" });
  await enabled.prefetcher.start();
  await enabled.prefetcher.start();
  assertEquals(enabled.timers.pending, [5_400_000]);
  enabled.prefetcher.stop();
});

Deno.test("Prefetcher schedules the next run one interval after the end of the last, however long it took", async () => {
  const s = scheduled({ interval: "3s" });
  await s.prefetcher.start();
  s.timers.advance(3000);
  // The run takes 10 s, more than three intervals: no second run starts meanwhile.
  s.timers.advance(10_000);
  assertEquals([s.prefetcher.status().running, s.timers.pending], [true, []]);
  await s.finishRun();
  assertEquals(s.runsStarted(), 1, "one run in those 10 s");
  const status = s.prefetcher.status();
  assertEquals([status.runs, status.lastRunAt, status.nextRunAt], [1, 13_000, 16_000]);
  assertEquals(s.timers.pending, [3000]);
  s.timers.advance(3000);
  await s.finishRun();
  assertEquals(s.runsStarted(), 2);
  assertEquals(s.prefetcher.status().nextRunAt, 19_000);
  s.prefetcher.stop();
});

Deno.test("Prefetcher keeps its schedule after a failed run and shows the failure", async () => {
  const s = scheduled({ interval: "3s" });
  await s.prefetcher.start();
  s.timers.advance(3000);
  s.timers.advance(500);
  await s.finishRun(new Error("the package index could not be read"));
  let status = s.prefetcher.status();
  assertEquals(status.runs, 0, "a failed run is not counted as a run");
  assertEquals(status.lastRunAt, undefined);
  assertEquals(status.lastError, { at: 3500, message: "the package index could not be read" });
  assertEquals(status.nextRunAt, 6500);
  assertEquals(s.timers.pending, [3000]);
  s.timers.advance(3000);
  await s.finishRun();
  status = s.prefetcher.status();
  assertEquals([status.runs, status.lastRunAt, status.nextRunAt], [1, 6500, 9500]);
  s.prefetcher.stop();
});

Deno.test("Prefetcher.run() asked by hand leaves the schedule as it was", async () => {
  const s = scheduled({ interval: "3s" });
  await s.prefetcher.start();
  s.timers.advance(1000);
  const byHand = s.prefetcher.run();
  await s.finishRun();
  await byHand;
  assertEquals(s.prefetcher.status().runs, 1);
  assertEquals(s.prefetcher.status().nextRunAt, 3000);
  assertEquals(s.timers.pending, [3000]);
  s.prefetcher.stop();
});

Deno.test("Prefetcher.stop() cancels the next run, and during a run keeps a next one from being scheduled", async () => {
  const s = scheduled({ interval: "3s" });
  await s.prefetcher.start();
  s.prefetcher.stop();
  assertEquals([s.timers.pending, s.prefetcher.status().nextRunAt], [[], undefined]);
  await s.prefetcher.start();
  s.timers.advance(3000);
  s.prefetcher.stop();
  await s.finishRun();
  assertEquals(s.prefetcher.status().runs, 1, "the running pass ends on its own");
  assertEquals([s.timers.pending, s.prefetcher.status().nextRunAt], [[], undefined]);
});

Deno.test("Prefetcher.stop() starts no further download of the running run (a stopping proxy)", async () => {
  const names = ["a", "b", "c"];
  const obtained: string[] = [];
  let finishDownload: (() => void) | undefined;
  const usage = {
    folders: () => ["core/os/x86_64"],
    fetchedSince: () => names.map((name) => ({ folder: "core/os/x86_64", name, lastFetched: 0 })),
    load: () => Promise.resolve(),
  };
  const deps = {
    store: { statComplete: () => undefined, freeBytes: () => undefined },
    downloads: {
      list: () => [],
      obtain(target: { cacheSegments: string[]; kind: string }) {
        obtained.push(target.cacheSegments.join("/"));
        if (target.kind !== "package" || finishDownload) {
          return { finished: Promise.resolve(), state: "failed" };
        }
        const download = {
          state: "running",
          finalPath: "/nonexistent",
          finished: new Promise<void>((resolve) =>
            finishDownload = () => (download.state = "failed", resolve())
          ),
        };
        return download;
      },
    },
    packageIndex: {
      folders: () => [],
      databasesIn: () => ["core.db"],
      entriesIn: () =>
        names.map((name) => ({
          name,
          version: "1.0-1",
          fileName: `${name}-1.0-1-any.pkg.tar.zst`,
          compressedSize: 10,
          sha256: "0".repeat(64),
        })),
      idle: () => Promise.resolve(),
    },
    usage,
    customRepoNames: new Set<string>(),
    now: () => 0,
  } as unknown as PrefetchDeps;
  const prefetcher = new Prefetcher(deps, prefetchSchema.parse({ enabled: true }), new FakeTimers());
  const run = prefetcher.run();
  await waitFor("the first package's download", () => finishDownload !== undefined);
  prefetcher.stop();
  finishDownload!();
  const report = await run;
  const packages = obtained.filter((path) => path.endsWith(".pkg.tar.zst"));
  assertEquals(packages, ["core/os/x86_64/a-1.0-1-any.pkg.tar.zst"], "nothing after the stop");
  assertEquals(report.files.map((file) => file.outcome), ["failed"]);
});

Deno.test("Prefetcher.start() after a restart schedules the first run one interval after the last run's end, not after the start", async () => {
  // A Raspberry Pi switched on for four hours an evening, interval 6h: counted from each start, no run ever came.
  const saved: { lastRunAt?: number } = {};
  const before = scheduled({ interval: "6h" }, saved);
  await before.prefetcher.start();
  before.timers.advance(6 * 3_600_000);
  await before.finishRun();
  before.prefetcher.stop();
  assertEquals(saved.lastRunAt, 6 * 3_600_000, "the end of the run is kept");
  // Switched off 20 hours later and on again the next evening: the run is long due.
  const after = scheduled({ interval: "6h" }, saved);
  after.timers.advance(26 * 3_600_000);
  await after.prefetcher.start();
  assertEquals(after.timers.pending, [PREFETCH_START_DELAY_MS], "soon after the start");
  after.timers.advance(PREFETCH_START_DELAY_MS);
  assertEquals(after.prefetcher.status().running, true);
  await after.finishRun();
  after.prefetcher.stop();
  // Restarted two hours after a run: the next one comes four hours later, an interval after the last.
  const soon = scheduled({ interval: "6h" }, { lastRunAt: 10 * 3_600_000 });
  soon.timers.advance(12 * 3_600_000);
  await soon.prefetcher.start();
  assertEquals(soon.timers.pending, [4 * 3_600_000]);
  soon.prefetcher.stop();
  // A saved end in the future (the clock was set back): one interval from now, as without one.
  const ahead = scheduled({ interval: "6h" }, { lastRunAt: 100 * 3_600_000 });
  await ahead.prefetcher.start();
  assertEquals(ahead.timers.pending, [6 * 3_600_000]);
  ahead.prefetcher.stop();
});

Deno.test("Prefetcher.run() asked after stop() (a POST /prefetch during the shutdown drain) starts no run", async () => {
  const s = scheduled({ interval: "3s" });
  await s.prefetcher.start();
  s.prefetcher.stop();
  let outcome: string | undefined;
  const late = s.prefetcher.run().then(() => outcome = "ran", (error: Error) => outcome = error.message);
  await waitFor("the run to start or be refused", () => outcome !== undefined || s.runsStarted() > 0);
  if (outcome === undefined) await s.finishRun();
  await late;
  assertEquals(s.runsStarted(), 0, "no run started");
  assert(outcome!.includes("stopping"), outcome);
});
