/**
 * What a soak (`scripts/soak.ts`) found, the checks it must pass and its readable report.
 *
 * @module
 */

import { formatSample, mib, type ResourceSample } from "./soak_checks.ts";

/** The kinds of requests the clients send. */
export const OPERATIONS = ["hit", "miss_same", "miss_other", "range", "head"] as const;

/** One kind of request the clients send. */
export type Operation = (typeof OPERATIONS)[number];

/** Counts and latencies of one kind of request. */
export interface OperationStats {
  requests: number;
  errors: number;
  /** Body bytes received. */
  bytes: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** What the soak found. */
export interface SoakResult {
  clients: number;
  durationMs: number;
  warmupMs: number;
  /** Counts of both the warm-up and the measured phase. */
  operations: Record<Operation, OperationStats>;
  /** Responses whose bytes differed from the origin's (counted in the errors too). */
  wrongBytes: number;
  /** The first errors, described (at most 20). */
  errorSamples: string[];
  /** Total errors of every kind. */
  errors: number;
  /** Files fetched upstream with GET more than once. */
  duplicateUpstreamFetches: number;
  /** Distinct files fetched upstream. */
  upstreamFiles: number;
  /** Before any load (server running, hot files cached). */
  cold: ResourceSample;
  /** After the warm-up load, its connections closed: the figures the end is compared with. */
  baseline: ResourceSample;
  /** Highest values seen while the clients ran. */
  peak: ResourceSample;
  /**
   * After the clients finished, their connections were closed, downloads ended and the origin closed (which ends
   * the proxy's idle upstream connections).
   */
  after: ResourceSample;
}

/** The checks a soak must pass, as a list of failures (empty when it passed). */
export function soakFailures(
  result: SoakResult,
  limits: { fdSlack: number; rssSlackBytes: number },
): string[] {
  const failures: string[] = [];
  if (result.wrongBytes > 0) failures.push(`${result.wrongBytes} responses had wrong bytes`);
  if (result.errors > 0) failures.push(`${result.errors} unexpected errors`);
  if (result.duplicateUpstreamFetches > 0) {
    failures.push(`${result.duplicateUpstreamFetches} files were fetched upstream more than once`);
  }
  if (result.after.fds > result.baseline.fds + limits.fdSlack) {
    failures.push(
      `open file descriptors did not come back: ${result.baseline.fds} before, ${result.after.fds} after`,
    );
  }
  if (result.after.files > result.baseline.files) {
    failures.push(
      `open files did not come back: ${result.baseline.files} before, ${result.after.files} after`,
    );
  }
  if (result.after.rss > result.baseline.rss + limits.rssSlackBytes) {
    failures.push(
      `memory did not come back: RSS ${mib(result.baseline.rss)} before, ${mib(result.after.rss)} after`,
    );
  }
  return failures;
}

/** The result as a readable report. */
export function formatReport(result: SoakResult): string {
  const lines = [
    `${result.clients} clients for ${result.warmupMs / 1000} s of warm-up, then ${
      result.durationMs / 1000
    } s`,
    "operation     requests  errors      MiB   p50 ms   p99 ms   max ms",
  ];
  let total = 0;
  for (const op of OPERATIONS) {
    const s = result.operations[op];
    total += s.requests;
    lines.push(
      `${op.padEnd(12)} ${String(s.requests).padStart(9)} ${String(s.errors).padStart(7)} ` +
        `${(s.bytes / 1024 / 1024).toFixed(1).padStart(8)} ${String(s.p50Ms).padStart(8)} ` +
        `${String(s.p99Ms).padStart(8)} ${String(s.maxMs).padStart(8)}`,
    );
  }
  lines.push(
    `total        ${String(total).padStart(9)} ${String(result.errors).padStart(7)}`,
    `wrong bytes: ${result.wrongBytes}; files fetched upstream: ${result.upstreamFiles}, more than once: ` +
      `${result.duplicateUpstreamFetches}`,
    `cold:     ${formatSample(result.cold)}`,
    `baseline: ${formatSample(result.baseline)}`,
    `peak:     ${formatSample(result.peak)}`,
    `after:    ${formatSample(result.after)}`,
  );
  for (const sample of result.errorSamples) lines.push(`error: ${sample}`);
  return lines.join("\n");
}
