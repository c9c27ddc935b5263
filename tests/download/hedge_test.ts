import { assert, assertEquals } from "../helpers/assert.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { hedgeDelayMs, raceHeads, UNMEASURED_HEDGE_DELAY_MS } from "../../src/download/hedge.ts";
import { HedgeBudget } from "../../src/mirrors/hedge_measures.ts";
import { MirrorPool } from "../../src/mirrors/mirrors.ts";

const A = "http://a.test/";
const B = "http://b.test/";

/** Mirrors whose heads a test resolves by hand; records which were asked and which cancelled. */
function scripted() {
  const heads = new Map<string, PromiseWithResolvers<string>>();
  const asked: string[] = [];
  const cancelled: string[] = [];
  return {
    asked,
    cancelled,
    answer: (mirror: string, head: string) => heads.get(mirror)!.resolve(head),
    start: (mirror: string) => {
      const head = Promise.withResolvers<string>();
      heads.set(mirror, head);
      asked.push(mirror);
      return { head: head.promise, cancel: () => cancelled.push(mirror) };
    },
  };
}

const judge = (_mirror: string, head: string) =>
  head === "200" ? "answer" as const : head === "304-lagging" ? "fallback" as const : "refusal" as const;

Deno.test("raceHeads() asks the next mirror when the first sends no head within the delay; the first answer wins and the other is cancelled", async () => {
  const timers = new FakeTimers();
  const m = scripted();
  const race = raceHeads({
    first: A,
    second: B,
    start: m.start,
    judge,
    delayMs: 300,
    spend: () => true,
    ...timers.deps,
    timers: timers.deps,
  });
  timers.advance(299);
  await Promise.resolve();
  assertEquals(m.asked, [A]);
  timers.advance(1);
  assertEquals(m.asked, [A, B]);
  m.answer(B, "200");
  const result = await race;
  assertEquals(result.winner, { mirror: B, head: "200" });
  assertEquals(m.cancelled, [A]);
  assertEquals(result.abandoned.map((a) => [a.mirror, a.late]), [[A, true]]);
  assert(result.hedged);
});

Deno.test("raceHeads() asks the first mirror before it sets the hedge's timer and subscribes to the ranking", () => {
  const timers = new FakeTimers();
  const m = scripted();
  const seenAtStart: [number[], boolean][] = [];
  let subscribed = false;
  raceHeads({
    first: A,
    second: B,
    start: (mirror) => {
      seenAtStart.push([timers.pending, subscribed]);
      return m.start(mirror);
    },
    judge,
    delayMs: 300,
    spend: () => true,
    moveOn: () => {
      subscribed = true;
      return () => {};
    },
    ...timers.deps,
    timers: timers.deps,
  });
  assertEquals(seenAtStart, [[[], false]], "no timer and no subscription when the first request is made");
  assertEquals([timers.pending, subscribed], [[300], true]);
  m.answer(A, "200");
});

Deno.test("raceHeads() does not hedge a mirror that answers within its delay, nor when the budget is spent", async () => {
  const timers = new FakeTimers();
  const m = scripted();
  const fast = raceHeads({
    first: A,
    second: B,
    start: m.start,
    judge,
    delayMs: 300,
    spend: () => true,
    now: timers.now,
    timers: timers.deps,
  });
  timers.advance(100);
  m.answer(A, "200");
  assertEquals((await fast).hedged, false);
  timers.advance(1000);
  assertEquals(m.asked, [A]);
  const broke = raceHeads({
    first: A,
    second: B,
    start: m.start,
    judge,
    delayMs: 300,
    spend: () => false,
    now: timers.now,
    timers: timers.deps,
  });
  timers.advance(1000);
  m.answer(A, "200");
  assertEquals((await broke).hedged, false);
  assertEquals(m.asked, [A, A]);
});

Deno.test("raceHeads(): a 304 from a lagging mirror is not the answer while a better mirror can still answer", async () => {
  const timers = new FakeTimers();
  const m = scripted();
  const race = raceHeads({
    first: A,
    second: B,
    start: m.start,
    judge,
    delayMs: 300,
    spend: () => false,
    now: timers.now,
    timers: timers.deps,
  });
  m.answer(A, "304-lagging");
  await new Promise((r) => setTimeout(r, 0));
  assertEquals(m.asked, [A, B], "the better mirror is asked at once, budget or not");
  m.answer(B, "200");
  const result = await race;
  assertEquals(result.winner, { mirror: B, head: "200" });
  // When the better mirror fails, the lagging 304 is the answer after all.
  const m2 = scripted();
  const race2 = raceHeads({
    first: A,
    second: B,
    start: m2.start,
    judge,
    delayMs: 300,
    spend: () => false,
    now: timers.now,
    timers: timers.deps,
  });
  m2.answer(A, "304-lagging");
  await new Promise((r) => setTimeout(r, 0));
  m2.answer(B, "502");
  assertEquals((await race2).winner, { mirror: A, head: "304-lagging" });
});

Deno.test("raceHeads() counts a win only for a paid hedge whose mirror answered first", async () => {
  const timers = new FakeTimers();
  let wins = 0;
  const race = (m: ReturnType<typeof scripted>, spend: () => boolean) =>
    raceHeads({
      first: A,
      second: B,
      start: m.start,
      judge,
      delayMs: 300,
      spend,
      won: () => wins++,
      now: timers.now,
      timers: timers.deps,
    });
  const hedgeWins = scripted();
  const first = race(hedgeWins, () => true);
  timers.advance(300);
  hedgeWins.answer(B, "200");
  await first;
  assertEquals(wins, 1, "the hedge answered first");
  const hedgeLoses = scripted();
  const second = race(hedgeLoses, () => true);
  timers.advance(300);
  hedgeLoses.answer(A, "200");
  await second;
  assertEquals(wins, 1, "the first mirror answered first: the hedge lost");
  const unpaid = scripted();
  const third = race(unpaid, () => false);
  unpaid.answer(A, "304-lagging");
  await new Promise((r) => setTimeout(r, 0));
  unpaid.answer(B, "200");
  await third;
  assertEquals(wins, 1, "asking the better mirror after a lagging 304 is no paid hedge");
});

Deno.test("raceHeads() moves a request in flight on to a new primary mirror as soon as the ranking has one", async () => {
  const timers = new FakeTimers();
  const m = scripted();
  const pool = new MirrorPool();
  pool.setMirrors([A, B], "test");
  const C = "http://c.test/";
  const race = raceHeads({
    first: A,
    second: B,
    start: m.start,
    judge,
    delayMs: 300,
    spend: () => false, // no hedge: only the better ranking brings another mirror in
    now: timers.now,
    timers: timers.deps,
    moveOn: (listener) => pool.onNewPrimary(listener),
  });
  timers.advance(100);
  pool.setMirrors([C, A, B], "latency test");
  assertEquals(m.asked, [A, C], "the new primary is asked at once");
  pool.setMirrors([A, C, B], "latency test");
  assertEquals(m.asked, [A, C], "a mirror already asked is not asked again");
  m.answer(C, "200");
  const result = await race;
  assertEquals(result.winner, { mirror: C, head: "200" });
  assertEquals(m.cancelled, [A]);
  pool.setMirrors([B, A], "latency test");
  assertEquals(m.asked, [A, C], "a race that ended no longer listens");
});

Deno.test("hedgeDelayMs() is at most 500 ms for a mirror without measurements, and follows its p95 time to first byte", () => {
  const pool = new MirrorPool();
  pool.setMirrors([A], "test");
  assert(hedgeDelayMs(pool, A) <= 500);
  assertEquals(hedgeDelayMs(pool, A), UNMEASURED_HEDGE_DELAY_MS);
  for (let i = 0; i < 19; i++) pool.recordTtfb(A, 200);
  pool.recordTtfb(A, 600);
  assertEquals(pool.ttfbP95(A), 200);
  assertEquals(hedgeDelayMs(pool, A), 250);
  for (let i = 0; i < 5; i++) pool.recordTtfb(A, 600);
  assertEquals(hedgeDelayMs(pool, A), 750);
});

Deno.test("HedgeBudget allows at most 10 % more requests than orders, plus a small burst", () => {
  const budget = new HedgeBudget();
  let hedges = 0;
  for (let i = 0; i < 1000; i++) {
    budget.earn();
    if (budget.spend()) hedges++; // every order wants a hedge: the worst case
  }
  assert(hedges <= 0.1 * 1000 + 3, `${hedges} hedges for 1000 orders`);
  assert(hedges >= 95, `${hedges} hedges: the budget should allow about 10 %`);
});
