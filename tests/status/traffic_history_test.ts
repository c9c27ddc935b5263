import { assertEquals } from "../helpers/assert.ts";
import { Stats } from "../../src/status/stats.ts";
import { TrafficHistory } from "../../src/status/traffic_history.ts";

const MIN = 60_000;

Deno.test("TrafficHistory.snapshot() gives 24 hours of 5-minute buckets, oldest first, up to now", () => {
  const clock = { now: 1_000 * MIN + 30_000 };
  const history = new TrafficHistory({ now: () => clock.now });
  history.add("requests", 2);
  history.add("fromCacheBytes", 500);
  clock.now += 7 * MIN; // the next bucket but one
  history.add("fromUpstreamBytes", 900);
  const snapshot = history.snapshot();
  assertEquals(snapshot.bucketMs, 5 * MIN);
  assertEquals(snapshot.requests.length, 288);
  assertEquals(snapshot.endsAt, 1_010 * MIN);
  // 1000 min 30 s is in the bucket of minute 1000; 1007 min 30 s in that of 1005 (the newest).
  assertEquals(snapshot.requests.slice(-2), [2, 0]);
  assertEquals(snapshot.fromCacheBytes.slice(-2), [500, 0]);
  assertEquals(snapshot.fromUpstreamBytes.slice(-2), [0, 900]);
});

Deno.test("TrafficHistory keeps a fixed ring: a day later the old buckets are gone", () => {
  const clock = { now: 0 };
  const history = new TrafficHistory({ now: () => clock.now });
  history.add("requests", 5);
  clock.now += 23 * 60 * MIN;
  history.add("requests", 1);
  assertEquals(history.snapshot().requests.reduce((a, b) => a + b), 6, "both within 24 hours");
  clock.now += 2 * 60 * MIN;
  assertEquals(history.snapshot().requests.reduce((a, b) => a + b), 1, "the first is over a day old");
  clock.now += 30 * 24 * 60 * MIN;
  assertEquals(history.snapshot().requests.reduce((a, b) => a + b), 0);
  assertEquals(history.snapshot().requests.length, 288, "the same size whatever the time");
});

Deno.test("Stats.recordRequest() and recordUpstreamBytes() fill the history as well as the totals", () => {
  const stats = new Stats({ now: () => 42 * MIN });
  stats.recordRequest("CACHE HIT", 1_000);
  stats.recordRequest("CACHE MISS");
  stats.recordUpstreamBytes(3_000);
  const snapshot = stats.history.snapshot();
  assertEquals([stats.bytesFromCache, stats.bytesFromUpstream], [1_000, 3_000]);
  assertEquals(
    [snapshot.requests.at(-1), snapshot.fromCacheBytes.at(-1), snapshot.fromUpstreamBytes.at(-1)],
    [2, 1_000, 3_000],
  );
});
