/**
 * A download: one order (a file) fetched from upstream into the cache, moving from mirror to mirror until it is
 * complete. Clients never read the upstream stream itself; they follow the bytes on disk
 * (see `live_reader.ts`), so any number of them can share one download and a slow client never slows it.
 *
 * The download owns the rule that a file's last byte (a small file's every byte: a corrupt one is fetched again)
 * reaches clients only once verified (`verification.ts`); every way of sending its bytes follows that. The jobs
 * on mirrors are in `attempt.ts`; what their failures add up to in `failover.ts`.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { CachedFile } from "../cache/cache_store.ts";
import { type ExpectedFile, IntegrityCheck } from "./download_integrity.ts";
import { HttpError } from "../http/http_error.ts";
import { findResumePoint, requestHeaders } from "./partial_resume.ts";
import { Attempt, type AttemptBody, type AttemptHead } from "./attempt.ts";
import { afterCutShort, afterLosers, FailoverPlan, type FailoverStep, FailureTally } from "./failover.ts";
import { ensureRoom, isDiskFull, runError } from "./file_writes.ts";
import { writeAll, writeAllSync } from "../write_all.ts";
import { BodyWriter, COALESCE_BYTES } from "./body_writer.ts";
import { type HedgeRace, raceAttempts } from "./hedge.ts";
import { overtakerFor, pumpOvertakable } from "./overtake.ts";
import { releasableBytes, verifiedEarly, verifyFile, WholeHold } from "./verification.ts";
import { refuseNoBetterCopy, sameSecond } from "./snapshot_order.ts";
import { PartialFile } from "./partial_file.ts";
import type { DownloadHead, DownloadOutcome, DownloadState } from "./download_states.ts";
import { redactUrl } from "../redact_url.ts";
import type { DownloadOptions } from "./download_options.ts";

export { MAX_FILE_SIZE } from "./partial_resume.ts";
export { MAX_ATTEMPTS, type OrderRules } from "./failover.ts";
export type { DownloadHead, DownloadOutcome, DownloadState } from "./download_states.ts";
export type { DownloadOptions } from "./download_options.ts";

const log = getLogger(["flexo", "download"]);
type AcceptedHead = Extract<AttemptHead, { type: "accepted" }>;

/** Awaited after the first chunk: one microtask, after those of the clients it woke. */
const CLIENTS_FIRST: Promise<void> = Promise.resolve();

/** One file being fetched from upstream into the cache. */
export class Download {
  /** Resolves at a mirror's usable headers (a small file's once verified or held 5 s); else an HttpError. */
  readonly head: Promise<DownloadHead>;
  /** Resolves when the download ended (committed, not modified or failed); never rejects. */
  readonly finished: Promise<void>;
  /** Bytes of the file on disk so far (from offset 0). Clients may have {@linkcode Download.releasable}. */
  written = 0;
  /** Bytes that were on disk already when it started (a resumed partial file), for its speed. */
  resumedFrom = 0;
  /** Announced length of the whole file, once known. */
  total?: number;
  state: DownloadState = "starting";
  /** Why it failed, when it did. */
  error?: Error;
  /** The complete file, once committed. */
  file?: CachedFile;
  /** The mirror currently sending bytes. */
  mirror?: string;
  /**
   * Once ended "complete" or "not_modified": the mirror known to hold the file as the cache now has it (the one
   * it came from, or the one that answered 304 to it); undefined when none is known.
   */
  source?: string;
  /** When it started, for the status page. */
  readonly startedAt: number;
  readonly segments: readonly string[];
  readonly partialPath: string;
  readonly finalPath: string;
  /** The date of the database snapshot this file is the signature of ({@linkcode DownloadOptions.pairedWith}). */
  readonly pairedWith?: number;

  #options: DownloadOptions;
  #head: PromiseWithResolvers<DownloadHead> = Promise.withResolvers();
  #headSettled = false;
  #wake: PromiseWithResolvers<void> = Promise.withResolvers();
  #finished: PromiseWithResolvers<void> = Promise.withResolvers();
  #outcome: DownloadOutcome = { type: "running" };
  #integrity?: IntegrityCheck;
  /** The integrity check being made while the first mirror is asked (see #run). */
  #integrityStarting?: Promise<IntegrityCheck>;
  /** {@linkcode DownloadOptions.expect}, once known. */
  #expect?: ExpectedFile;
  /** The partial file and its record: created while the first mirror is asked, or opened once a mirror answered. */
  #partial: PartialFile;
  #firstWrite = true;
  #hold = new WholeHold();

  /** Prepares a download; {@linkcode Download.start} runs it. */
  constructor(options: DownloadOptions) {
    this.#options = options;
    this.segments = options.segments;
    this.partialPath = options.store.partialPath(options.segments);
    this.finalPath = options.store.finalPath(options.segments);
    this.#partial = new PartialFile(options.store, options.segments);
    this.startedAt = options.deps.now();
    this.pairedWith = options.pairedWith;
    this.head = this.#head.promise;
    // The head may be awaited by nobody when every client went away; that must not crash the process.
    this.head.catch(() => {});
    this.finished = this.#finished.promise;
  }

  /** Starts the download in the background. */
  start(): this {
    this.#run().catch((error) => this.#failWith(error)).finally(() => this.#hold.stop());
    return this;
  }

  /**
   * How many bytes of the file (from offset 0) a client whose response ends before byte `end` (by default the
   * file's end) may have now, until verified: none of a small file while held (`verification.ts`), else all on
   * disk but the response's last: a client's response (a range's too) ends short, never whole, when wrong.
   */
  releasable(end?: number): number {
    const verified = this.#outcome.type === "complete";
    return releasableBytes(this, { verified, whole: this.#hold.holds }, end);
  }

  /** How the download ended for its clients, or "running"; see {@linkcode DownloadOutcome}. */
  outcome(): DownloadOutcome {
    return this.#outcome;
  }

  /** Resolves at the next change: more bytes on disk, bytes released, or the end of the download. */
  changed(): Promise<void> {
    return this.#wake.promise;
  }

  /** True when the download is over, its file committed or not. */
  get ended(): boolean {
    return this.state === "complete" || this.state === "not_modified" || this.state === "failed";
  }

  /** Ends the download after an error thrown while running: logs what went wrong on our side and cleans up. */
  async #failWith(error: unknown): Promise<void> {
    const { store, upstreamPath: path } = this.#options;
    this.#fail(
      error instanceof HttpError ? error : await runError(error, { store, segments: this.segments, path }),
    );
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = Promise.withResolvers();
    wake.resolve();
  }

  #settleHead(head: DownloadHead): void {
    if (this.#headSettled) return;
    this.#headSettled = true;
    this.#head.resolve(head);
  }

  /** Ends the download as failed; for clients only if it had not released the whole file already. */
  #fail(error: Error): void {
    this.error = error;
    this.state = "failed";
    if (this.#outcome.type === "running") this.#outcome = { type: "failed", reason: error.message, error };
    if (!this.#headSettled) {
      this.#headSettled = true;
      this.#head.reject(
        error instanceof HttpError ? error : new HttpError(502, error.message, { cause: error }),
      );
    }
    this.#notify();
    this.#finished.resolve();
  }

  #end(state: "complete" | "not_modified"): void {
    this.state = state;
    if (this.#outcome.type === "running") this.#outcome = { type: state };
    this.#notify();
    this.#finished.resolve();
  }

  async #run(): Promise<void> {
    const { store, segments, rules } = this.#options;
    if (this.#options.after !== undefined) await this.#options.after.catch(() => {});
    const { ifModifiedSince, after, missing } = this.#options;
    if (ifModifiedSince === undefined && (after !== undefined || !missing)) {
      // Another download may have completed this file a moment ago.
      const cached = await store.statComplete(segments);
      const { pairedWith } = this.#options;
      if (cached && (pairedWith === undefined || sameSecond(cached.mtime.getTime(), pairedWith))) {
        this.written = cached.size;
        this.total = cached.size;
        this.file = cached;
        this.#settleHead({ status: "ok", total: cached.size, lastModified: cached.mtime.getTime() });
        this.#end("complete");
        return;
      }
    }
    this.#expect = await this.#options.expect;
    this.#hold.start(this.#expect);
    const resume = await findResumePoint(store, segments, {
      resumeAcrossMirrors: rules.resumeAcrossMirrors,
      ifModifiedSince: this.#options.ifModifiedSince,
      expectedSize: this.#expect?.size,
    });
    this.#partial.resume(resume);
    this.written = resume.written;
    this.resumedFrom = resume.written;
    this.total = resume.total;
    if (this.#expect) {
      const starting = IntegrityCheck.start(this.#expect);
      if (this.written > 0) {
        this.#integrity = await starting;
        await this.#integrity.updateFromFile(this.partialPath, this.written, this.#partial.record.mirror);
      } else {
        // Made while the mirror is asked, and waited for before the first byte is taken (#onAccepted): the
        // request to the mirror waited for it before, 54 us of a cold miss in a profile.
        starting.catch(() => {});
        this.#integrityStarting = starting;
      }
    }
    try {
      if (this.total !== undefined && this.written === this.total) {
        // A crash between the last write and the commit: nothing left to fetch, unless a small file is corrupt.
        if (await this.#verified()) return await this.#commit();
      }
      await this.#failover();
    } finally {
      await this.#partial.close();
    }
  }

  /**
   * Asks the mirrors of the plan in turn until one delivers the file or the order cannot succeed. A mirror
   * late with its head is hedged once per order: the next mirror is asked too (`hedge.ts`).
   */
  async #failover(): Promise<void> {
    const { rules, upstreamPath, mirrors } = this.#options;
    const plan = new FailoverPlan(this.#options.plan());
    if (plan.length === 0) {
      throw new HttpError(
        502,
        'No upstream mirror is configured: set mirrors_predefined or use mirror_selection_method = "auto"',
      );
    }
    const tally = new FailureTally(this.#options.mirrors);
    const resume = {
      resumeAcrossMirrors: rules.resumeAcrossMirrors,
      ifModifiedSince: this.#options.ifModifiedSince,
    };
    mirrors.hedgeBudget.earn();
    let hedgeLeft = true;
    for (let mirror = plan.next(); mirror !== undefined; mirror = plan.next()) {
      const meta = this.#partial.record;
      const racing = raceAttempts(mirror, hedgeLeft ? plan.afterNext() : undefined, {
        attempt: this.#options,
        headers: requestHeaders(this.written, meta, resume, this.#options.via),
        progress: { written: this.written, total: this.total },
        accept: { meta, resumeAcrossMirrors: rules.resumeAcrossMirrors, expect: this.#expect },
        isLagging: this.#options.isLagging,
        movesOn: rules.movesOn,
      });
      // The request is on its way: its body's file is made meanwhile (not for a revalidation: mostly a 304).
      if (this.written === 0 && this.#options.ifModifiedSince === undefined) this.#partial.prepare();
      this.#hold.arm(this.#options.deps.timers, () => this.#holdLifted());
      const { race, attempts } = await racing;
      // Past every mirror this race asked: its hedge, and a new primary that joined it (never asked again, nor probed).
      plan.passAsked(attempts);
      if (race.hedged) hedgeLeft = false;
      let step: FailoverStep;
      try {
        step = await this.#afterRace(race, attempts, tally, plan);
      } finally {
        for (const attempt of attempts.values()) attempt.close();
      }
      if (step === "done") return;
      if (step === "give_up") break;
    }
    // No mirror has a snapshot as new as the cached one: the cached file is the answer.
    if (tally.noBetterFrom && !this.#headSettled) {
      // That mirror has an older copy (or one that failed its check): not a source of the cached one.
      await this.#onNotModified(tally.noBetterFrom, tally, { confirmed: false });
      return;
    }
    // Every mirror failed: each failure counted, but none is penalised (the file or our own network is the likelier cause).
    // Not kept when a mirror's file has another length: they'd fail every later download (a rebuilt package).
    // Kept for the next download to resume, with its record; without one (a full disk) it goes, freeing space.
    const keep = rules.keepPartialOnFailure && this.written > 0 && !tally.sawOtherLength;
    if (!keep || !this.#partial.writeRecordIfDue()) await this.#partial.discard();
    throw tally.finalError(upstreamPath);
  }

  /** Hands each head of a race to its handler, and stores the winner's body. */
  async #afterRace(
    race: HedgeRace<AttemptHead>,
    attempts: Map<string, Attempt>,
    tally: FailureTally,
    plan: FailoverPlan,
  ): Promise<FailoverStep> {
    const { rules, upstreamPath } = this.#options;
    const step = afterLosers(race, { upstreamPath, notFoundIsFinal: rules.notFoundIsFinal, tally });
    const winner = race.winner;
    if (winner?.head.type === "accepted") {
      const refused = await refuseNoBetterCopy(winner.head, {
        ...this.#options,
        mirror: winner.mirror,
        tally,
      });
      return refused ?? await this.#onAccepted(attempts.get(winner.mirror)!, winner.head, tally, plan);
    }
    if (winner?.head.type === "not_modified") {
      return await this.#onNotModified(winner.mirror, tally, { confirmed: true });
    }
    return step;
  }

  /** Nothing newer upstream; `confirmed` when `mirror` said 304, so that it holds the cached copy. */
  async #onNotModified(
    mirror: string,
    tally: FailureTally,
    { confirmed }: { confirmed: boolean },
  ): Promise<FailoverStep> {
    this.state = "not_modified";
    if (confirmed) this.source = mirror;
    this.#settleHead({ status: "not_modified", mirror });
    tally.blame(this.#options.mirrors);
    // An earlier mirror answered with a body and broke off before its first byte.
    await this.#partial.settle();
    if (this.#partial.file !== undefined) await this.#partial.discard();
    this.#end("not_modified");
    return "done";
  }

  /**
   * A mirror answered with a body: the partial file is opened (if not made already) and the body stored. The
   * next mirror of the plan may overtake a slow transfer (`overtake.ts`), and is then the failover's next.
   */
  async #onAccepted(
    attempt: Attempt,
    head: AcceptedHead,
    tally: FailureTally,
    plan: FailoverPlan,
  ): Promise<FailoverStep> {
    const mirror = attempt.mirror;
    this.total = head.total;
    await ensureRoom((this.total ?? 0) - this.written, this.#partial, this.#options);
    await this.#partial.open({ truncate: this.written === 0 });
    if (this.#integrityStarting !== undefined) {
      this.#integrity = await this.#integrityStarting;
      this.#integrityStarting = undefined;
    }
    // Also with no byte on disk after a mirror that broke off before its first: the file gets this one's date.
    const { lastModified } = head;
    const record = { total: this.total, lastModified, mirror };
    if (!this.#headSettled || this.written === 0) this.#partial.describe(record);
    // A file held back whole has its head once verified (#commit) or held too long (#holdLifted), or a 502.
    if (!this.#hold.holds) {
      this.#settleHead({ status: "ok", total: this.total, lastModified, mirror });
    }
    this.state = "streaming";
    this.mirror = mirror;
    const writer = this.#bodyWriter(mirror);
    const watch = { mirror, candidate: plan.next(), total: this.total, written: () => this.written };
    const body = await pumpOvertakable(attempt, head, {
      from: this.written,
      write: (chunk) => this.#write(chunk, mirror, writer),
      canSwitch: () => plan.next() !== undefined,
    }, overtakerFor(this.#options, watch));
    // Taken bytes are on disk before the outcome counts (the next mirror resumes there); all count as received.
    const drained = await writer.drain().then(() => undefined, (error: unknown) => ({ error }));
    if (body.type !== "complete" || drained) this.#options.mirrors.recordBytes(mirror, body.bytes);
    if (drained !== undefined) throw body.type === "write_failed" ? body.error : drained.error;
    switch (body.type) {
      case "complete":
        return await this.#onComplete(mirror, head, body, tally);
      case "cut_short":
        return afterCutShort(body, { ...this.#options, mirror, written: this.written, tally, plan });
      case "too_long":
        // Its bytes cannot be trusted: start over clean, keeping none; it is at fault whatever the order.
        this.#options.mirrors.recordFailure(mirror, body.reason);
        await this.#partial.discard();
        throw new HttpError(502, `${redactUrl(mirror)} ${body.reason}`);
      case "write_failed":
        throw body.error;
    }
  }

  /** Stores one chunk of the body: the first at once, the rest through `writer` (`body_writer.ts`). */
  #write(chunk: Uint8Array, mirror: string, writer: BodyWriter): Promise<void> | undefined {
    if (!this.#firstWrite) return writer.push(chunk);
    // The first bytes are what every waiting client needs first: written at once into the page cache
    // (microseconds), where handing them to a thread takes up to a millisecond on a busy machine.
    this.#firstWrite = false;
    writeAllSync(this.#partial.file!, chunk);
    this.#integrity?.update(chunk, mirror);
    this.#written(chunk.byteLength);
    // The clients it woke send the bytes (in the microtasks queued by the wake) before the next read of the
    // body is asked for: that read's call, cold, came first and held the first byte back.
    return CLIENTS_FIRST;
  }

  /** The writer of one mirror's body: each write is hashed here while a thread writes it. */
  #bodyWriter(mirror: string): BodyWriter {
    const left = this.total === undefined ? COALESCE_BYTES : this.total - this.written;
    return new BodyWriter({
      write: (bytes) => {
        this.#partial.writeRecordIfDue(this.written);
        const writing = writeAll(this.#partial.file!, bytes);
        this.#integrity?.update(bytes, mirror);
        return writing;
      },
      written: (bytes) => this.#written(bytes.byteLength),
    }, left);
  }

  /** `count` more bytes are on disk: clients waiting for them are woken. */
  #written(count: number): void {
    this.written += count;
    if (this.written === this.total && this.#outcome.type === "running") {
      if (verifiedEarly(this.#integrity, this.#options, this.written)) this.#outcome = { type: "complete" };
    }
    this.#notify();
  }

  /** A small file held back too long (`WholeHold`): the head of the mirror now sending it goes out at once. */
  #holdLifted(): void {
    const { lastModified, mirror } = this.#partial.record;
    if (this.state === "streaming" && mirror !== undefined && mirror === this.mirror) {
      this.#settleHead({ status: "ok", total: this.total, lastModified, mirror });
    }
    this.#notify();
  }

  async #onComplete(
    mirror: string,
    head: AcceptedHead,
    body: Extract<AttemptBody, { type: "complete" }>,
    tally: FailureTally,
  ): Promise<FailoverStep> {
    if (this.total === undefined) {
      log.warn("{mirror} sent {path} without a length; accepting the clean end of the stream", {
        mirror,
        path: this.#options.upstreamPath,
      });
    }
    const { bytes, durationMs } = body;
    if (!await this.#verified(tally, { mirror, bytes })) return "next_mirror"; // a small file: the next mirror's
    this.#options.mirrors.recordSuccess(mirror, { bytes, durationMs, ttfbMs: head.ttfbMs });
    tally.blame(this.#options.mirrors);
    await this.#commit();
    return "done";
  }

  /**
   * Every byte is on disk and verified: releases the file to clients at once, then flushes it to disk and
   * commits it to the cache (a crash must never leave an unflushed file in the cache). A commit that fails
   * after the release is logged; clients have their verified bytes.
   */
  async #commit(): Promise<void> {
    const { lastModified, mirror } = this.#partial.record;
    this.#settleHead({ status: "ok", total: this.total, lastModified, mirror });
    this.#outcome = { type: "complete" };
    this.#notify();
    try {
      this.file = await this.#partial.commit(this.#options.pairedWith ?? this.#partial.record.lastModified);
      this.source = this.mirror ?? this.#partial.record.mirror;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      log.error("{path} was verified and sent, but storing it in the cache failed: {message}", {
        path: this.#options.upstreamPath,
        message,
      });
      if (isDiskFull(error)) await this.#partial.discard().catch(() => {});
      this.#fail(error instanceof Error ? error : new Error(message));
      return;
    }
    this.#end("complete");
  }

  /**
   * Verifies the complete file (`verification.ts`; a corrupt one's `received` bytes are counted). A corrupt small
   * one (no client has a byte of it) is emptied for the next mirror, its outcome in `tally`: false.
   * @throws {HttpError} 502 when a larger one is corrupt.
   */
  async #verified(tally?: FailureTally, received?: { mirror: string; bytes: number }): Promise<boolean> {
    const verdict = await verifyFile(this, this.#partial.record, this.#integrity, this.#options);
    if (verdict.type === "verified") return true;
    if (received !== undefined) this.#options.mirrors.recordBytes(received.mirror, received.bytes);
    if (!this.#hold.holds) {
      await this.#partial.discard();
      throw new HttpError(502, verdict.reason);
    }
    for (const mirror of verdict.blamed) {
      tally?.failed(mirror, `sent a corrupt file: ${verdict.reason}`, { counted: true });
    }
    // No byte of it goes out (nor a head of its mirror, `#holdLifted`) while it is emptied.
    [this.written, this.resumedFrom, this.mirror] = [0, 0, undefined];
    await this.#partial.restart();
    this.#integrity = await IntegrityCheck.start(this.#expect!);
    return false;
  }
}
