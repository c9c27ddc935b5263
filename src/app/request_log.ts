/**
 * The request log and the request counters: one line and one count per answer, written when the response has
 * ended, with the body bytes the client was actually given and the time until the last of them was handed to
 * the kernel; a transfer that broke off says so. The full path (app.ts) and the quick path (quick_answers.ts)
 * both count and log through {@linkcode AnswerLog.record}.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { CountedResult, Stats } from "../status/stats.ts";
import type { LogOutput } from "../logging.ts";

const CATEGORY = ["flexo", "request"] as const;
const requestLog = getLogger([...CATEGORY]);

/** One answer, as the log and the counters see it. */
export interface AnswerRecord {
  method: string;
  /** The path as the client sent it. */
  path: string;
  result: CountedResult;
  status: number;
  /** Body bytes the client was given. */
  bytes: number;
  /** From the request to the last byte handed to the kernel (milliseconds). */
  ms: number;
  /** False when the transfer broke off before the end of the body. */
  whole: boolean;
  /** The client's address as reported by a trusted proxy (`trusted_proxies`), when there is one. */
  forwardedFor?: string;
}

/** Counts answers in `stats` and writes the request log. */
export class AnswerLog {
  #stats: Stats;
  #output: Pick<LogOutput, "line" | "enabled"> | undefined;

  /**
   * A log that counts in `stats`. With `output` (from `setupLogging`) lines go straight to the log's output,
   * which at a flood of cached answers costs a fraction of going through logtape's logger.
   */
  constructor(stats: Stats, output?: Pick<LogOutput, "line" | "enabled">) {
    this.#stats = stats;
    this.#output = output;
  }

  /** Counts and logs one answer. */
  record(answer: AnswerRecord): void {
    // A joined download's bytes were fetched once for another client: saved, as the hit ratio counts them.
    const fromCache = answer.result === "CACHE HIT" || answer.result === "REVALIDATED" ||
      answer.result === "JOINED DOWNLOAD" || answer.result === "STALE";
    this.#stats.recordRequest(answer.result, fromCache ? answer.bytes : 0, answer.method === "HEAD");
    if (this.#output !== undefined) {
      // Most answers of a busy proxy at log_level = "warning": nothing to build.
      if (!this.#output.enabled("info")) return;
      const { method, path, result, status, bytes, ms, whole, forwardedFor } = answer;
      this.#output.line(CATEGORY, "info", [
        "",
        method,
        " ",
        // Behind a balancer (trusted_proxies) the client it named, as on logtape's way below.
        forwardedFor === undefined ? path : `${path} (for ${forwardedFor})`,
        " ",
        result,
        " ",
        status,
        " ",
        bytes,
        " bytes ",
        ms,
        whole ? " ms" : " ms (broken off by the client or upstream)",
      ]);
      return;
    }
    if (!requestLog.isEnabledFor("info")) return;
    requestLog.info(
      answer.whole
        ? "{method} {path} {result} {status} {bytes} bytes {ms} ms"
        : "{method} {path} {result} {status} {bytes} bytes {ms} ms (broken off by the client or upstream)",
      { ...answer, path: answer.forwardedFor ? `${answer.path} (for ${answer.forwardedFor})` : answer.path },
    );
  }
}
