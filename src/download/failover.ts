/**
 * The failover of an order: its rules, what its jobs have taught it so far, the handlers of the answers that
 * brought no body, and the answer for clients when every mirror failed. The mirrors that failed are blamed only
 * once the order succeeds elsewhere: when every mirror fails, the file or our own network is the likelier cause.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { HttpError } from "../http/http_error.ts";
import type { MirrorPool } from "../mirrors/mirrors.ts";
import type { AttemptHead } from "./attempt.ts";

const log = getLogger(["flexo", "download"]);

/** At most this many jobs (mirror attempts) per order. */
export const MAX_ATTEMPTS = 8;

/** What the rules for one kind of file are. */
export interface OrderRules {
  /** Bytes from one mirror may continue bytes from another (true for packages: same name, same content). */
  resumeAcrossMirrors: boolean;
  /** A 404 ends the order at once instead of asking the next mirror (database signatures). */
  notFoundIsFinal: boolean;
  /** Keep a partial file after a failure so that the next request resumes it. */
  keepPartialOnFailure: boolean;
}

/** What to do after one outcome of a job: ask the next mirror, stop asking, or the order is done. */
export type FailoverStep = "next_mirror" | "give_up" | "done";

/** The failures of the jobs of one order. */
export class FailureTally {
  readonly #failures: { mirror: string; reason: string }[] = [];
  #notFound = 0;
  #timeouts = 0;
  #noBetterFrom?: string;

  /**
   * A mirror whose copy is no better than the cached one: older (a lagging mirror), or the very copy that failed
   * its content check before. Not stored; when no mirror has a better one, the cached copy is the answer.
   */
  noBetterCopy(mirror: string): void {
    this.#noBetterFrom ??= mirror;
  }

  /** The first mirror whose copy was no better than the cached one, if any. */
  get noBetterFrom(): string | undefined {
    return this.#noBetterFrom;
  }

  /** A mirror that does not have the file (not its fault). */
  notFound(): void {
    this.#notFound++;
  }

  /** A mirror that failed: `timeout` when it did not answer in time. */
  failed(mirror: string, reason: string, options: { timeout?: boolean } = {}): void {
    this.#failures.push({ mirror, reason });
    if (options.timeout) this.#timeouts++;
  }

  /** Records every failure in the pool: called when the order succeeded on another mirror. */
  blame(mirrors: MirrorPool): void {
    for (const f of this.#failures) mirrors.recordFailure(f.mirror, f.reason);
  }

  /**
   * The error for clients when no mirror delivered: 404 when the mirrors only lacked the file, 504 when every
   * failure was a timeout, else 502 with each mirror's reason.
   */
  finalError(upstreamPath: string): HttpError {
    const failures = this.#failures;
    if (failures.length === 0 && this.#notFound > 0) {
      return new HttpError(404, `${upstreamPath} was not found on ${this.#notFound} mirror(s)`);
    }
    const status = this.#timeouts > 0 && this.#timeouts === failures.length ? 504 : 502;
    return new HttpError(
      status,
      `every mirror failed for ${upstreamPath}: ` + failures.map((f) => `${f.mirror} ${f.reason}`).join("; "),
    );
  }
}

/** A mirror's answer that brought no body to store: the file is not there, or the answer cannot be used. */
export type Refusal = Exclude<AttemptHead, { type: "accepted" } | { type: "not_modified" }>;

/**
 * The handlers of the answers without a body: each records what happened and says what to do next.
 *
 * @throws {HttpError} 502 when the file changed upstream during the transfer (no mirror can continue it).
 */
export function afterRefusal(
  head: Refusal,
  context: { mirror: string; upstreamPath: string; notFoundIsFinal: boolean; tally: FailureTally },
): FailoverStep {
  const { mirror, upstreamPath: path, tally } = context;
  switch (head.type) {
    case "not_found":
      log.debug("{mirror} does not have {path} (HTTP {status})", { mirror, path, status: head.status });
      tally.notFound();
      return context.notFoundIsFinal ? "give_up" : "next_mirror";
    case "unsatisfiable":
      tally.failed(mirror, head.reason);
      return "next_mirror";
    case "unusable":
      log.warn("{mirror} sent an unusable answer for {path}: {message}", {
        mirror,
        path,
        message: head.reason,
      });
      tally.failed(mirror, head.reason);
      return "next_mirror";
    case "failed":
      log.warn("{mirror} failed for {path}: {message}", { mirror, path, message: head.reason });
      tally.failed(mirror, head.reason, { timeout: head.timeout });
      return "next_mirror";
    case "changed_upstream":
      log.warn("{mirror} sent an unusable answer for {path}: {message}", {
        mirror,
        path,
        message: head.reason,
      });
      throw new HttpError(502, head.reason);
  }
}
