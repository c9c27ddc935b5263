/**
 * Overtaking a slow transfer: never wait on one trickling mirror. While a package's body streams from mirror A
 * and the order's plan has a next mirror B, A's rate is measured; when the rest of the file would take long at
 * that rate, B is probed with a small Range request (read and discarded, never written to the partial file nor
 * hashed). When B is clearly faster, A's transfer is ended as "slow" (`pumpBody()`'s verdict, the same as a
 * `low_speed_limit` abandon), and the failover resumes from the written byte with B, the next mirror of its
 * plan, by its ordinary Range request. Databases (which must not mix two mirrors' bytes) are never overtaken.
 *
 * Every number of the decision is in {@linkcode OVERTAKE}; the decisions themselves are the pure functions
 * {@linkcode probeDecision} and {@linkcode judgeProbe}, and {@linkcode Overtaker} runs them on the injected
 * clock, timers and fetch of a transfer.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatBytes } from "../config/units.ts";
import { redactUrl } from "../redact_url.ts";
import type { MirrorPool } from "../mirrors/mirrors.ts";
import type { Attempt, AttemptBody, AttemptHead } from "./attempt.ts";
import type { OrderRules } from "./failover.ts";
import {
  askMirror,
  type Overtakable,
  parseContentRange,
  SYSTEM_TIMERS,
  type TransferDeps,
  type TransferLimits,
} from "./transfer.ts";

const log = getLogger(["flexo", "download"]);

/** The constants of overtaking, in one place (docs/reliability.md explains them). */
export const OVERTAKE = {
  /**
   * A's rate is judged only once its body has streamed this long: past TCP's slow start, and short, because a
   * probe is cheap and A keeps going meanwhile (abandoning a mirror for `low_speed_limit`, which costs more, waits
   * `low_speed_time_secs`).
   */
  measureMs: 2_000,
  /** How often A's rate is looked at after that. */
  lookEveryMs: 1_000,
  /** A's rate is its bytes over (up to) this last stretch of time. */
  rateWindowMs: 5_000,
  /** A is worth overtaking when the rest of the file would take longer than this at its rate. */
  slowRemainingMs: 10_000,
  /** The most bytes a probe asks B for (fewer when less is left, or under `max_speed_limit`). */
  probeBytes: 1024 * 1024,
  /** The longest a probe's body is read (after its head, which has `connect_timeout`); B's rate is what came. */
  probeMs: 5_000,
  /** B must deliver at least this many times A's rate over the same time. */
  factor: 2,
  /** And the switch must save at least this much of the time the rest of the file would take. */
  minSavingMs: 5_000,
  /** Probes per mirror attempt; after one that did not switch, the next waits {@linkcode OVERTAKE.reprobeMs}. */
  probesPerAttempt: 2,
  /** The wait before probing again after a probe that did not switch. */
  reprobeMs: 30_000,
  /**
   * How long a probe's rate is remembered: for that long no transfer probes that mirror while going at more
   * than half of it (our own link likely limits both, and a probe could not win).
   */
  probeMemoryMs: 5 * 60_000,
} as const;

/**
 * A's progress at one moment: bytes it delivered (those a body that ignored the resume's Range sends again, to
 * be dropped, included: they are its rate as much as the others), and milliseconds its transfer had waited on
 * writes.
 */
interface Sample {
  t: number;
  received: number;
  waited: number;
}

/** Whether to probe B now, and with how many bytes. */
export type ProbeDecision =
  | { type: "probe"; bytes: number }
  | { type: "wait"; reason: string };

/** A's transfer as it stands. */
export interface TransferPace {
  /** Milliseconds A's body has streamed. */
  elapsedMs: number;
  /** A's bytes per second (over {@linkcode OVERTAKE.rateWindowMs}). */
  rate: number;
  /** Bytes of the file still to come. */
  remaining: number;
  /** `max_speed_limit`, if any. */
  maxSpeedLimit?: number;
}

/** Whether A's transfer is slow enough to probe B, per {@linkcode OVERTAKE}. */
export function probeDecision(pace: TransferPace): ProbeDecision {
  const { elapsedMs, rate, remaining, maxSpeedLimit } = pace;
  if (remaining <= 0) return { type: "wait", reason: "nothing is left to fetch" };
  if (elapsedMs < OVERTAKE.measureMs) return { type: "wait", reason: "its rate is not measured yet" };
  if (maxSpeedLimit && rate >= maxSpeedLimit / 2) {
    return { type: "wait", reason: `it is paced by max_speed_limit (${maxSpeedLimit} B/s)` };
  }
  const remainingMs = rate > 0 ? (remaining * 1000) / rate : Infinity;
  if (remainingMs <= OVERTAKE.slowRemainingMs) {
    return { type: "wait", reason: `the rest takes ${Math.round(remainingMs / 1000)} s at its rate` };
  }
  // Under max_speed_limit, no more than a second's worth at the cap: a probe must not break it for long.
  const bound = Math.min(OVERTAKE.probeBytes, maxSpeedLimit || Infinity);
  return { type: "probe", bytes: Math.max(1, Math.min(bound, remaining)) };
}

/** What a probe of B measured. */
export interface ProbeMeasure {
  /** Bytes B delivered. */
  bytes: number;
  /** Milliseconds from the probe's request to its last byte counted (its time to first byte included). */
  ms: number;
  /** B's time to first byte (its head), in milliseconds. */
  ttfbMs: number;
}

/** Whether to switch from A to B after a probe. */
export type ProbeJudgement =
  | { type: "switch"; aRate: number; bRate: number; savingMs: number }
  | { type: "keep"; reason: string };

/**
 * Judges a probe: B's rate (its bytes over the probe's whole time, capped at `max_speed_limit`) must be
 * {@linkcode OVERTAKE.factor} times A's (`aRate`), and switching must save {@linkcode OVERTAKE.minSavingMs} of
 * the time the `remaining` bytes take (B's time to first byte counted again, for the resume).
 */
export function judgeProbe(
  probe: ProbeMeasure,
  context: { aRate: number; remaining: number; maxSpeedLimit?: number },
): ProbeJudgement {
  const { aRate, remaining, maxSpeedLimit } = context;
  const bRate = Math.min((probe.bytes * 1000) / Math.max(1, probe.ms), maxSpeedLimit || Infinity);
  if (bRate < OVERTAKE.factor * aRate) {
    return {
      type: "keep",
      reason: `it delivered ${rate(bRate)}, not ${OVERTAKE.factor} times the ${
        rate(aRate)
      } of the mirror in use`,
    };
  }
  const aMs = aRate > 0 ? (remaining * 1000) / aRate : Infinity;
  const bMs = probe.ttfbMs + (remaining * 1000) / Math.max(bRate, 1e-9);
  const savingMs = aMs - bMs;
  if (!(savingMs >= OVERTAKE.minSavingMs)) {
    return { type: "keep", reason: `switching to it would save only ${Math.round(savingMs)} ms` };
  }
  return { type: "switch", aRate, bRate, savingMs };
}

/** A rate for people: "19.5 KiB/s". */
function rate(bytesPerSecond: number): string {
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/** What happened to one probe. */
export type ProbeOutcome =
  /** B was faster: A's transfer was ended with `message`. */
  | { type: "switched"; message: string }
  /** A keeps going: B was not better, or the probe failed (`reason` says which). */
  | { type: "kept"; reason: string }
  /** The transfer ended (or was given up) first. */
  | { type: "cancelled" };

/** What an {@linkcode Overtaker} needs. */
export interface OvertakeOptions {
  deps: TransferDeps;
  limits: TransferLimits;
  /**
   * Where a probe's bytes are counted as received from B, probes and overtaken transfers (`/metrics`), and
   * B's last probe.
   */
  mirrors: Pick<MirrorPool, "recordBytes" | "overtakes" | "lastProbes">;
  /** Path appended to a mirror's base URL. */
  upstreamPath: string;
  /** The client's `Via`, sent as on every request upstream. */
  via?: string;
  /** A: the mirror sending the body. */
  mirror: string;
  /** B: the mirror the failover asks next. */
  candidate: string;
  /** The file's length. */
  total: number;
  /** Bytes of the file on disk now. */
  written: () => number;
}

/**
 * Watches one transfer (one attempt's body) and overtakes it when B is clearly faster: {@linkcode Overtaker.start}
 * once the body streams, with the function that ends it as "slow"; {@linkcode Overtaker.stop} when it ended.
 */
export class Overtaker {
  readonly #options: OvertakeOptions;
  readonly #timers;
  #endAsSlow?: (message: string) => void;
  /** Milliseconds the transfer has waited on its writes (`pumpBody()`'s `overtakable`). */
  #sinkWaitMs: () => number = () => 0;
  /** Bytes A delivered, dropped ones included (`pumpBody()`'s `overtakable`); its bytes on disk until told. */
  #received: () => number;
  #timer: unknown;
  #startedAt = 0;
  /** A's progress: the time, the bytes on disk, and the milliseconds waited on writes until then. */
  #samples: Sample[] = [];
  #probes = 0;
  #notBefore = 0;
  #probeAbort?: AbortController;
  #stopped = false;
  /** Whether a probe overtook the transfer (ended it as too slow). */
  #overtook = false;
  /** The running or last probe's outcome, for tests and logs. */
  probe?: Promise<ProbeOutcome>;

  constructor(options: OvertakeOptions) {
    this.#options = options;
    this.#timers = options.deps.timers ?? SYSTEM_TIMERS;
    this.#received = options.written;
  }

  /**
   * Gets the function that ends the transfer as "slow", the time the transfer has waited on its writes and the
   * bytes its mirror delivered (`pumpBody()`'s `overtakable`).
   */
  readonly overtakable: Overtakable = (endAsSlow, sinkWaitMs, received): void => {
    this.#endAsSlow = endAsSlow;
    this.#sinkWaitMs = sinkWaitMs;
    this.#received = received;
  };

  /** Whether a probe overtook the transfer: it was ended as too slow for a faster mirror. */
  get overtook(): boolean {
    return this.#overtook;
  }

  /** Starts measuring A: the first look comes after {@linkcode OVERTAKE.measureMs}. */
  start(): void {
    const now = this.#options.deps.now();
    this.#startedAt = now;
    this.#samples = [this.#sample(now)];
    this.#watch(OVERTAKE.measureMs);
  }

  /** The transfer ended: no more looks, and a running probe is cancelled. */
  stop(): void {
    this.#stopped = true;
    this.#timers.clearTimer(this.#timer);
    this.#probeAbort?.abort(new Error("the transfer ended"));
  }

  #watch(ms: number): void {
    this.#timer = this.#timers.setTimer(() => {
      if (this.#stopped) return;
      this.#look();
      if (!this.#stopped) this.#watch(OVERTAKE.lookEveryMs);
    }, ms);
  }

  #sample(t: number): Sample {
    return { t, received: this.#received(), waited: this.#sinkWaitMs() };
  }

  /** A's rate over the last {@linkcode OVERTAKE.rateWindowMs}, with a sample taken now. */
  #rate(): number {
    const now = this.#options.deps.now();
    const samples = this.#samples;
    samples.push(this.#sample(now));
    while (samples.length > 2 && now - samples[1].t >= OVERTAKE.rateWindowMs) samples.shift();
    return this.#rateSince(samples[0]);
  }

  /**
   * A's bytes per second since `then`, over the time it waited on its mirror: time waited on its writes (a slow
   * disk) is not the mirror's, and a mirror that outruns the disk is not worth overtaking (the next one's bytes
   * would wait on the same disk). Infinity when every moment since `then` waited on the disk.
   */
  #rateSince(then: Sample): number {
    const now = this.#sample(this.#options.deps.now());
    if (now.t <= then.t) return 0;
    const ms = now.t - then.t - (now.waited - then.waited);
    return ms > 0 ? ((now.received - then.received) * 1000) / ms : Infinity;
  }

  #look(): void {
    const rate = this.#rate();
    const now = this.#options.deps.now();
    if (
      this.#probeAbort !== undefined || this.#probes >= OVERTAKE.probesPerAttempt || now < this.#notBefore
    ) {
      return;
    }
    const written = this.#options.written();
    const decision = probeDecision({
      elapsedMs: now - this.#startedAt,
      rate,
      remaining: this.#options.total - written,
      maxSpeedLimit: this.#options.limits.maxSpeedLimit,
    });
    if (decision.type === "wait") return;
    // A recent probe of B showed less than it must show now: our own link likely limits both (a probe could
    // not win, and each would be a megabyte spent for nothing). Looked at again every second, as A's rate moves.
    const last = this.#options.mirrors.lastProbes.get(this.#options.candidate);
    const recent = last !== undefined && now >= last.at && now - last.at < OVERTAKE.probeMemoryMs;
    if (recent && last.bytesPerSecond < OVERTAKE.factor * rate) return;
    this.#probes++;
    this.#options.mirrors.overtakes.probes++;
    // A bug in the probe must not become an unhandled rejection: A keeps going.
    this.probe = this.#runProbe(written, decision.bytes, rate).catch((error: unknown) => {
      this.#probeAbort = undefined;
      return { type: "kept", reason: `the probe failed: ${error}` } as const;
    });
  }

  async #runProbe(from: number, bytes: number, aRateBefore: number): Promise<ProbeOutcome> {
    const { deps, mirror, candidate, upstreamPath } = this.#options;
    const path = upstreamPath;
    log.debug("{mirror} delivers {path} at {rate}: probing {candidate} with {bytes} bytes from byte {from}", {
      mirror,
      path,
      rate: rate(aRateBefore),
      candidate,
      bytes,
      from,
    });
    const abort = new AbortController();
    this.#probeAbort = abort;
    const startedAt = deps.now();
    const before = this.#sample(startedAt);
    let outcome: ProbeOutcome;
    try {
      const measured = await this.#measure(from, bytes, abort);
      if (this.#stopped) {
        outcome = { type: "cancelled" };
      } else if (measured.type === "failed") {
        outcome = { type: "kept", reason: `the probe of ${redactUrl(candidate)} failed: ${measured.reason}` };
      } else {
        const bytesPerSecond = (measured.bytes * 1000) / Math.max(1, measured.ms);
        this.#options.mirrors.lastProbes.set(candidate, { bytesPerSecond, at: deps.now() });
        const aDuring = this.#rateSince(before);
        // The better of A's two rates: a probe that took A's share of our own link must not make A look slow.
        const aRate = Math.max(aRateBefore, aDuring);
        const remaining = this.#options.total - this.#options.written();
        const judged = judgeProbe(measured, {
          aRate,
          remaining,
          maxSpeedLimit: this.#options.limits.maxSpeedLimit,
        });
        outcome = judged.type === "keep"
          ? { type: "kept", reason: `${redactUrl(candidate)}: ${judged.reason}` }
          : {
            type: "switched",
            message: `delivers ${rate(judged.aRate)} while ${redactUrl(candidate)} delivered ` +
              `${rate(judged.bRate)} (a probe of ${formatBytes(measured.bytes)}): overtaken`,
          };
      }
    } finally {
      this.#probeAbort = undefined;
    }
    if (outcome.type === "kept") {
      this.#notBefore = deps.now() + OVERTAKE.reprobeMs;
      log.debug("{mirror} keeps {path}: {reason}", { mirror, path, reason: outcome.reason });
    } else if (outcome.type === "switched") {
      this.#options.mirrors.overtakes.overtaken++;
      this.#overtook = true;
      this.stop();
      this.#endAsSlow?.(outcome.message);
    }
    return outcome;
  }

  /** Reads up to `bytes` from `candidate` from byte `from` and discards them, within the probe's time. */
  async #measure(
    from: number,
    bytes: number,
    abort: AbortController,
  ): Promise<(ProbeMeasure & { type: "measured" }) | { type: "failed"; reason: string }> {
    const { deps, limits, candidate, upstreamPath, via, total } = this.#options;
    const headers = new Headers();
    if (via) headers.set("Via", via);
    const range = `bytes=${from}-${from + bytes - 1}`;
    headers.set("Range", range);
    const startedAt = deps.now();
    const answer = await askMirror(candidate + upstreamPath, { method: "GET", headers, abort }, {
      deps,
      limits,
    });
    if (answer.type !== "response") {
      if (answer.type === "failed") return { type: "failed", reason: answer.message };
      return { type: "failed", reason: `answered ${answer.type.replace("_", " ")} to ${range}` };
    }
    const { response, ttfbMs } = answer;
    const got = parseContentRange(response.headers.get("content-range"));
    if (response.status !== 206 || got?.start !== from || got.total !== total) {
      await response.body?.cancel().catch(() => {});
      const what = response.status === 206 ? `Content-Range ${response.headers.get("content-range")}` : "200";
      return { type: "failed", reason: `answered ${range} with ${what}` };
    }
    let count = 0;
    let timedOut = false;
    const timer = this.#timers.setTimer(() => {
      timedOut = true;
      abort.abort(new Error("the probe's time is up"));
    }, OVERTAKE.probeMs);
    const reader = response.body!.getReader();
    try {
      while (count < bytes) {
        const { done, value } = await reader.read();
        if (done) break;
        count += value.byteLength;
      }
    } catch (error) {
      if (!timedOut) {
        return { type: "failed", reason: error instanceof Error ? error.message : String(error) };
      }
    } finally {
      this.#timers.clearTimer(timer);
      reader.cancel().catch(() => {});
      abort.abort(new Error("the probe is done"));
      // Received and paid for like any other (a metered link counts them), though never stored.
      this.#options.mirrors.recordBytes(candidate, count);
    }
    if (count === 0) return { type: "failed", reason: `sent no byte within ${OVERTAKE.probeMs} ms` };
    return { type: "measured", bytes: Math.min(count, bytes), ms: deps.now() - startedAt, ttfbMs };
  }
}

/** What {@linkcode overtakerFor} reads of a download's options. */
export interface OvertakeContext {
  deps: TransferDeps;
  limits: TransferLimits;
  mirrors: Pick<MirrorPool, "recordBytes" | "overtakes" | "lastProbes">;
  upstreamPath: string;
  via?: string;
  rules: Pick<OrderRules, "resumeAcrossMirrors">;
}

/**
 * The overtaker of a transfer from `mirror`, when it may be overtaken: there is a next mirror (`candidate`),
 * the file's bytes may come from two mirrors (packages, not databases) and its length is known.
 */
export function overtakerFor(
  context: OvertakeContext,
  transfer: { mirror: string; candidate?: string; total?: number; written: () => number },
): Overtaker | undefined {
  const { candidate, total } = transfer;
  if (candidate === undefined || total === undefined || !context.rules.resumeAcrossMirrors) return undefined;
  return new Overtaker({ ...context, ...transfer, candidate, total });
}

/**
 * Pumps an attempt's body (see `Attempt.pump`) while `overtaker`, if any, watches it; a body it cut short is
 * marked `overtaken`.
 */
export async function pumpOvertakable(
  attempt: Attempt,
  head: Extract<AttemptHead, { type: "accepted" }>,
  options: Parameters<Attempt["pump"]>[1],
  overtaker: Overtaker | undefined,
): Promise<AttemptBody> {
  const pumping = attempt.pump(head, { ...options, overtakable: overtaker?.overtakable });
  // Once the first read is asked: the first bytes do not wait for the timer's making.
  overtaker?.start();
  try {
    const body = await pumping;
    return body.type === "cut_short" && overtaker?.overtook ? { ...body, overtaken: true } : body;
  } finally {
    overtaker?.stop();
  }
}
