/**
 * One job (in code, an attempt): one request to one mirror for an order, in two steps that a download drives:
 * {@linkcode Attempt.ask} until the mirror's head, then {@linkcode Attempt.pump} of its body into the partial
 * file. Every way each step can end is a case of {@linkcode AttemptHead} or {@linkcode AttemptBody}; what to do
 * next (another mirror, give up, commit) is the download's decision. An attempt holds no state of the download,
 * so that two of them may run at once on two mirrors.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { MirrorPool } from "../mirrors/mirrors.ts";
import { type AcceptOptions, acceptResponse, type Progress, type Unusable } from "./partial_resume.ts";
import { parseHttpDate } from "../http/dates.ts";
import { askMirror, type Overtakable, pumpBody, type TransferDeps, type TransferLimits } from "./transfer.ts";

const log = getLogger(["flexo", "download"]);

/** How a mirror answered the request of an attempt. */
export type AttemptHead =
  /** A body to store: `skip` bytes at its start are on disk already; `total` is the whole file's length. */
  | {
    type: "accepted";
    response: Response;
    skip: number;
    total?: number;
    lastModified?: number;
    ttfbMs: number;
  }
  /** Nothing newer than the cached file (an answer to `If-Modified-Since`). */
  | { type: "not_modified" }
  /** The mirror does not have the file (not its fault). */
  | { type: "not_found"; status: number }
  /** 416 to a resume: this mirror's copy is shorter than the bytes on disk. */
  | { type: "unsatisfiable"; reason: string }
  /** An answer whose body cannot be used (wrong range, wrong length, an HTML page...). */
  | Unusable
  /** No answer, or an error status, within the time allowed. */
  | { type: "failed"; reason: string; timeout: boolean; answered: boolean; loop?: true }
  /** The file changed upstream during the transfer: no mirror can continue the bytes on disk. */
  | { type: "changed_upstream"; reason: string };

/** How the body of an accepted answer ended. */
export type AttemptBody =
  /** The whole file is on disk (its announced length, or a clean end when none was announced). */
  | { type: "complete"; bytes: number; durationMs: number }
  /**
   * The body ended or was abandoned (too slow, stalled, broken) short of the file's end; `overtaken` when a
   * faster mirror overtook it (`overtake.ts`).
   */
  | { type: "cut_short"; bytes: number; reason: string; overtaken?: true }
  /** The mirror sent more than it announced: its bytes cannot be trusted. */
  | { type: "too_long"; bytes: number; reason: string }
  /** Writing to the partial file failed (our side: the disk). */
  | { type: "write_failed"; bytes: number; error: unknown };

/** What an attempt needs besides its mirror. */
export interface AttemptOptions {
  /** Path appended to the mirror's base URL. */
  upstreamPath: string;
  /** Where the transfer is counted as in flight. */
  mirrors: MirrorPool;
  deps: TransferDeps;
  limits: TransferLimits;
}

/** Thrown by the sink to stop a body that goes past its announced length. */
class Overrun extends Error {}

/**
 * Why an attempt's request is aborted when it is closed. One reason for all: an abort without a reason makes a
 * `DOMException`, whose stack trace cost a measurable share of a cold miss's CPU (the request has almost always
 * ended by then, and nobody reads the reason).
 */
const CLOSED = new Error("the attempt was closed");

/** One request to one mirror. {@linkcode Attempt.close} must be called when it is done with. */
export class Attempt {
  /** The mirror asked. */
  readonly mirror: string;
  readonly #options: AttemptOptions;
  readonly #abort = new AbortController();
  readonly #end: () => void;
  readonly #started: number;

  /** Counts a transfer in flight on `mirror` from now until {@linkcode Attempt.close}. */
  constructor(mirror: string, options: AttemptOptions) {
    this.mirror = mirror;
    this.#options = options;
    this.#end = options.mirrors.begin(mirror);
    this.#started = options.deps.now();
  }

  /** Sends the request and judges the mirror's head against `progress`, the bytes already on disk. */
  async ask(
    headers: Headers,
    progress: Progress,
    accept: Omit<AcceptOptions, "upstreamPath">,
  ): Promise<AttemptHead> {
    const { upstreamPath, deps, limits } = this.#options;
    const answer = await askMirror(
      this.mirror + upstreamPath,
      { method: "GET", headers, abort: this.#abort },
      {
        deps,
        limits,
      },
    );
    switch (answer.type) {
      case "not_modified":
      case "not_found":
        return answer;
      case "unsatisfiable":
        // Only a resume sends a Range; a 416 then means this mirror's copy is shorter than ours.
        return { type: "unsatisfiable", reason: `answered 416 to bytes=${progress.written}-` };
      case "failed":
        return {
          type: "failed",
          reason: answer.message,
          timeout: answer.timeout,
          answered: answer.answered,
          ...(answer.loop ? { loop: answer.loop } : {}),
        };
    }
    const { response } = answer;
    const accepted = acceptResponse(response, progress, { ...accept, upstreamPath });
    if (accepted.type !== "accepted") {
      await response.body?.cancel();
      return accepted;
    }
    if (accepted.skip > 0) {
      // The mirror ignored the Range: the bytes on disk come again and are dropped. It works, but costs a
      // whole transfer, so an operator should know which mirror does it.
      log.warn(
        "{mirror} refused to resume {path} from byte {written}: it ignored the Range request and sends the " +
          "whole file again (the first {written} bytes are downloaded twice and dropped)",
        { mirror: this.mirror, path: upstreamPath, written: accepted.skip },
      );
    }
    return {
      type: "accepted",
      response,
      skip: accepted.skip,
      total: accepted.total,
      lastModified: credibleDate(
        parseHttpDate(response.headers.get("last-modified"), deps.now()),
        deps.now(),
      ),
      ttfbMs: answer.ttfbMs,
    };
  }

  /**
   * Reads the body of an accepted answer into `write`, from byte `from` of the file (after dropping the answer's
   * `skip` bytes), until the file's end, the body's end, or a verdict of the transfer limits.
   *
   * @param canSwitch Whether another mirror is left (a slow transfer is abandoned only then).
   */
  async pump(
    head: Extract<AttemptHead, { type: "accepted" }>,
    options: {
      from: number;
      /** Takes a chunk; a promise when the caller must wait before the next (the chunk's memory is reused). */
      write: (chunk: Uint8Array) => Promise<void> | void;
      canSwitch: () => boolean;
      /** See `pumpBody()`: how a faster mirror ends this transfer as too slow (`overtake.ts`). */
      overtakable?: Overtakable;
    },
  ): Promise<AttemptBody> {
    const { deps, limits } = this.#options;
    const { total } = head;
    let skip = head.skip;
    let stored = 0;
    const outcome = await pumpBody(head.response.body!, (chunk) => {
      if (skip > 0) {
        const dropped = Math.min(skip, chunk.byteLength);
        skip -= dropped;
        chunk = chunk.subarray(dropped);
        if (chunk.byteLength === 0) return;
      }
      if (total !== undefined && options.from + stored + chunk.byteLength > total) throw new Overrun();
      const taking = options.write(chunk);
      stored += chunk.byteLength;
      return taking;
    }, {
      deps,
      limits,
      abort: this.#abort,
      canSwitch: options.canSwitch,
      overtakable: options.overtakable,
      expectedBytes: total === undefined ? undefined : total - options.from + head.skip,
    });
    const bytes = outcome.bytes;
    if (outcome.type === "sink_error") {
      return outcome.error instanceof Overrun
        ? { type: "too_long", bytes, reason: `sent more than the ${total} bytes it announced` }
        : { type: "write_failed", bytes, error: outcome.error };
    }
    const end = options.from + stored;
    const complete = total === undefined ? outcome.type === "ended" : end === total;
    if (complete) return { type: "complete", bytes, durationMs: deps.now() - this.#started };
    const reason = outcome.type === "ended"
      ? `closed the connection after ${end} of ${total} bytes`
      : outcome.message;
    return { type: "cut_short", bytes, reason };
  }

  /** Ends the request (if still open) and the count of the transfer in flight. */
  close(): void {
    this.#end();
    this.#abort.abort(CLOSED);
  }
}

/** How far ahead of this host's clock a mirror's clock may be: its dates are kept as they are up to this. */
const CLOCK_SKEW_MS = 10 * 60_000;

/**
 * A `Last-Modified` no later than now (RFC 9110, 8.8.2.1: a date in the future is taken as the time of the
 * answer). A mirror whose clock or file times are wrong would otherwise date a database years ahead, and every
 * later snapshot would be refused as older than the cached one until then (`snapshot_order.ts`). A date within
 * {@linkcode CLOCK_SKEW_MS} ahead is kept: the next `If-Modified-Since` must be the mirror's own date for a 304.
 */
function credibleDate(date: Date | undefined, now: number): number | undefined {
  if (date === undefined) return undefined;
  return date.getTime() > now + CLOCK_SKEW_MS ? now : date.getTime();
}
