/**
 * Cache hits answered without routing: a plain GET of a package file that was served before and is still in
 * the cache. Most requests a busy proxy sees are such hits, so they skip the objects the full path makes (URL,
 * Hono context, an asynchronous `stat`, an open file and its stream):
 *
 * - {@linkcode QuickAnswers.forHead} answers a parsed request head (flexo's own connection layer) with the whole
 *   response as bytes for a small file held in memory, or with a prepared head and the file for sendfile (a
 *   small file not in memory yet is loaded meanwhile, for the next hits);
 *
 * Anything unusual (other methods, conditional or range requests, access control, unknown paths, another host)
 * takes the full path.
 *
 * @module
 */

import { type CachedFile, type CacheStore, HOT_FILE_MAX_SIZE, type HotFile } from "../cache/cache_store.ts";
import type { QuickAnswer, QuickOptions } from "../server/quick_answer.ts";
import type { RequestHead } from "../server/http1_head.ts";
import { isPlainHost, type ResponseSent, targetPath } from "../http/client_request.ts";
import { HttpDates, responseHead } from "../server/http1_response.ts";
import type { RequestTarget } from "../repo/request_path.ts";
import { fileHeadersFor, wholeFileHeaders } from "./responses.ts";
import type { AnswerLog } from "./request_log.ts";

const SLASH = 0x2f;

/**
 * Whether `head` is a GET the quick paths may answer (hits here, misses in quick_misses.ts): no conditional or
 * range header, a path as its target (an absolute URL may name another host) and a Host that a URL would accept.
 */
export function isPlainGet(head: RequestHead): boolean {
  if (head.method !== "GET" || head.conditional || head.host === undefined) return false;
  return head.target.charCodeAt(0) === SLASH && isPlainHost(head.host);
}

/**
 * The client a trusted proxy reported for a request from `remote` (its `Forwarded` or `X-Forwarded-For`), or
 * undefined when the connection's own address is the client's.
 */
export type ClientOf = (remote: string, head: RequestHead) => string | undefined;

/** At most this many package paths are remembered; then the memory starts again. */
const KNOWN_TARGETS_MAX = 10_000;

/** Cache hits answered without routing, for the package paths the full path has seen. */
export class QuickAnswers {
  #store: CacheStore;
  #answers: AnswerLog;
  #dates = new HttpDates();
  /** Targets of package paths seen before, by the path as sent. */
  #targets = new Map<string, RequestTarget>();
  /** Per small file in memory: its whole response as bytes, made again when the second of its Date changes. */
  #hotBytes = new WeakMap<HotFile, { date: string; bytes: Uint8Array }>();
  /** Per known file: its response head, made again when the second of its Date changes. */
  #fileHeads = new WeakMap<CachedFile, { date: string; head: Uint8Array }>();
  #clientOf: ClientOf | undefined;
  /**
   * Answers from `store`'s files and counts and logs what it answers in `answers`; `clientOf` names the client a
   * trusted proxy reports for a connection's request (for the log), when `trusted_proxies` are set.
   */
  constructor(store: CacheStore, answers: AnswerLog, clientOf?: ClientOf) {
    this.#store = store;
    this.#answers = answers;
    this.#clientOf = clientOf;
  }

  /** Remembers that `rawPath` (a package or signature path as sent) means `target`. */
  remember(rawPath: string, target: RequestTarget): void {
    if (target.kind !== "package" && target.kind !== "package_signature") return;
    if (this.#targets.size >= KNOWN_TARGETS_MAX) this.#targets.clear();
    this.#targets.set(rawPath, target);
  }

  /**
   * The answer to a parsed request head, or undefined for the full path: the whole response as bytes for a
   * small file in memory, or (with `files`) a head and the file to send with sendfile.
   */
  forHead(head: RequestHead, options: QuickOptions): QuickAnswer | undefined {
    if (!isPlainGet(head)) return undefined;
    const rawPath = targetPath(head.target);
    const target = this.#targets.get(rawPath);
    if (target === undefined) return undefined;
    const hot = this.#store.hotFile(target.cacheSegments);
    if (hot !== undefined) {
      const date = this.#dates.text();
      let answer = this.#hotBytes.get(hot);
      if (answer?.date !== date) {
        const headBytes = this.#head(hot, target);
        const bytes = new Uint8Array(headBytes.length + hot.bytes.length);
        bytes.set(headBytes);
        bytes.set(hot.bytes, headBytes.length);
        answer = { date, bytes };
        this.#hotBytes.set(hot, answer);
      }
      // Handed to the kernel in one write, at once.
      this.#count(rawPath, { bytes: hot.size, whole: true }, performance.now(), head, options.remote);
      return answer.bytes;
    }
    if (!options.files) return undefined;
    const file = this.#store.knownFile(target.cacheSegments);
    if (file === undefined || file.size === 0) return undefined;
    // A small file not in memory (just downloaded, or dropped for its age or the budget) goes out with sendfile
    // this once and is loaded meanwhile: the next hits are one write from memory. Left on sendfile it cost about
    // four times the CPU per request, for the life of the process (see BENCHMARKS.md, "Session six").
    if (file.size <= HOT_FILE_MAX_SIZE) this.#store.loadHot(target.cacheSegments).catch(() => {});
    const date = this.#dates.text();
    let prepared = this.#fileHeads.get(file);
    if (prepared?.date !== date) {
      prepared = { date, head: this.#head(file, target) };
      this.#fileHeads.set(file, prepared);
    }
    // The file stays "in use" (safe from cleaning) until it has been sent.
    const release = this.#store.beginRead(file.path);
    const started = performance.now();
    return {
      head: prepared.head,
      file: { path: file.path, start: 0, length: file.size, size: file.size },
      done: (sent) => {
        release();
        if (sent !== undefined) this.#count(rawPath, sent, started, head, options.remote);
      },
    };
  }

  /** The head of a 200 answer with all of `file`: the headers serveCachedFile() sends. */
  #head(file: CachedFile, target: RequestTarget): Uint8Array {
    return responseHead({ code: 200 }, wholeFileHeaders(file, fileHeadersFor(target)), {
      length: file.size,
      close: false,
      date: this.#dates.text(),
    });
  }

  /** Counts and logs a hit as the full path does (see request_log.ts). */
  #count(rawPath: string, sent: ResponseSent, started: number, head: RequestHead, remote?: string): void {
    const forwardedFor = remote === undefined ? undefined : this.#clientOf?.(remote, head);
    this.#answers.record({
      method: "GET",
      path: rawPath,
      result: "CACHE HIT",
      status: 200,
      bytes: sent.bytes,
      ms: Math.round(performance.now() - started),
      whole: sent.whole,
      forwardedFor,
    });
  }
}
