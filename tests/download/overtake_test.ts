/**
 * Overtaking a slow transfer (src/download/overtake.ts): a download from a trickling mirror probes the next
 * mirror of its plan and moves to it when it is clearly faster; on a fake clock and fake upstreams.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { gatedFetch, type GatedRequest, testBytes } from "../helpers/fake_fetch.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { turn } from "../helpers/pump_gated.ts";
import { waitFor } from "../helpers/wait.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { sha256 } from "../helpers/bytes.ts";
import { captureLog } from "../helpers/log_capture.ts";
import { startTestDownload } from "../helpers/test_download.ts";
import {
  A,
  B,
  finishFrom,
  head,
  probeRange,
  SEGMENTS,
  SIZE,
  slowDownload,
  TRICKLE,
} from "../helpers/slow_download.ts";
import { CacheStore } from "../../src/cache/cache_store.ts";
import {
  judgeProbe,
  OVERTAKE,
  overtakerFor,
  probeDecision,
  pumpOvertakable,
} from "../../src/download/overtake.ts";
import { Attempt } from "../../src/download/attempt.ts";
import { MirrorPool } from "../../src/mirrors/mirrors.ts";

Deno.test("Download.start() moves from a trickling mirror to the next one once a probe shows it much faster, and resumes there with a Range", async () => {
  await withTempDir(async (dir) => {
    const { data, download, gates, signals, trickle } = await slowDownload(dir);
    await trickle(TRICKLE);
    await trickle(TRICKLE);
    assertEquals(gates.length, 2, "B is probed after the measuring window");
    const probe = gates[1];
    assert(probe.url.startsWith(B), probe.url);
    assertEquals(probe.headers.get("range"), probeRange(2 * TRICKLE));
    // B sends the probe's megabyte at once: far more than twice A's rate.
    probe.push(data.slice(2 * TRICKLE, 2 * TRICKLE + OVERTAKE.probeBytes));
    await waitFor("A to be given up and B asked again", () => gates.length === 3);
    assert(signals[0].aborted, "A's transfer ended");
    assert(signals[1].aborted, "the probe ended");
    assertEquals(download.written, 2 * TRICKLE, "no byte of the probe went into the file");
    const resume = gates[2];
    assert(resume.url.startsWith(B), resume.url);
    assertEquals(resume.headers.get("range"), `bytes=${2 * TRICKLE}-`, "B resumes where A stopped");
    assertEquals(download.mirror, B);
    await finishFrom(resume, download, data);
  });
});

Deno.test("Download.start() counts the bytes of a probe as received from the probed mirror, and the probe and the transfer it overtook in the pool", async () => {
  await withTempDir(async (dir) => {
    const pool = new MirrorPool();
    const { data, download, gates, trickle } = await slowDownload(dir, { pool });
    await trickle(TRICKLE);
    await trickle(TRICKLE);
    assertEquals(gates.length, 2, "B is probed");
    gates[1].push(data.slice(2 * TRICKLE, 2 * TRICKLE + OVERTAKE.probeBytes));
    await waitFor("B to be asked for the rest", () => gates.length === 3);
    await finishFrom(gates[2], download, data);
    const received = (url: string) => pool.snapshot().find((mirror) => mirror.url === url)?.bytes;
    assertEquals(received(A), 2 * TRICKLE);
    assertEquals(
      received(B),
      OVERTAKE.probeBytes + SIZE - 2 * TRICKLE,
      "the probe's megabyte came from B too",
    );
    assertEquals(
      pool.overtakes,
      { probes: 1, overtaken: 1 },
      "one probe, one transfer overtaken (for /metrics)",
    );
  });
});

Deno.test("Download.start() keeps a trickling mirror when the probed next one is as slow, and says why in the debug log", async () => {
  await withTempDir(async (dir) => {
    const captured = await captureLog("debug");
    try {
      const { data, download, gates, a, trickle } = await slowDownload(dir);
      await trickle(TRICKLE);
      await trickle(TRICKLE);
      assertEquals(gates.length, 2, "B is probed");
      const probe = gates[1];
      let sent = 2 * TRICKLE;
      // B trickles as A does until the probe's time is up.
      for (let ms = 0; ms < OVERTAKE.probeMs; ms += 1000) {
        probe.push(data.slice(sent, sent += TRICKLE));
        await turn();
        await trickle(TRICKLE);
      }
      await finishFrom(a, download, data);
      assertEquals(gates.length, 2, "B was never asked for the rest");
      await captured.close();
      assert(
        /keeps .*big-1\.0-1.*delivered 19\.5 KiB\/s, not 2 times/.test(captured.text()),
        captured.text(),
      );
    } finally {
      await captured.close();
    }
  });
});

Deno.test("Download.start() keeps a trickling mirror when the probe of the next one fails, and probes it again a bounded number of times", async () => {
  await withTempDir(async (dir) => {
    const captured = await captureLog("debug");
    try {
      const { data, download, gates, a, trickle } = await slowDownload(dir, {
        probe: () => ({ status: 500 }),
      });
      await trickle(TRICKLE);
      await trickle(TRICKLE);
      assertEquals(gates.length, 2, "B is probed");
      assertEquals(gates[1].headers.get("range"), probeRange(2 * TRICKLE));
      for (let i = 0; i < OVERTAKE.reprobeMs / 1000; i++) await trickle(TRICKLE);
      assertEquals(gates.length, 3, "B is probed again after a while");
      for (let i = 0; i < 2 * OVERTAKE.reprobeMs / 1000; i++) await trickle(TRICKLE);
      assertEquals(gates.length, 1 + OVERTAKE.probesPerAttempt, "and no more than that for A's transfer");
      await finishFrom(a, download, data);
      assert(gates.every((gate, i) => i === 0 || gate.url.startsWith(B) && gate.headers.has("range")));
      await captured.close();
      assert(/the probe of http:\/\/mirror-b\.test\/ failed: answered HTTP 500/.test(captured.text()));
    } finally {
      await captured.close();
    }
  });
});

Deno.test("Download.start() probes while a package trickles but never while a database does", async () => {
  for (const resumeAcrossMirrors of [true, false]) {
    await withTempDir(async (dir) => {
      const { data, download, gates, a, trickle } = await slowDownload(dir, {
        rules: { resumeAcrossMirrors },
      });
      for (let i = 0; i < 12; i++) await trickle(TRICKLE);
      assertEquals(gates.length, resumeAcrossMirrors ? 2 : 1, `resumeAcrossMirrors ${resumeAcrossMirrors}`);
      await finishFrom(a, download, data);
    });
  }
});

Deno.test("Download.start() cancels a running probe when the transfer completes", async () => {
  await withTempDir(async (dir) => {
    const { data, download, gates, signals, a, trickle } = await slowDownload(dir);
    await trickle(TRICKLE);
    await trickle(TRICKLE);
    assertEquals(gates.length, 2, "B is probed");
    assert(!signals[1].aborted, "the probe waits for B's bytes");
    await finishFrom(a, download, data);
    assert(signals[1].aborted, "the probe was cancelled with the transfer's end");
    assertEquals(gates.length, 2);
  });
});

Deno.test("Download.start() probes a mirror paced below half of max_speed_limit, with at most a second's worth of bytes, and never one paced at it", async () => {
  for (const maxSpeedLimit of [4 * TRICKLE, TRICKLE]) {
    await withTempDir(async (dir) => {
      const { data, clock, download, gates, a, trickle } = await slowDownload(dir, { maxSpeedLimit });
      for (let i = 0; i < 12; i++) await trickle(TRICKLE);
      if (maxSpeedLimit === TRICKLE) {
        assertEquals(gates.length, 1, "A is paced by max_speed_limit: never probed");
      } else {
        assertEquals(gates.length, 2, "A is slower than half of max_speed_limit: probed");
        const from = 2 * TRICKLE;
        assertEquals(gates[1].headers.get("range"), `bytes=${from}-${from + maxSpeedLimit - 1}`);
      }
      await finishFrom(a, download, data, clock);
    });
  }
});

Deno.test("Download.start() never probes a mirror that delivers the rest within seconds, and probes it once it slows", async () => {
  await withTempDir(async (dir) => {
    const { data, download, gates, a, trickle } = await slowDownload(dir);
    // 200 kB/s: the 2 MB file takes 10 s in all, less than that is left at every look.
    for (let i = 0; i < 4; i++) await trickle(10 * TRICKLE);
    assertEquals(gates.length, 1, "a fast mirror is not probed");
    for (let i = 0; i < 6; i++) await trickle(TRICKLE / 20);
    assertEquals(gates.length, 2, "once it trickles, it is");
    await finishFrom(a, download, data);
  });
});

Deno.test("pumpOvertakable() never probes the next mirror while the transfer waits on its writes (a slow disk), not on its mirror", async () => {
  const data = testBytes(SIZE, 43);
  const clock = new FakeTimers();
  const gated = gatedFetch((req) => head(req));
  const pool = new MirrorPool();
  pool.setMirrors([A, B], "test");
  const deps = { fetch: gated.fetch, now: clock.now, timers: clock.deps };
  const limits = {
    connectTimeoutMs: 5_000,
    lowSpeedLimit: 1,
    lowSpeedTimeMs: 60_000,
    lastResortStallMs: 60_000,
  };
  const upstreamPath = SEGMENTS.join("/");
  const attempt = new Attempt(A, { upstreamPath, mirrors: pool, deps, limits });
  const answer = await attempt.ask(new Headers(), { written: 0 }, { meta: {}, resumeAcrossMirrors: true });
  assert(answer.type === "accepted");
  let written = 0;
  let disk: PromiseWithResolvers<void> | undefined;
  const context = { deps, limits, upstreamPath, mirrors: pool, rules: { resumeAcrossMirrors: true } };
  const overtaker = overtakerFor(context, {
    mirror: A,
    candidate: B,
    total: SIZE,
    written: () => written,
  });
  const pumping = pumpOvertakable(attempt, answer, {
    from: 0,
    // The disk takes each chunk only when the test says so.
    write: (chunk) => {
      const count = chunk.byteLength;
      disk = Promise.withResolvers();
      return disk.promise.then(() => void (written += count));
    },
    canSwitch: () => true,
  }, overtaker);
  // A sends 20 kB at once every second, and the disk takes the whole second to write them: A is not slow.
  for (let second = 0; second < 12; second++) {
    gated.gates[0].push(data.slice(written, written + TRICKLE));
    await waitFor("the chunk to reach the disk", () => disk !== undefined);
    clock.advance(1000);
    await turn();
    const writing = disk!;
    disk = undefined;
    writing.resolve();
    await turn();
  }
  assertEquals(
    gated.gates.length,
    1,
    "the next mirror was not probed: its bytes would wait on the same disk",
  );
  attempt.close();
  assertEquals((await pumping).type, "cut_short");
});

Deno.test("Download.start() probes the mirror after the one that joined its race as a new primary, never that one itself", async () => {
  await withTempDir(async (dir) => {
    const C = "http://mirror-c.test/";
    const data = testBytes(SIZE, 47);
    const clock = new FakeTimers();
    const gated = gatedFetch((req) => head(req));
    let askedA = false;
    // A never sends its head.
    const fetch: typeof globalThis.fetch = (input, init) => {
      if (!String(input).startsWith(A)) return gated.fetch(input, init);
      askedA = true;
      const signal = init!.signal!;
      return new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
    };
    const pool = new MirrorPool();
    const download = startTestDownload(new CacheStore(dir), fetch, {
      segments: SEGMENTS,
      mirrors: [A, B, C],
      expect: { size: SIZE, sha256: sha256(data) },
      clock,
      pool,
    });
    await waitFor("A to be asked", () => askedA);
    // A better ranking: B joins the race for the head at once, and wins it.
    pool.setMirrors([B, A, C], "test");
    await download.head;
    assertEquals(download.mirror, B);
    const b = gated.gates[0];
    for (let second = 0; second < 2; second++) {
      const target = download.written + TRICKLE;
      b.push(data.slice(download.written, target));
      while (download.written < target) await download.changed();
      await turn();
      clock.advance(1000);
      await turn();
    }
    assertEquals(gated.gates.length, 2, "a probe is sent");
    assert(gated.gates[1].url.startsWith(C), `the probe asks C, the next mirror, not ${gated.gates[1].url}`);
    await finishFrom(b, download, data);
  });
});

Deno.test("Download.start() lets the next mirror overtake one that won a probe and then trickled, and the last one probes the first again", async () => {
  await withTempDir(async (dir) => {
    const C = "http://mirror-c.test/";
    const data = testBytes(SIZE, 53);
    const clock = new FakeTimers();
    const gated = gatedFetch((req) => head(req));
    const download = startTestDownload(new CacheStore(dir), gated.fetch, {
      segments: SEGMENTS,
      mirrors: [A, B, C],
      expect: { size: SIZE, sha256: sha256(data) },
      clock,
    });
    await download.head;
    const trickle = async (gate: GatedRequest) => {
      const target = download.written + TRICKLE;
      gate.push(data.slice(download.written, target));
      while (download.written < target) await download.changed();
      await turn();
      clock.advance(1000);
      await turn();
    };
    await trickle(gated.gates[0]);
    await trickle(gated.gates[0]);
    assert(gated.gates[1].url.startsWith(B), "B is probed");
    gated.gates[1].push(data.slice(2 * TRICKLE, 2 * TRICKLE + OVERTAKE.probeBytes));
    await waitFor("B to be asked for the rest", () => gated.gates.length === 3);
    const b = gated.gates[2];
    assert(b.url.startsWith(B));
    // B trickles as A did.
    await trickle(b);
    await trickle(b);
    assertEquals(gated.gates.length, 4, "C is probed");
    assert(gated.gates[3].url.startsWith(C), gated.gates[3].url);
    gated.gates[3].push(data.slice(4 * TRICKLE, 4 * TRICKLE + OVERTAKE.probeBytes));
    await waitFor("C to be asked for the rest", () => gated.gates.length === 5);
    const c = gated.gates[4];
    assertEquals(c.headers.get("range"), `bytes=${4 * TRICKLE}-`);
    // C, the last mirror, trickles too: A, overtaken first and put back at the end of the plan, is probed.
    await trickle(c);
    await trickle(c);
    assertEquals(gated.gates.length, 6, "A is probed again");
    assert(gated.gates[5].url.startsWith(A), gated.gates[5].url);
    assertEquals(gated.gates[5].headers.get("range"), probeRange(6 * TRICKLE));
    await finishFrom(c, download, data);
  });
});

Deno.test("Download.start() does not probe again, for a while, a next mirror whose last probe showed less than twice the rate of the one in use (a link that limits both)", async () => {
  const pool = new MirrorPool();
  const clock = new FakeTimers();
  await withTempDir(async (dir) => {
    const { data, download, gates, a, trickle } = await slowDownload(dir, { pool, clock });
    await trickle(TRICKLE);
    await trickle(TRICKLE);
    assertEquals(gates.length, 2, "B is probed");
    let sent = 2 * TRICKLE;
    // B's probe gets no more than A: our own link is what limits them.
    for (let ms = 0; ms < OVERTAKE.probeMs; ms += 1000) {
      gates[1].push(data.slice(sent, sent += TRICKLE));
      await turn();
      await trickle(TRICKLE);
    }
    await finishFrom(a, download, data);
  });
  await withTempDir(async (dir) => {
    const { data, download, gates, a, trickle } = await slowDownload(dir, { pool, clock });
    for (let i = 0; i < 12; i++) await trickle(TRICKLE);
    assertEquals(gates.length, 1, "the next order does not probe B: its last probe could not win");
    await finishFrom(a, download, data);
  });
  clock.advance(OVERTAKE.probeMemoryMs);
  await withTempDir(async (dir) => {
    const { data, download, gates, a, trickle } = await slowDownload(dir, { pool, clock });
    for (let i = 0; i < 2; i++) await trickle(TRICKLE);
    assertEquals(gates.length, 2, "once that probe is old, B is probed again");
    await finishFrom(a, download, data);
  });
});

Deno.test("judgeProbe() keeps the mirror in use when switching saves too little, and switches when it saves much", () => {
  const probe = { bytes: OVERTAKE.probeBytes, ms: 100, ttfbMs: 50 };
  // 100 kB left at 20 kB/s: 5 s, of which a switch saves less than minSavingMs.
  assertEquals(judgeProbe(probe, { aRate: 20_000, remaining: 100_000 }).type, "keep");
  const judged = judgeProbe(probe, { aRate: 20_000, remaining: 2_000_000 });
  assertEquals(judged.type, "switch");
  // B's rate counts at most max_speed_limit, where it will be paced.
  assertEquals(
    judgeProbe(probe, { aRate: 20_000, remaining: 2_000_000, maxSpeedLimit: 30_000 }).type,
    "keep",
  );
});

Deno.test("probeDecision() waits for the measuring window and probes with no more bytes than are left", () => {
  const slow = { rate: 1_000, remaining: 500_000 };
  assertEquals(probeDecision({ ...slow, elapsedMs: OVERTAKE.measureMs - 1 }).type, "wait");
  assertEquals(probeDecision({ ...slow, elapsedMs: OVERTAKE.measureMs }), { type: "probe", bytes: 500_000 });
  assertEquals(probeDecision({ ...slow, elapsedMs: 60_000, remaining: 0 }).type, "wait");
});
