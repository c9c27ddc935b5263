/**
 * The combined score that orders latency-tested mirrors: the latency, plus the time the mirror took to deliver
 * on real downloads, plus a penalty for its recent failures. It lets what the pool learnt while serving
 * correct a ranking made from one tiny request per mirror.
 *
 * @module
 */

import type { LatencyResult } from "./latency_test.ts";
import type { MirrorStats } from "./mirrors.ts";

/** Weights of {@linkcode combinedScore}. */
export interface ScoreWeights {
  /** Size of the download whose transfer time is added to the latency. Default 1 MiB. */
  referenceBytes: number;
  /** Milliseconds added per unit of the pool's (decaying) failure penalty. Default 500. */
  failurePenaltyMs: number;
}

/** The default {@linkcode ScoreWeights}. */
export const DEFAULT_SCORE_WEIGHTS: ScoreWeights = { referenceBytes: 1024 * 1024, failurePenaltyMs: 500 };

/**
 * A mirror's combined score: lower is better. It estimates the milliseconds to fetch a typical package:
 *
 *     latencyMs + referenceBytes / throughputBps * 1000 + penalty * failurePenaltyMs
 *
 * `throughputBps` is what the pool measured on real downloads; for a mirror without measurements the
 * `neutralThroughputBps` (the median of the measured mirrors) is used so that it is neither favoured nor
 * punished, and without any measurement at all the term is left out. `penalty` is the pool's failure penalty,
 * which decays over time. So between mirrors of similar latency, the one that delivered faster and failed less
 * wins; a mirror that is much closer still wins against a slightly faster one.
 */
export function combinedScore(
  latencyMs: number,
  stats: Pick<MirrorStats, "throughputBps" | "penalty"> | undefined,
  options: { neutralThroughputBps?: number; weights?: ScoreWeights } = {},
): number {
  const weights = options.weights ?? DEFAULT_SCORE_WEIGHTS;
  const throughput = stats?.throughputBps ?? options.neutralThroughputBps;
  const transferMs = throughput !== undefined && throughput > 0
    ? (weights.referenceBytes / throughput) * 1000
    : 0;
  return latencyMs + transferMs + (stats?.penalty ?? 0) * weights.failurePenaltyMs;
}

/**
 * Orders latency test results by {@linkcode combinedScore}, using what the pool knows about each mirror.
 *
 * @returns The results with their score, best first (equal scores keep the latency order).
 */
export function rankByCombinedScore(
  results: readonly LatencyResult[],
  stats: readonly MirrorStats[],
  options: { weights?: ScoreWeights } = {},
): Array<LatencyResult & { combinedScore: number }> {
  const byUrl = new Map(stats.map((s) => [s.url, s]));
  const measured = results
    .map((r) => byUrl.get(r.url)?.throughputBps)
    .filter((bps): bps is number => bps !== undefined && bps > 0)
    .sort((a, b) => a - b);
  const neutralThroughputBps = measured.length > 0 ? measured[Math.floor(measured.length / 2)] : undefined;
  return results
    .map((r) => ({
      ...r,
      combinedScore: combinedScore(r.latencyMs, byUrl.get(r.url), { neutralThroughputBps, ...options }),
    }))
    .sort((a, b) => a.combinedScore - b.combinedScore);
}
