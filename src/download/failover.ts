/**
 * The failover of an order: its rules, what its jobs have taught it so far, the handlers of the answers that
 * brought no body, and the answer for clients when every mirror failed. Every failed attempt counts at once as a
 * failure of its mirror, with its message as the mirror's last error (an outage must show on /status and
 * /metrics), but the mirrors that failed are penalised in the ranking only once the order succeeds elsewhere:
 * when every mirror fails, the file or our own network is the likelier cause.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { HttpError } from "../http/http_error.ts";
import type { MirrorPool } from "../mirrors/mirrors.ts";
import type { AttemptBody, AttemptHead } from "./attempt.ts";
import type { HedgeRace } from "./hedge.ts";

const log = getLogger(["flexo", "download"]);

/** At most this many jobs (mirror attempts) per order. */
export const MAX_ATTEMPTS = 8;

/**
 * The mirrors an order asks, in turn: its plan (at most {@linkcode MAX_ATTEMPTS}), and where it stands. A mirror
 * that was overtaken (`overtake.ts`) goes back to its end once, so that the mirror that overtook it can in turn
 * be probed against it and left for it if it trickles too (the last mirror of a plan has no other to go to).
 */
export class FailoverPlan {
  readonly #mirrors: string[];
  readonly #requeued = new Set<string>();
  #next = 0;

  constructor(mirrors: readonly string[]) {
    this.#mirrors = mirrors.slice(0, MAX_ATTEMPTS);
  }

  /** How many mirrors the plan has (requeued ones counted again). */
  get length(): number {
    return this.#mirrors.length;
  }

  /** The mirror the failover asks next, if any. */
  next(): string | undefined {
    return this.#mirrors[this.#next];
  }

  /** The mirror after that one (a hedge), if any. */
  afterNext(): string | undefined {
    return this.#mirrors[this.#next + 1];
  }

  /** Moves past every mirror a race asked: its hedge, and a new primary that joined it (never asked again). */
  passAsked(asked: { has(mirror: string): boolean }): void {
    while (this.#next < this.#mirrors.length && asked.has(this.#mirrors[this.#next])) this.#next++;
  }

  /**
   * Puts an overtaken `mirror` back at the end of the plan, to be probed and resumed from again: once per order,
   * and only while the plan stays within {@linkcode MAX_ATTEMPTS}. Whether it was.
   */
  requeue(mirror: string, upstreamPath: string): boolean {
    if (this.#requeued.has(mirror) || this.#mirrors.length >= MAX_ATTEMPTS) return false;
    this.#requeued.add(mirror);
    this.#mirrors.push(mirror);
    log.debug("{mirror} was overtaken for {path}: back at the end of its plan, to be probed again", {
      mirror,
      path: upstreamPath,
    });
    return true;
  }
}

/** What the rules for one kind of file are. */
export interface OrderRules {
  /** Bytes from one mirror may continue bytes from another (true for packages: same name, same content). */
  resumeAcrossMirrors: boolean;
  /** A 404 ends the order at once instead of asking the next mirror (database signatures). */
  notFoundIsFinal: boolean;
  /** Keep a partial file after a failure so that the next request resumes it. */
  keepPartialOnFailure: boolean;
  /**
   * A new primary mirror joins the order's race when the ranking improves (see `hedge.ts`); false for a
   * database's signature, which must come from its database's mirror.
   */
  movesOn: boolean;
}

/** What to do after one outcome of a job: ask the next mirror, stop asking, or the order is done. */
export type FailoverStep = "next_mirror" | "give_up" | "done";

/** Where a tally records each failed attempt as it happens (a {@linkcode MirrorPool}). */
export type FailureCounter = Pick<MirrorPool, "recordFailure">;

/** The failures of the jobs of one order. */
export class FailureTally {
  readonly #failures: { mirror: string; reason: string; unreachable: boolean; counted: boolean }[] = [];
  readonly #counter?: FailureCounter;
  readonly #notFound: string[] = [];
  #timeouts = 0;
  #loops = 0;
  #noBetterFrom?: string;
  #otherLength = false;

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

  /** @param counter Counts each failed attempt of a mirror at once, without penalising it. */
  constructor(counter?: FailureCounter) {
    this.#counter = counter;
  }

  /** A mirror that does not have the file (not its fault). */
  notFound(mirror: string): void {
    this.#notFound.push(mirror);
  }

  /**
   * A mirror whose file is of another length than the bytes on disk were recorded as (an answer to a resume).
   * When the order fails, those bytes are of another file and not worth keeping for a later resume.
   */
  otherLength(): void {
    this.#otherLength = true;
  }

  /** Whether any mirror's file was of another length than the bytes on disk were recorded as. */
  get sawOtherLength(): boolean {
    return this.#otherLength;
  }

  /** Whether any mirror said it does not have the file. */
  get sawNotFound(): boolean {
    return this.#notFound.length > 0;
  }

  /**
   * A mirror that failed: `timeout` when it did not answer in time, `unreachable` when it gave no answer at all
   * (refused, DNS, TLS, timeout) rather than a bad one, `loop` when it answered 508 Loop Detected, `counted` when
   * its failure was counted and penalised already (a corrupt file): only its outcome is kept, for the message.
   */
  failed(
    mirror: string,
    reason: string,
    options: { timeout?: boolean; unreachable?: boolean; loop?: boolean; counted?: boolean } = {},
  ): void {
    const counted = options.counted ?? false;
    this.#failures.push({ mirror, reason, unreachable: options.unreachable ?? false, counted });
    if (options.timeout) this.#timeouts++;
    if (options.loop) this.#loops++;
    if (!counted) this.#counter?.recordFailure(mirror, reason, { penalise: false });
  }

  /** Penalises every mirror that failed (but those penalised already): the order succeeded on another mirror. */
  blame(mirrors: Pick<MirrorPool, "penalise">): void {
    for (const f of this.#failures) if (!f.counted) mirrors.penalise(f.mirror);
  }

  /**
   * The error for clients when no mirror delivered, naming each mirror's outcome: 404 when every mirror that
   * answered said it does not have the file (the others refusing or silent: a 404 is the only answer there is),
   * 504 when every failure was a timeout and none said 404, 508 when every mirror answered 508 (the loop is
   * passed on, so that the client of the first tier learns it too), else 502.
   */
  finalError(upstreamPath: string): HttpError {
    const failures = this.#failures;
    const outcomes = [
      ...this.#notFound.map((mirror) => `${mirror} does not have it (404)`),
      ...failures.map((f) => `${f.mirror} ${f.reason}`),
    ].join("; ");
    if (this.#notFound.length > 0 && failures.every((f) => f.unreachable)) {
      return new HttpError(404, `${upstreamPath} was not found upstream: ${outcomes}`);
    }
    if (this.#loops > 0 && this.#loops === failures.length && this.#notFound.length === 0) {
      return new HttpError(
        508,
        `Loop detected: every mirror sent the request for ${upstreamPath} back to a node it had passed ` +
          `(${outcomes}); check that no mirror, peer or tier above points back at this node`,
      );
    }
    const status = this.#timeouts > 0 && this.#timeouts === failures.length ? 504 : 502;
    return new HttpError(status, `every mirror failed for ${upstreamPath}: ${outcomes}`);
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
      tally.notFound(mirror);
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
      if (head.otherLength) tally.otherLength();
      return "next_mirror";
    case "failed":
      log.warn("{mirror} failed for {path}: {message}", { mirror, path, message: head.reason });
      tally.failed(mirror, head.reason, {
        timeout: head.timeout,
        unreachable: !head.answered,
        loop: head.loop,
      });
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

/**
 * A body cut short (broken off, too slow, overtaken by a faster mirror): its mirror failed, and the next one
 * resumes at byte `written`. An overtaken mirror goes back to the end of the plan ({@linkcode FailoverPlan.requeue}).
 */
export function afterCutShort(
  body: Extract<AttemptBody, { type: "cut_short" }>,
  context: { mirror: string; upstreamPath: string; written: number; tally: FailureTally; plan: FailoverPlan },
): FailoverStep {
  const { mirror, upstreamPath: path, written, tally } = context;
  const reason = body.reason;
  tally.failed(mirror, reason);
  if (body.overtaken) context.plan.requeue(mirror, path);
  log.warn("{mirror} failed for {path} at byte {written}: {message}; switching mirror", {
    mirror,
    path,
    written,
    message: reason,
  });
  return "next_mirror";
}

/**
 * The mirrors of a race that brought no body: each one cancelled before its head is a timeout, each refusal
 * goes to {@linkcode afterRefusal}; "give_up" when one of them says so (used only when no mirror won).
 */
export function afterLosers(
  race: HedgeRace<AttemptHead>,
  context: { upstreamPath: string; notFoundIsFinal: boolean; tally: FailureTally },
): FailoverStep {
  const { upstreamPath: path, tally } = context;
  for (const { mirror, waitedMs, late } of race.abandoned) {
    if (!late) continue; // a hedge that lost to the mirror it was for: no fault
    const message = `sent no response head within ${waitedMs} ms while another mirror answered (hedged)`;
    log.warn("{mirror} is late for {path}: {message}", { mirror, path, message });
    tally.failed(mirror, message, { timeout: true });
  }
  let step: FailoverStep = "next_mirror";
  for (const { mirror, head } of race.refused) {
    if (head.type === "accepted" || head.type === "not_modified") continue; // a fallback that lost
    if (afterRefusal(head, { ...context, mirror }) === "give_up") step = "give_up";
  }
  return step;
}
