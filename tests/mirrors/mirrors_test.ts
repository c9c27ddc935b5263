import { MirrorPool } from "../../src/mirrors/mirrors.ts";
import { assertEquals } from "../helpers/assert.ts";
import { gatedFetch, rangeHead, testBytes } from "../helpers/fake_fetch.ts";
import { testApp } from "../helpers/test_app.ts";

const A = "http://a.test/";
const B = "http://b.test/";
const C = "http://c.test/";
const D = "http://d.test/";

Deno.test("MirrorPool.setMirrors() normalises URLs, drops duplicates and reports primary changes", () => {
  const changes: (string | undefined)[] = [];
  const pool = new MirrorPool({ onPrimaryChange: (url) => changes.push(url) });
  pool.setMirrors(["http://a.test", A, B], "test");
  assertEquals(pool.plan("database"), [A, B]);
  pool.setMirrors([A, C], "test");
  pool.setMirrors([C, A], "test");
  assertEquals(changes, [A, C]);
  assertEquals(pool.primary(), C);
});

Deno.test("MirrorPool.plan() keeps the ranking for databases and spreads packages by transfers in flight", () => {
  const pool = new MirrorPool({ spreadOver: 3 });
  pool.setMirrors([A, B, C, D], "test");
  const endA = pool.begin(A);
  assertEquals(pool.plan("package"), [B, C, A, D]);
  const endB = pool.begin(B);
  assertEquals(pool.plan("package"), [C, A, B, D]);
  assertEquals(pool.plan("database"), [A, B, C, D], "databases stay on the primary");
  endA();
  endA(); // ending twice counts once
  endB();
  assertEquals(pool.plan("package"), [A, B, C, D]);
});

Deno.test("MirrorPool.recordFailure() moves a mirror back until its penalty decays", () => {
  let now = 0;
  const pool = new MirrorPool({ now: () => now, failureHalfLifeMs: 1000 });
  pool.setMirrors([A, B, C], "test");
  pool.recordFailure(A, "boom");
  assertEquals(pool.plan("database"), [B, C, A]);
  pool.recordFailure(B, "boom");
  pool.recordFailure(B, "boom again");
  assertEquals(pool.plan("database"), [C, A, B], "the less penalised mirror comes first among the penalised");
  now = 1500; // A: 1 * 0.35 < 0.5 → healthy again; B: 2 * 0.35 = 0.7 → still penalised
  assertEquals(pool.plan("database"), [A, C, B]);
  now = 10_000;
  assertEquals(pool.plan("database"), [A, B, C]);
  const snapshot = pool.snapshot();
  assertEquals(snapshot[1].failures, 2);
  assertEquals(snapshot[1].lastError?.message, "boom again");
});

Deno.test("MirrorPool.recordSuccess() measures throughput only on transfers long enough to say something", () => {
  const pool = new MirrorPool();
  pool.setMirrors([A], "test");
  pool.recordSuccess(A, { bytes: 1000, durationMs: 10, ttfbMs: 20 });
  assertEquals(pool.snapshot()[0].throughputBps, undefined);
  pool.recordSuccess(A, { bytes: 1_000_000, durationMs: 1000, ttfbMs: 40 });
  assertEquals(pool.snapshot()[0].throughputBps, 1_000_000);
  assertEquals(Math.round(pool.snapshot()[0].ttfbMs!), 26);
  pool.setMirrors([B, A], "re-ranked");
  assertEquals(pool.snapshot()[1].successes, 2, "what was learnt survives a new ranking");
});

Deno.test("MirrorPool.plan() lands parallel package downloads on different mirrors", async () => {
  const data = testBytes(300_000);
  const { fetch, gates } = gatedFetch((req) => rangeHead(data.byteLength, req));
  const app = await testApp([A, B, C], { fetch });
  try {
    const names = ["one", "two", "three"].map((n) => `/core/os/x86_64/${n}-1-1-x86_64.pkg.tar.zst`);
    // The three downloads run at once: no mirror sends a byte before all three have been asked.
    const responses = await Promise.all(names.map((path) => app.get(path)));
    assertEquals(gates.length, 3);
    for (const gate of gates) {
      gate.push(data);
      gate.end();
    }
    for (const response of responses) {
      assertEquals((await response.arrayBuffer()).byteLength, data.byteLength);
    }
    assertEquals(new Set(gates.map((gate) => new URL(gate.url).host)).size, 3);
  } finally {
    await app.cleanup();
  }
});

Deno.test("MirrorPool.markLagging() ranks a mirror behind the up-to-date ones for a while", () => {
  let now = 0;
  const pool = new MirrorPool({ now: () => now, laggingHoldMs: 1000 });
  pool.setMirrors([A, B, C], "test");
  pool.recordFailure(C, "boom");
  pool.markLagging(A, "served extra.db of an older snapshot");
  assertEquals(pool.plan("database"), [B, A, C], "lagging after the healthy ones, before the penalised ones");
  assertEquals(pool.plan("package"), [B, A, C]);
  assertEquals(pool.snapshotMark(A).type, "lagging");
  assertEquals(pool.snapshot()[0].snapshot.type, "lagging");
  now = 1000;
  assertEquals(pool.snapshotMark(A), { type: "up_to_date" });
  assertEquals(pool.plan("database"), [A, B, C]);
});

Deno.test("MirrorPool.plan() lets penalties and lagging marks end after the clock went back", () => {
  // The wall clock is set back a day (an RTC that ran ahead, corrected by NTP) just after A failed and B lagged.
  const DAY = 86_400_000;
  let now = 10 * DAY;
  const pool = new MirrorPool({ now: () => now, failureHalfLifeMs: 10 * 60_000, laggingHoldMs: 30 * 60_000 });
  pool.setMirrors([A, B, C], "test");
  pool.recordFailure(A, "boom");
  pool.markLagging(B, "older snapshot");
  assertEquals(pool.plan("database"), [C, B, A]);
  now -= DAY;
  now += 2 * 60 * 60_000; // two hours later: far past the half-life and the lagging hold
  assertEquals(pool.plan("database"), [A, B, C], "both are back in their places");
  assertEquals(pool.snapshotMark(B).type, "up_to_date");
});

Deno.test("MirrorPool.setMirrors() keeps what a mirror counted while it is out of the ranking", () => {
  const pool = new MirrorPool();
  pool.setMirrors([A, B], "latency test");
  pool.recordSuccess(A, { bytes: 1000, durationMs: 10 });
  pool.recordFailure(A, "timed out", { penalise: false });
  const running = pool.begin(A);
  // A new ranking leaves A out while one of its transfers still runs; that transfer ends meanwhile.
  pool.setMirrors([B], "latency test");
  pool.recordSuccess(A, { bytes: 500, durationMs: 10 });
  running();
  assertEquals(pool.snapshot().map((m) => m.url), [B]);
  // A is ranked again: its counters go on from where they were (a Prometheus counter must never go down).
  pool.setMirrors([B, A], "latency test");
  const a = pool.snapshot().find((m) => m.url === A)!;
  assertEquals([a.successes, a.failures, a.bytes, a.inFlight, a.rank], [2, 1, 1500, 0, 1]);
});
