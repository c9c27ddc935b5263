import assert from "node:assert/strict";
import { combinedScore, rankByCombinedScore } from "../../src/mirrors/mirror_score.ts";
import type { MirrorStats } from "../../src/mirrors/mirrors.ts";

Deno.test("combinedScore() adds the transfer time of 1 MiB and 500 ms per unit of failure penalty", () => {
  assert.equal(combinedScore(40, undefined), 40);
  assert.equal(combinedScore(40, { throughputBps: 1024 * 1024, penalty: 0 }), 1040);
  assert.equal(
    combinedScore(40, { throughputBps: undefined, penalty: 0.5 }, { neutralThroughputBps: 2 * 1024 * 1024 }),
    790,
  );
});

Deno.test("rankByCombinedScore() prefers fast, reliable mirrors over ones with similar latency", () => {
  const result = (url: string, latencyMs: number) => ({ url, latencyMs, countryCode: "DE", score: 1 });
  const stats = (url: string, s: Partial<MirrorStats>): MirrorStats => ({
    url,
    rank: 0,
    inFlight: 0,
    successes: 1,
    failures: 0,
    penalty: 0,
    bytes: 0,
    snapshot: { type: "up_to_date" },
    ...s,
  });
  const ranked = rankByCombinedScore(
    [result("a", 50), result("b", 55), result("c", 52), result("d", 300)],
    [
      stats("a", { throughputBps: 1e6 }),
      stats("b", { throughputBps: 20e6 }),
      stats("c", { failures: 3, penalty: 2 }),
      stats("d", { throughputBps: 30e6 }),
    ],
  );
  // c has no throughput measurement: it gets the median (20 MB/s) but pays for its failures.
  assert.deepEqual(ranked.map((r) => r.url), ["b", "d", "a", "c"]);
  assert.deepEqual(rankByCombinedScore([result("x", 9), result("y", 3)], []).map((r) => r.url), ["y", "x"]);
});
