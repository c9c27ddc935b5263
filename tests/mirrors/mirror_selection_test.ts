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
      // The fastest mirror is used as soon as it passed, before the slower tests end.
      assert.deepEqual(t.sources, ["built-in", "status json", "first latency results"]);
      assert.deepEqual(sourceDuringTests, ["status json"]);
      assert.ok(t.infos.includes(`Primary mirror: "${fast.url}" (from first latency results)`));
      assert.equal(t.pool.source, "latency test");
      assert.equal(hits(lagging), 0);
      assert.ok((t.pool.snapshot()[1].latencyMs ?? 0) >= 75);

      const stored = readRankingSync(config.mirrorlist_latency_test_results_file);
      assert.equal(stored?.timestamp, new Date(T0).toISOString());
      assert.deepEqual(stored?.mirrors.map((m) => [m.url, m.countryCode, m.score]), [
        [fast.url, "DE", 1.5],
        [medium.url, "DE", 1],
        [slow.url, "DE", 0.5],
      ]);
      assert.equal(
        Deno.readTextFileSync(config.mirrorlist_fallback_file),
        [fast.url, medium.url, slow.url].join("\n"),
        "the mirror list as flexo writes it: one URL a line",
      );
      assert.equal(t.timers.only().ms, 8 * DAY);
      selection.stop();
      assert.equal(t.timers.pending.size, 0);
    } finally {
      await status.close();
    }
  });
});

Deno.test("startMirrorSelection() uses mirrorlist_fallback_file before the built-in list when the status JSON fails", async () => {
  await withDir(async (dir) => {
    const t = setup(dir);
    const config = testConfig(dir, {}, { mirrors_status_json_endpoint_fallbacks: [refusingUrl()] });
    // As the original flexo wrote it after its last ranking, with a line of a pacman mirrorlist added by hand.
    Deno.writeTextFileSync(
      config.mirrorlist_fallback_file,
      "http://127.0.0.1:4/archlinux/\nhttp://127.0.0.1:5\n\nServer = http://127.0.0.1:6/arch/$repo/os/$arch",
    );
    const selection = startMirrorSelection(config, t.deps);
    const fromFile = ["http://127.0.0.1:4/archlinux/", "http://127.0.0.1:5/", "http://127.0.0.1:6/arch/"];
    assert.deepEqual(t.pool.plan("database"), fromFile, "filled before returning");
    assert.equal(t.pool.source, "mirrorlist fallback file");
    await selection.ready;
    selection.stop();
    assert.deepEqual(t.pool.plan("database"), fromFile, "kept when the status JSON cannot be fetched");
    assert.match(t.warnings.at(-1)!, /Keeping the 3 mirrors from mirrorlist fallback file/);
    assert.deepEqual(t.sources, ["mirrorlist fallback file"], "the built-in list was never used");
    assert.ok(
      t.infos.includes(
        `Using the 3 mirrors of the last ranking from ${config.mirrorlist_fallback_file} ` +
          "until the mirrors are ranked again.",
      ),
      t.infos.join("\n"),
    );

    // A list with nothing usable in it: a warning that says what to write, and the built-in mirrors.
    Deno.writeTextFileSync(config.mirrorlist_fallback_file, "mirror.example.org\n");
    const other = setup(dir);
    const second = startMirrorSelection(config, other.deps);
    second.stop();
    await second.ready;
    assert.equal(other.pool.source, "built-in");
    assert.match(other.warnings[0], /Ignoring 1 line\(s\) of the mirror list .* write one mirror URL a line/);
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
        // The earlier cases' rankings also wrote the plain mirror list: it stands in for the corrupt ranking.
        { name: "corrupt", timestamp: "", settings: undefined, start: "mirrorlist fallback file" },
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
      assert.ok(t.infos.includes(`Primary mirror: "${b.url}" (from first latency results)`));
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
