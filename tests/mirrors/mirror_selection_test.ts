/**
 * Choosing the mirrors at start: predefined or auto, ranked by latency from the status JSON, fallbacks without
 * network, and a saved ranking reused, re-tested or ignored. Refreshes in the background are in
 * mirror_selection_refresh_test.ts.
 */

import assert from "node:assert/strict";
import { readRankingSync, writeRanking } from "../../src/mirrors/mirror_ranking_store.ts";
import { primaryMirrorLogger, startMirrorSelection } from "../../src/mirrors/mirror_selection.ts";
import { BUILT_IN_MIRRORS } from "../../src/mirrors/mirrors.ts";
import { refusingUrl, statusEntry as entry } from "../helpers/mirror_fixtures.ts";
import {
  DAY,
  hits,
  ranked,
  setup,
  statusServer,
  T0,
  testConfig,
  withDir,
} from "../helpers/mirror_selection_setup.ts";

Deno.test("primaryMirrorLogger() logs the line users grep for", () => {
  const lines: string[] = [];
  const logPrimary = primaryMirrorLogger({ info: (m) => lines.push(m) });
  logPrimary("https://geo.mirror.pkgbuild.com/", "built-in");
  logPrimary(undefined, "predefined");
  assert.equal(lines[0], 'Primary mirror: "https://geo.mirror.pkgbuild.com/" (from built-in)');
  assert.match(lines[1], /^No primary mirror/);
});

Deno.test('startMirrorSelection() with "predefined" uses mirrors_predefined and stays off the network', async () => {
  await withDir(async (dir) => {
    const t = setup(dir);
    let fetches = 0;
    const config = testConfig(dir, {
      mirror_selection_method: "predefined",
      mirrors_predefined: ["http://127.0.0.1:1/arch", "http://127.0.0.1:2/"],
    });
    const selection = startMirrorSelection(config, {
      ...t.deps,
      fetch: () => Promise.reject(new Error(`${++fetches}`)),
    });
    assert.deepEqual(t.pool.plan("database"), ["http://127.0.0.1:1/arch/", "http://127.0.0.1:2/"]);
    assert.equal(t.pool.source, "predefined");
    await selection.ready;
    await selection.refresh();
    selection.stop();
    assert.equal(fetches, 0);
    assert.equal(t.timers.pending.size, 0);
    assert.deepEqual(t.infos, ['Primary mirror: "http://127.0.0.1:1/arch/" (from predefined)']);
  });
});

Deno.test("startMirrorSelection() ranks local mirrors by latency, skips lagging ones and persists", async () => {
  await withDir(async (dir, mirrors) => {
    const t = setup(dir);
    const fast = await mirrors.start();
    const medium = await mirrors.start({ delayMs: 80 });
    const slow = await mirrors.start({ delayMs: 160 });
    const slowest = await mirrors.start({ delayMs: 240 });
    const lagging = await mirrors.start();
    const broken = await mirrors.start({ status: 404 });
    const status = statusServer([
      entry(slow.url, 0.5),
      entry(medium.url, 1),
      entry(broken.url, 1.1),
      entry(fast.url, 1.5),
      entry(slowest.url, 2),
      entry(lagging.url, 0.2, { delay: 200_000 }),
    ]);
    const sourceDuringTests: string[] = [];
    fast.onRequest = () => sourceDuringTests.push(t.pool.source);
    try {
      const config = testConfig(dir, {}, { mirrors_status_json_endpoint: status.url });
      const selection = startMirrorSelection(config, t.deps);
      assert.deepEqual(t.pool.plan("database"), [...BUILT_IN_MIRRORS], "filled before returning");
      await selection.ready;
      assert.deepEqual(t.pool.plan("database"), [fast.url, medium.url, slow.url]);
      assert.deepEqual(t.sources, ["built-in", "status json", "latency test"]);
      assert.deepEqual(sourceDuringTests, ["status json"]);
      assert.ok(t.infos.includes(`Primary mirror: "${fast.url}" (from latency test)`));
      assert.equal(hits(lagging), 0);
      assert.ok((t.pool.snapshot()[1].latencyMs ?? 0) >= 75);

      const stored = readRankingSync(config.mirrorlist_latency_test_results_file);
      assert.equal(stored?.timestamp, new Date(T0).toISOString());
      assert.deepEqual(stored?.mirrors.map((m) => [m.url, m.countryCode, m.score]), [
        [fast.url, "DE", 1.5],
        [medium.url, "DE", 1],
        [slow.url, "DE", 0.5],
      ]);
      assert.equal(t.timers.only().ms, 8 * DAY);
      selection.stop();
      assert.equal(t.timers.pending.size, 0);
    } finally {
      await status.close();
    }
  });
});

Deno.test("startMirrorSelection() starts without network: fallback list at once, ready resolves", async () => {
  await withDir(async (dir) => {
    const t = setup(dir);
    const predefined = testConfig(dir, { mirrors_predefined: ["http://127.0.0.1:3/"] }, {
      mirrors_status_json_endpoint_fallbacks: [refusingUrl()],
    });
    const first = startMirrorSelection(predefined, t.deps);
    assert.deepEqual(t.pool.plan("database"), ["http://127.0.0.1:3/"]);
    await first.ready;
    assert.equal(t.pool.source, "predefined");
    assert.match(
      t.warnings.at(-1)!,
      /Could not get the mirror status from any endpoint.*Keeping the 1 mirrors/,
    );
    assert.equal(t.timers.only().ms, 60_000, "retries soon");
    first.stop();

    const other = setup(dir);
    const builtIn = startMirrorSelection(testConfig(dir), { ...other.deps, retryAfterMs: 5000 });
    assert.deepEqual(other.pool.plan("database"), [...BUILT_IN_MIRRORS]);
    await builtIn.ready;
    assert.equal(other.pool.source, "built-in");
    // Retries back off: 5 s, then 10 s.
    assert.equal(other.timers.only().ms, 5000);
    other.clock.now += 5000;
    other.timers.fire();
    await builtIn.refresh();
    assert.equal(other.timers.only().ms, 10_000);
    builtIn.stop();
    await assert.rejects(Deno.stat(predefined.mirrorlist_latency_test_results_file), Deno.errors.NotFound);
  });
});

Deno.test("startMirrorSelection() uses the status endpoint fallbacks", async () => {
  await withDir(async (dir, mirrors) => {
    const t = setup(dir);
    const mirror = await mirrors.start();
    const status = statusServer([entry(mirror.url, 1)]);
    try {
      const config = testConfig(dir, {}, {
        mirrors_status_json_endpoint_fallbacks: [refusingUrl(), status.url],
      });
      const selection = startMirrorSelection(config, t.deps);
      await selection.ready;
      selection.stop();
      assert.deepEqual(t.pool.plan("database"), [mirror.url]);
      assert.equal(t.pool.source, "latency test");
      assert.equal(status.state.requests, 1);
    } finally {
      await status.close();
    }
  });
});

Deno.test("startMirrorSelection() reuses a young ranking without network and re-tests when it is due", async () => {
  await withDir(async (dir, mirrors) => {
    const t = setup(dir);
    const a = await mirrors.start({ delayMs: 60 });
    const b = await mirrors.start();
    const status = statusServer([entry(a.url, 1), entry(b.url, 1)]);
    try {
      const config = testConfig(dir, {}, { mirrors_status_json_endpoint: status.url });
      await writeRanking(config.mirrorlist_latency_test_results_file, {
        timestamp: new Date(T0 - DAY).toISOString(),
        mirrors: [ranked(a.url, 5), ranked(b.url, 9)],
      });
      const selection = startMirrorSelection(config, t.deps);
      await selection.ready;
      assert.deepEqual(t.pool.plan("database"), [a.url, b.url]);
      assert.equal(t.pool.source, "persisted ranking");
      assert.equal(t.pool.snapshot()[0].latencyMs, 5);
      assert.equal(status.state.requests + hits(a) + hits(b), 0, "no network");
      assert.equal(t.timers.only().ms, 7 * DAY, "due 8 days after the ranking was made");

      t.clock.now += 7 * DAY;
      t.timers.fire();
      await selection.refresh(); // joins the refresh the timer started
      assert.equal(status.state.requests, 1);
      assert.deepEqual(t.pool.plan("database"), [b.url, a.url]);
      assert.equal(t.pool.source, "latency test");
      const stored = readRankingSync(config.mirrorlist_latency_test_results_file);
      assert.equal(stored?.timestamp, new Date(T0 + 7 * DAY).toISOString());
      assert.equal(t.timers.only().ms, 8 * DAY);
      selection.stop();
    } finally {
      await status.close();
    }
  });
});

Deno.test("startMirrorSelection() uses a stale, corrupt or differently made ranking only until tested", async () => {
  await withDir(async (dir, mirrors) => {
    const mirror = await mirrors.start();
    const status = statusServer([entry(mirror.url, 1)]);
    try {
      const config = testConfig(dir, {}, { mirrors_status_json_endpoint: status.url });
      const path = config.mirrorlist_latency_test_results_file;
      const old = ranked("http://127.0.0.1:4/");
      const [stale, now] = [new Date(T0 - 9 * DAY).toISOString(), new Date(T0).toISOString()];
      const cases = [
        { name: "stale", timestamp: stale, settings: undefined, start: "persisted ranking" },
        { name: "other settings", timestamp: now, settings: "{}", start: "persisted ranking" },
        { name: "corrupt", timestamp: "", settings: undefined, start: "built-in" },
      ];
      for (const c of cases) {
        const t = setup(dir);
        if (c.name === "corrupt") await Deno.writeTextFile(path, "{ not json");
        else await writeRanking(path, { timestamp: c.timestamp, settings: c.settings, mirrors: [old] });
        const selection = startMirrorSelection(config, t.deps);
        assert.equal(t.pool.source, c.start, c.name);
        await selection.ready;
        selection.stop();
        assert.deepEqual(t.pool.plan("database"), [mirror.url], c.name);
        assert.equal(readRankingSync(path)?.mirrors[0].url, mirror.url, c.name);
        if (c.name === "corrupt") assert.match(t.warnings[0], /Ignoring the mirror ranking.*not valid JSON/);
      }
    } finally {
      await status.close();
    }
  });
});

Deno.test("startMirrorSelection() falls back when no mirror passes the latency test", async () => {
  await withDir(async (dir, mirrors) => {
    const broken = await mirrors.start({ status: 404 });
    const status = statusServer([entry(broken.url, 1)]);
    try {
      const t = setup(dir);
      const config = testConfig(dir, { mirrors_predefined: ["http://127.0.0.1:5/"] }, {
        mirrors_status_json_endpoint: status.url,
      });
      const selection = startMirrorSelection(config, t.deps);
      await selection.ready;
      selection.stop();
      assert.deepEqual(t.sources, ["predefined", "status json", "predefined"]);
      assert.equal(hits(broken), 4, "tried with the settings relaxed 3 times");
      assert.match(t.warnings.at(-1)!, /No mirror passed the latency test.*using the fallback mirrors/);

      // A tested ranking from an earlier run is better than the fallback: it is kept.
      const tested = ranked("http://127.0.0.1:6/");
      await writeRanking(config.mirrorlist_latency_test_results_file, {
        timestamp: new Date(T0 - 9 * DAY).toISOString(),
        mirrors: [tested],
      });
      const u = setup(dir);
      const again = startMirrorSelection(config, u.deps);
      await again.ready;
      again.stop();
      assert.deepEqual(u.pool.plan("database"), [tested.url]);
      assert.match(u.warnings.at(-1)!, /keeping the mirrors from persisted ranking/);
    } finally {
      await status.close();
    }
  });
});
