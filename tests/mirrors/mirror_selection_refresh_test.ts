/**
 * Mirror selection after start: re-tests in the background on a timer that stop() clears, and on a real unref'd
 * timer; stop() during the first ranking; what the pool learns on downloads reordering the ranking.
 */

import assert from "node:assert/strict";
import { writeRanking } from "../../src/mirrors/mirror_ranking_store.ts";
import { startMirrorSelection } from "../../src/mirrors/mirror_selection.ts";
import { statusEntry as entry } from "../helpers/mirror_fixtures.ts";
import {
  DAY,
  ranked,
  setup,
  statusServer,
  T0,
  testConfig,
  withDir,
} from "../helpers/mirror_selection_setup.ts";

Deno.test("startMirrorSelection() re-tests in the background and stop() clears the timer", async () => {
  await withDir(async (dir, mirrors) => {
    const t = setup(dir);
    const a = await mirrors.start();
    const b = await mirrors.start({ delayMs: 100 });
    const status = statusServer([entry(a.url, 1), entry(b.url, 1)]);
    try {
      const config = testConfig(dir, {}, { mirrors_status_json_endpoint: status.url });
      const selection = startMirrorSelection(config, t.deps);
      await selection.ready;
      assert.deepEqual(t.pool.plan("database"), [a.url, b.url]);
      a.faults = { delayMs: 100 };
      b.faults = {};
      assert.equal(t.timers.only().ms, 8 * DAY);
      t.clock.now += 8 * DAY;
      t.timers.fire();
      await selection.refresh();
      assert.deepEqual(t.pool.plan("database"), [b.url, a.url]);
      assert.ok(t.infos.includes(`Primary mirror: "${b.url}" (from latency test)`));
      assert.equal(status.state.requests, 2);
      selection.stop();
      assert.equal(t.timers.pending.size, 0);
      await selection.refresh();
      assert.equal(status.state.requests, 2, "stopped: no more refreshes");
    } finally {
      await status.close();
    }
  });
});

Deno.test("startMirrorSelection() refreshes on a real unref'd timer", async () => {
  await withDir(async (dir, mirrors) => {
    const t = setup(dir);
    const mirror = await mirrors.start();
    const status = statusServer([entry(mirror.url, 1)]);
    try {
      const config = testConfig(dir, { refresh_latency_tests_after: "1s" }, {
        mirrors_status_json_endpoint: status.url,
      });
      const selection = startMirrorSelection(config, {
        ...t.deps,
        now: undefined,
        setTimer: undefined,
        clearTimer: undefined,
      });
      await selection.ready;
      // The refresh runs on the real default timer after 1 s: wait for it, failing after 10 s where a timer
      // that never fires would hang.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const refreshed = await Promise.race([
        status.requested(2).then(() => true),
        new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), 10_000)),
      ]);
      clearTimeout(timer);
      selection.stop();
      assert.ok(refreshed && status.state.requests >= 2, `status fetched ${status.state.requests} times`);
    } finally {
      await status.close();
    }
  });
});

Deno.test("stop() during the first ranking: ready resolves and the pool keeps its list", async () => {
  await withDir(async (dir) => {
    const t = setup(dir);
    const status = statusServer([], { hang: true });
    try {
      const config = testConfig(dir, {}, { mirrors_status_json_endpoint: status.url });
      const selection = startMirrorSelection(config, t.deps);
      await status.requested(1);
      selection.stop();
      await selection.ready;
      assert.equal(t.pool.source, "built-in");
      assert.equal(t.timers.pending.size, 0);
      assert.deepEqual(t.warnings, []);
    } finally {
      await status.close();
    }
  });
});

Deno.test("startMirrorSelection() lets what the pool learnt on downloads reorder the ranking", async () => {
  await withDir(async (dir, mirrors) => {
    const t = setup(dir);
    // By latency alone the order would be c, a, b.
    const [a, b, c] = [await mirrors.start(), await mirrors.start({ delayMs: 40 }), await mirrors.start()];
    const status = statusServer([entry(a.url, 1), entry(b.url, 1), entry(c.url, 1)]);
    try {
      const config = testConfig(dir, {}, { mirrors_status_json_endpoint: status.url });
      await writeRanking(config.mirrorlist_latency_test_results_file, {
        timestamp: new Date(T0 - 9 * DAY).toISOString(),
        mirrors: [c, a, b].map((m) => ranked(m.url, 1)),
      });
      const selection = startMirrorSelection(config, t.deps);
      // The pool serves from the persisted ranking while the mirrors are tested again.
      t.pool.recordSuccess(a.url, { bytes: 4 * 1024 * 1024, durationMs: 4000 }); // 1 MiB/s
      t.pool.recordSuccess(b.url, { bytes: 4 * 1024 * 1024, durationMs: 200 }); // 20 MiB/s
      for (let i = 0; i < 4; i++) t.pool.recordFailure(c.url, "connection reset");
      await selection.ready;
      selection.stop();
      assert.deepEqual(t.pool.snapshot().map((m) => m.url), [b.url, a.url, c.url]);
      assert.equal(t.pool.source, "latency test");
    } finally {
      await status.close();
    }
  });
});
