/**
 * A download: one order (a file) fetched from upstream into the cache, moving from mirror to mirror until it is
 * complete. Clients never read the upstream stream itself; they follow the bytes on disk
 * (see `live_reader.ts`), so any number of them can share one download and a slow client never slows it.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { CachedFile, CacheStore, PartialMeta } from "../cache/cache_store.ts";
import { type ExpectedFile, IntegrityCheck } from "./download_integrity.ts";
import { HttpError } from "../http/http_error.ts";
import type { MirrorPool } from "../mirrors/mirrors.ts";
import { acceptResponse, findResumePoint, requestHeaders } from "./partial_resume.ts";
import { askMirror, parseHttpDate, pumpBody, type TransferDeps, type TransferLimits } from "./transfer.ts";

export { MAX_FILE_SIZE } from "./partial_resume.ts";

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

/** Everything a download needs. */
export interface DownloadOptions {
  /** Safe path segments below the cache directory. */
  segments: readonly string[];
  /** Path appended to each mirror's base URL. */
  upstreamPath: string;
  /** The mirrors to use, and where outcomes are recorded. */
  mirrors: MirrorPool;
  /** Which mirrors to try in which order (from `mirrors.plan(...)`). */
  plan: () => string[];
  store: CacheStore;
  deps: TransferDeps;
  limits: TransferLimits;
  rules: OrderRules;
  /** Ask upstream only for a newer file than this (milliseconds since the epoch). */
  ifModifiedSince?: number;
  /**
   * What the repository database says the file is; a download that does not match is discarded. A promise is
   * awaited before the first request upstream (the database may still be being read).
   */
  expect?: ExpectedFile | Promise<ExpectedFile | undefined>;
  /** Called when a download was discarded because it did not match `expect`. */
  onIntegrityFailure?: (download: Download, reason: string) => void;
  /**
   * Resolves when the previous download of the same file has finished: one that has ended (its clients have
   * their answer) may still be removing its partial file, which this one must not have created yet.
   */
  after?: Promise<unknown>;
}

/** What the first usable mirror answered. */
export interface DownloadHead {
  /** "not_modified" when upstream has nothing newer than `ifModifiedSince`. */
  status: "ok" | "not_modified";
  /** Length of the whole file, if upstream announced it. */
  total?: number;
  lastModified?: number;
  contentType?: string;
  /** The mirror that answered. */
  mirror?: string;
}

/** The state of a download. */
export type DownloadState = "starting" | "streaming" | "complete" | "not_modified" | "failed";

/** One file being fetched from upstream into the cache. */
export class Download {
  /** Resolves when a mirror has answered with usable headers; rejects with an {@linkcode HttpError} otherwise. */
  readonly head: Promise<DownloadHead>;
  /** Resolves when the download ended (complete, not modified or failed); never rejects. */
  readonly finished: Promise<void>;
  /** Bytes of the file on disk so far (from offset 0). */
  written = 0;
  /** Announced length of the whole file, once known. */
  total?: number;
  state: DownloadState = "starting";
  /** Why it failed, when it did. */
  error?: Error;
  /** The complete file, once committed. */
  file?: CachedFile;
  /** The mirror currently sending bytes. */
  mirror?: string;
  /** When it started, for the status page. */
  readonly startedAt: number;
  readonly segments: readonly string[];
  readonly partialPath: string;
  readonly finalPath: string;

  #options: DownloadOptions;
  #resolveHead!: (head: DownloadHead) => void;
  #rejectHead!: (error: unknown) => void;
  #headSettled = false;
  #wake: PromiseWithResolvers<void> = Promise.withResolvers();
  #finished: PromiseWithResolvers<void> = Promise.withResolvers();
  #integrity?: IntegrityCheck;
  /** {@linkcode DownloadOptions.expect}, once known. */
  #expect?: ExpectedFile;

  /** Prepares a download; {@linkcode Download.start} runs it. */
  constructor(options: DownloadOptions) {
    this.#options = options;
    this.segments = options.segments;
    this.partialPath = options.store.partialPath(options.segments);
    this.finalPath = options.store.finalPath(options.segments);
    this.startedAt = options.deps.now();
    this.head = new Promise((resolve, reject) => {
      this.#resolveHead = resolve;
      this.#rejectHead = reject;
    });
    // The head may be awaited by nobody when every client went away; that must not crash the process.
    this.head.catch(() => {});
    this.finished = this.#finished.promise;
  }

  /** Starts the download in the background. */
  start(): this {
    this.#run().catch((error) => this.#failWith(error));
    return this;
  }

  /** Ends the download after an error thrown while running: logs what went wrong on our side and cleans up. */
  async #failWith(error: unknown): Promise<void> {
    if (error instanceof HttpError) {
      this.#fail(error);
      return;
    }
    const path = this.#options.upstreamPath;
    if (isDiskFull(error)) {
      const dir = this.#options.store.root;
      log.error("disk full: {dir}: could not store {path}; free space there or lower max_cache_size", {
        dir,
        path,
      });
      // The partial file cannot be finished, and removing it gives the space back for other downloads.
      await this.#options.store.discardPartial(this.segments).catch(() => {});
      this.#fail(
        new HttpError(507, `disk full: no space left in the cache directory ${dir} to store ${path}`, {
          cause: error,
        }),
      );
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    log.error("Download of {path} failed: {message}", { path, message });
    this.#fail(error instanceof Error ? error : new Error(message));
  }

  /** Resolves at the next change: more bytes on disk, or the end of the download. */
  changed(): Promise<void> {
    return this.#wake.promise;
  }

  /** True when no more bytes will come. */
  get ended(): boolean {
    return this.state === "complete" || this.state === "not_modified" || this.state === "failed";
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = Promise.withResolvers();
    wake.resolve();
  }

  #settleHead(head: DownloadHead): void {
    if (this.#headSettled) return;
    this.#headSettled = true;
    this.#resolveHead(head);
  }

  #fail(error: Error): void {
    this.error = error;
    this.state = "failed";
    if (!this.#headSettled) {
      this.#headSettled = true;
      this.#rejectHead(
        error instanceof HttpError ? error : new HttpError(502, error.message, { cause: error }),
      );
    }
    this.#notify();
    this.#finished.resolve();
  }

  async #run(): Promise<void> {
    const { store, segments, rules } = this.#options;
    if (this.#options.after !== undefined) await this.#options.after.catch(() => {});
    if (this.#options.ifModifiedSince === undefined) {
      // Another download may have completed this file a moment ago.
      const cached = await store.statComplete(segments);
      if (cached) {
        this.written = cached.size;
        this.total = cached.size;
        this.file = cached;
        this.#settleHead({ status: "ok", total: cached.size, lastModified: cached.mtime.getTime() });
        this.state = "complete";
        this.#notify();
        this.#finished.resolve();
        return;
      }
    }
    const resume = await findResumePoint(store, segments, {
      resumeAcrossMirrors: rules.resumeAcrossMirrors,
      ifModifiedSince: this.#options.ifModifiedSince,
    });
    const meta = resume.meta;
    this.written = resume.written;
    this.total = resume.total;
    this.#expect = await this.#options.expect;
    if (this.#expect) {
      this.#integrity = new IntegrityCheck(this.#expect);
      if (this.written > 0) await this.#integrity.updateFromFile(this.partialPath, this.written);
    }
    const file = await store.openPartial(segments, { truncate: this.written === 0 });
    try {
      if (this.total !== undefined && this.written === this.total) {
        // A crash between the last write and the commit: nothing left to fetch.
        this.#settleHead({
          status: "ok",
          total: this.total,
          lastModified: meta.lastModified,
          mirror: meta.mirror,
        });
        await file.syncData();
        file.close();
        await this.#commit(meta);
        return;
      }
      await this.#failover(file, meta);
    } finally {
      try {
        file.close();
      } catch {
        // already closed
      }
    }
  }

  async #failover(file: Deno.FsFile, meta: PartialMeta): Promise<void> {
    const { mirrors, deps, limits, rules, store, segments } = this.#options;
    const plan = this.#options.plan().slice(0, MAX_ATTEMPTS);
    const failures: { mirror: string; message: string }[] = [];
    let notFound = 0;
    let timeouts = 0;
    let firstWrite = true;
    for (let i = 0; i < plan.length; i++) {
      const mirror = plan[i];
      const url = mirror + this.#options.upstreamPath;
      const headers = requestHeaders(this.written, meta, {
        resumeAcrossMirrors: rules.resumeAcrossMirrors,
        ifModifiedSince: this.#options.ifModifiedSince,
      });
      const abort = new AbortController();
      const end = mirrors.begin(mirror);
      const started = deps.now();
      try {
        const answer = await askMirror(url, { method: "GET", headers, abort }, { deps, limits });
        if (answer.type === "not_modified") {
          this.state = "not_modified";
          this.#settleHead({ status: "not_modified", mirror });
          this.#commitFailures(failures);
          file.close();
          await store.discardPartial(segments);
          this.#notify();
          this.#finished.resolve();
          return;
        }
        if (answer.type === "not_found") {
          notFound++;
          log.debug("{mirror} does not have {path} (HTTP {status})", {
            mirror,
            path: this.#options.upstreamPath,
            status: answer.status,
          });
          if (rules.notFoundIsFinal) break;
          continue;
        }
        if (answer.type === "unsatisfiable") {
          // Only a resume sends a Range; a 416 then means this mirror's copy is shorter than ours.
          failures.push({ mirror, message: `answered 416 to bytes=${this.written}-` });
          continue;
        }
        if (answer.type === "failed") {
          if (answer.timeout) timeouts++;
          failures.push({ mirror, message: answer.message });
          log.warn("{mirror} failed for {path}: {message}", {
            mirror,
            path: this.#options.upstreamPath,
            ...answer,
          });
          continue;
        }
        const response = answer.response;
        const accepted = acceptResponse(response, { written: this.written, total: this.total }, {
          meta,
          upstreamPath: this.#options.upstreamPath,
          resumeAcrossMirrors: rules.resumeAcrossMirrors,
          expect: this.#expect,
        });
        if (typeof accepted === "string") {
          await response.body?.cancel();
          failures.push({ mirror, message: accepted });
          log.warn("{mirror} sent an unusable answer for {path}: {message}", {
            mirror,
            path: this.#options.upstreamPath,
            message: accepted,
          });
          if (accepted.startsWith("FATAL")) throw new HttpError(502, accepted.slice(6));
          continue;
        }
        this.total = accepted.total;
        if (!this.#headSettled) {
          meta = {
            total: this.total,
            lastModified: parseHttpDate(response.headers.get("last-modified")),
            contentType: response.headers.get("content-type") ?? undefined,
            mirror,
          };
          await store.writePartialMeta(segments, meta);
          this.#settleHead({
            status: "ok",
            total: this.total,
            lastModified: meta.lastModified,
            contentType: meta.contentType,
            mirror,
          });
        }
        this.state = "streaming";
        this.mirror = mirror;
        let skip = accepted.skip;
        const outcome = await pumpBody(response.body!, async (chunk) => {
          if (skip > 0) {
            const dropped = Math.min(skip, chunk.byteLength);
            skip -= dropped;
            chunk = chunk.subarray(dropped);
            if (chunk.byteLength === 0) return;
          }
          if (this.total !== undefined && this.written + chunk.byteLength > this.total) {
            throw new Error(`sent more than the ${this.total} bytes it announced`);
          }
          if (firstWrite) {
            // The first bytes are what every waiting client needs first: written at once into the page cache
            // (microseconds), where handing them to a thread takes up to a millisecond on a busy machine. The
            // rest go through a thread, so that a slow disk never stalls the event loop.
            firstWrite = false;
            writeAllSync(file, chunk);
          } else {
            await writeAll(file, chunk);
          }
          this.#integrity?.update(chunk, mirror);
          this.written += chunk.byteLength;
          this.#notify();
        }, { deps, limits, abort, canSwitch: () => i < plan.length - 1 });
        const elapsed = deps.now() - started;
        if (outcome.type === "sink_error") {
          const message = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
          if (message.startsWith("sent more")) {
            // The mirror's bytes cannot be trusted; start over clean rather than keep any of them.
            // A mirror that sends bad data is at fault whatever happens to the order.
            mirrors.recordFailure(mirror, message);
            await store.discardPartial(segments);
            throw new HttpError(502, `${mirror} ${message}`);
          }
          throw outcome.error;
        }
        const complete = this.total === undefined ? outcome.type === "ended" : this.written === this.total;
        if (complete) {
          if (this.total === undefined) {
            log.warn("{mirror} sent {path} without a length; accepting the clean end of the stream", {
              mirror,
              path: this.#options.upstreamPath,
            });
          }
          await file.syncData();
          file.close();
          mirrors.recordSuccess(mirror, { bytes: outcome.bytes, durationMs: elapsed, ttfbMs: answer.ttfbMs });
          this.#commitFailures(failures);
          await this.#commit(meta);
          return;
        }
        mirrors.recordBytes(mirror, outcome.bytes);
        const message = outcome.type === "ended"
          ? `closed the connection after ${this.written} of ${this.total} bytes`
          : outcome.message;
        failures.push({ mirror, message });
        log.warn("{mirror} failed for {path} at byte {written}: {message}; switching mirror", {
          mirror,
          path: this.#options.upstreamPath,
          written: this.written,
          message,
        });
      } finally {
        end();
        abort.abort();
      }
    }
    // Every mirror failed: do not blame any of them (the file or our own network is the likelier cause).
    const status = failures.length === 0 && notFound > 0
      ? 404
      : timeouts > 0 && timeouts === failures.length
      ? 504
      : 502;
    const reason = status === 404
      ? `${this.#options.upstreamPath} was not found on ${notFound} mirror(s)`
      : `every mirror failed for ${this.#options.upstreamPath}: ` +
        failures.map((f) => `${f.mirror} ${f.message}`).join("; ");
    if (plan.length === 0) {
      throw new HttpError(
        502,
        'No upstream mirror is configured: set mirrors_predefined or use mirror_selection_method = "auto"',
      );
    }
    if (!rules.keepPartialOnFailure || this.written === 0) await store.discardPartial(segments);
    throw new HttpError(status, reason);
  }

  async #commit(meta: PartialMeta): Promise<void> {
    const reason = this.#integrity?.mismatch(this.written, this.#options.upstreamPath);
    if (reason !== undefined) {
      for (const mirror of this.#integrity!.contributors) {
        this.#options.mirrors.recordFailure(mirror, "sent a corrupt file");
      }
      await this.#options.store.discardPartial(this.segments);
      log.error(reason);
      this.#options.onIntegrityFailure?.(this, reason);
      throw new HttpError(502, reason);
    }
    this.file = await this.#options.store.commit(this.segments, { lastModified: meta.lastModified });
    this.state = "complete";
    this.#notify();
    this.#finished.resolve();
  }

  #commitFailures(failures: { mirror: string; message: string }[]): void {
    for (const f of failures) this.#options.mirrors.recordFailure(f.mirror, f.message);
  }
}

/** True for the errors of a file system that has no space (or quota) left. */
function isDiskFull(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

async function writeAll(file: Deno.FsFile, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) offset += await file.write(chunk.subarray(offset));
}

function writeAllSync(file: Deno.FsFile, chunk: Uint8Array): void {
  let offset = 0;
  while (offset < chunk.byteLength) offset += file.writeSync(chunk.subarray(offset));
}
