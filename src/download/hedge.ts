/**
 * Hedged requests: never wait on one silent mirror. When the mirror asked has not sent a response head within
 * its hedge delay (about its own p95 time to first byte, {@linkcode hedgeDelayMs}), the next mirror is asked
 * too; the first valid head wins and the other request is cancelled. Hedges are paid from the pool's
 * {@linkcode HedgeBudget} (at most 10 % more requests than orders, plus a small burst), and an order hedges
 * at most once.
 *
 * @module
 */

import type { MirrorPool } from "../mirrors/mirrors.ts";
import { Attempt, type AttemptHead, type AttemptOptions } from "./attempt.ts";
import type { AcceptOptions, Progress } from "./partial_resume.ts";
import { SYSTEM_TIMERS, type Timers } from "./transfer.ts";

/** Hedge delay for a mirror without any measured time to first byte. */
export const UNMEASURED_HEDGE_DELAY_MS = 400;
/** The shortest hedge delay, so that a fast mirror's jitter does not double its requests. */
export const MIN_HEDGE_DELAY_MS = 100;
/** The longest hedge delay: a mirror slower than this to answer is hedged anyway (first byte within 1.5 s). */
export const MAX_HEDGE_DELAY_MS = 1000;

/**
 * How long to wait for `mirror`'s head before asking the next mirror too: its p95 time to first byte with a
 * quarter as margin, within [{@linkcode MIN_HEDGE_DELAY_MS}, {@linkcode MAX_HEDGE_DELAY_MS}], or
 * {@linkcode UNMEASURED_HEDGE_DELAY_MS} before its first measured answer.
 */
export function hedgeDelayMs(pool: MirrorPool, mirror: string): number {
  const p95 = pool.ttfbP95(mirror);
  if (p95 === undefined) return UNMEASURED_HEDGE_DELAY_MS;
  return Math.round(Math.min(MAX_HEDGE_DELAY_MS, Math.max(MIN_HEDGE_DELAY_MS, p95 * 1.25)));
}

/**
 * What a head means for the race: an `answer` wins; a `fallback` (e.g. a 304 from a mirror known to lag) wins
 * only when no other mirror answers; a `refusal` (error, 404, unusable) leaves the race to the other mirror.
 */
export type HeadVerdict = "answer" | "fallback" | "refusal";

/** One mirror's head in a race. */
export interface RacedHead<H> {
  mirror: string;
  head: H;
}

/** How a race of one or two mirrors ended. */
export interface HedgeRace<H> {
  /** The head to use: the first answer, else the first fallback; none when every mirror asked refused. */
  winner?: RacedHead<H>;
  /** The other heads, in the order they came. */
  refused: RacedHead<H>[];
  /**
   * Mirrors asked and cancelled before their head came (they lost the race), with how long they waited;
   * `late` for the first mirror, which the hedge was for (the hedge itself merely lost to it).
   */
  abandoned: { mirror: string; waitedMs: number; late: boolean }[];
  /** Whether the second mirror was asked. */
  hedged: boolean;
}

/** What {@linkcode raceHeads} needs. */
export interface RaceOptions<H> {
  /** The mirror asked first. */
  first: string;
  /** The mirror asked too when `first` is late (a hedge), or after a fallback; none to wait for `first` only. */
  second?: string;
  /** Sends the request to a mirror; `cancel` aborts it (and its body). */
  start: (mirror: string) => { head: Promise<H>; cancel: () => void };
  judge: (mirror: string, head: H) => HeadVerdict;
  /** How long to wait for `first` before hedging. */
  delayMs: number;
  /** Pays for the hedge; without credit left, no hedge. */
  spend: () => boolean;
  /** Called when a paid hedge wins the race (for `/metrics`). */
  won?: () => void;
  /**
   * Subscribes to a better ranking while the race runs (`MirrorPool.onNewPrimary`) and returns the
   * unsubscribe: a new primary mirror not asked yet joins the race, so that a request in flight moves on.
   */
  moveOn?: (listener: (mirror: string) => void) => () => void;
  now: () => number;
  timers?: Timers;
  /** Called with each head as it comes and how long it took. */
  onHead?: (mirror: string, head: H, ms: number) => void;
}

/**
 * Asks `first`, and `second` too when `first` has not answered within `delayMs`, and a new primary mirror as
 * soon as the ranking has one (`moveOn`); see {@linkcode HedgeRace}.
 */
export function raceHeads<H>(options: RaceOptions<H>): Promise<HedgeRace<H>> {
  const { promise, resolve } = Promise.withResolvers<HedgeRace<H>>();
  const timers = options.timers ?? SYSTEM_TIMERS;
  const pending = new Map<string, { cancel: () => void; startedAt: number }>();
  const asked = new Set<string>();
  const refused: RacedHead<H>[] = [];
  let fallback: RacedHead<H> | undefined;
  let hedged = false;
  let paid = false;
  let done = false;

  const finish = (winner: RacedHead<H> | undefined) => {
    done = true;
    timers.clearTimer(timer);
    stopMoving();
    const abandoned: HedgeRace<H>["abandoned"] = [];
    for (const [mirror, contender] of pending) {
      contender.cancel();
      abandoned.push({
        mirror,
        waitedMs: options.now() - contender.startedAt,
        late: mirror === options.first,
      });
    }
    pending.clear();
    if (fallback && fallback !== winner) refused.unshift(fallback);
    if (paid && winner?.mirror === options.second) options.won?.();
    resolve({ winner, refused, abandoned, hedged });
  };

  const launch = (mirror: string) => {
    const startedAt = options.now();
    asked.add(mirror);
    const { head, cancel } = options.start(mirror);
    pending.set(mirror, { cancel, startedAt });
    head.then((value) => {
      if (done) return;
      pending.delete(mirror);
      options.onHead?.(mirror, value, options.now() - startedAt);
      const raced = { mirror, head: value };
      const verdict = options.judge(mirror, value);
      if (verdict === "answer") return finish(raced);
      if (verdict === "fallback" && !fallback) {
        fallback = raced;
        // A better mirror may still say more than "unchanged": ask it now, hedge or not.
        if (options.second !== undefined && !hedged) hedge();
      } else {
        refused.push(raced);
      }
      if (pending.size === 0) finish(fallback);
    }, (error) => {
      // `start` resolves with heads; a rejection is a bug there, reported as the race's end.
      if (!done) {
        pending.delete(mirror);
        if (pending.size === 0) finish(fallback);
      }
      queueMicrotask(() => {
        throw error;
      });
    });
  };

  const hedge = () => {
    hedged = true;
    // A better ranking may have brought it into the race already.
    if (!asked.has(options.second!)) launch(options.second!);
  };

  // The first request goes out before the timer and the subscription are made: they cost a cold miss 30-50 us
  // each, and neither can act before this turn ends.
  let timer: unknown;
  let stopMoving = () => {};
  launch(options.first);
  if (options.second !== undefined) {
    timer = timers.setTimer(() => {
      if (!done && !hedged && !asked.has(options.second!) && options.spend()) {
        paid = true;
        hedge();
      }
    }, options.delayMs);
  }
  stopMoving = options.moveOn?.((mirror) => {
    if (!done && !asked.has(mirror)) launch(mirror);
  }) ?? stopMoving;
  return promise;
}

/**
 * The verdict on a mirror's head in a download: a body or "unchanged" is an answer, except that "unchanged"
 * from a mirror known to lag (`lagging`) is only a fallback; anything else is a refusal.
 */
export function judgeAttemptHead(head: AttemptHead, lagging: boolean): HeadVerdict {
  if (head.type === "accepted") return "answer";
  if (head.type === "not_modified") return lagging ? "fallback" : "answer";
  return "refusal";
}

/** What {@linkcode raceAttempts} asks with. */
export interface AttemptRequest {
  attempt: AttemptOptions;
  headers: Headers;
  progress: Progress;
  accept: Omit<AcceptOptions, "upstreamPath">;
  /** Mirrors known to lag (see {@linkcode judgeAttemptHead}). */
  isLagging?: (mirror: string) => boolean;
  /** Whether a new primary mirror joins the race (`RaceOptions.moveOn`); default true. */
  movesOn?: boolean;
}

/**
 * The race of a download's jobs: asks `first`, and `second` too when `first` is late with its head. Records
 * each head's time in the pool. The caller closes every attempt of `attempts` when done with it.
 */
export async function raceAttempts(
  first: string,
  second: string | undefined,
  request: AttemptRequest,
): Promise<{ race: HedgeRace<AttemptHead>; attempts: Map<string, Attempt> }> {
  const { mirrors, deps } = request.attempt;
  const attempts = new Map<string, Attempt>();
  const race = await raceHeads<AttemptHead>({
    first,
    second,
    start: (mirror) => {
      const attempt = new Attempt(mirror, request.attempt);
      attempts.set(mirror, attempt);
      return {
        head: attempt.ask(request.headers, request.progress, request.accept),
        cancel: () => attempt.close(),
      };
    },
    judge: (mirror, head) => judgeAttemptHead(head, request.isLagging?.(mirror) ?? false),
    delayMs: hedgeDelayMs(mirrors, first),
    spend: () => mirrors.hedgeBudget.spend(),
    won: () => mirrors.hedgeBudget.won(),
    moveOn: request.movesOn === false ? undefined : (listener) => mirrors.onNewPrimary(listener),
    now: deps.now,
    timers: deps.timers,
    onHead: (mirror, head, ms) => {
      if (head.type !== "failed") mirrors.recordTtfb(mirror, ms);
    },
  });
  return { race, attempts };
}
