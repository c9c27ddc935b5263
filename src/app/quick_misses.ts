/**
 * Cache misses answered from the parsed request head: a plain GET of a package file that is neither cached nor
 * downloading starts its download and is answered, once the mirror's head came, with a prepared head and the
 * file as it is written (sent with sendfile), without the objects the full path makes (a `Request`, hono's
 * routing, a `Response` and its `Headers`, the head built from them). A miss is rare, so its code runs in V8's
 * interpreter: what it does not run is what it saves (see BENCHMARKS.md, session six).
 *
 * The rules are the full path's own (proxy.ts: {@linkcode lookUpPackage}, {@linkcode startMiss},
 * {@linkcode wholeMiss}, {@linkcode answerDownload}; the answer log and the error answer), run for a request
 * without the headers that change them. Everything else takes the full path:
 *
 * - other methods, conditional and range requests (`If-*`, `Range`), a `Via` (a loop is refused there), a
 *   `Cache-Control: only-if-cached` (cache peers ask so), an absolute target or an odd `Host`;
 * - configurations where requests are judged one by one: `trusted_proxies` (forwarded clients are checked
 *   against `allowed_clients`), `cache_peers` (asked before a miss), `offline`;
 * - files that are not packages or signatures, running downloads, and connections that cannot send files.
 *
 * A cached package or signature whose path the quick path of hits does not know yet (the first request for it
 * since the start) is remembered for it and answered by it at once, as its next requests will be: the first hit
 * after a start does not wait for the full path's routing, its `Request` and its `Response`.
 *
 * After the mirror's head, anything but a 200 of known length (an error, a file completed meanwhile) is
 * answered with the full path's `Response`, made by the same functions from {@linkcode PLAIN_GET}.
 *
 * @module
 */

import type { DownloadHead } from "../download/download.ts";
import { PLAIN_GET, type RequestFacts } from "../http/range.ts";
import { type ResponseSent, targetPath } from "../http/client_request.ts";
import { parseRequestPath, type RequestTarget } from "../repo/request_path.ts";
import type { LaterAnswer, QuickAnswer, QuickOptions } from "../server/quick_answer.ts";
import type { RequestHead } from "../server/http1_head.ts";
import { HttpDates, responseHead } from "../server/http1_response.ts";
import type { RequestResult } from "../status/stats.ts";
import type { ErrorAnswer } from "./error_answer.ts";
import { asksOnlyIfCached } from "./only_if_cached.ts";
import {
  answerDownload,
  lookUpPackage,
  type ProxyAnswer,
  type ProxyContext,
  startMiss,
  wholeMiss,
} from "./proxy.ts";
import { isPlainGet } from "./quick_answers.ts";

/** What the quick path for misses shares with the full path (app.ts). */
export interface MissContext {
  proxy: ProxyContext;
  customRepoNames: ReadonlySet<string>;
  /** Remembers a package path for the quick path of hits (quick_answers.ts), as the full path does. */
  remember: (rawPath: string, target: RequestTarget) => void;
  /** The quick path of hits (quick_answers.ts), asked for a cached file once its path is remembered. */
  hit?: (head: RequestHead, options: QuickOptions) => QuickAnswer | undefined;
  /** Counts and logs an answer once `completed` resolves (app.ts's `settle`). */
  settle: (
    req: RequestFacts,
    rawPath: string,
    answer: { result: RequestResult; status: number; bytes: number; readsFile?: string },
    options: { started: number; completed: Promise<ResponseSent> },
  ) => void;
  /** The answer to a failed request. */
  answerError: ErrorAnswer;
  /** Notes a client's fetch of a package (prefetch's usage), when recorded. */
  noteFetch?: (target: RequestTarget, status: number) => void;
  /** The clock of the request log (milliseconds). */
  now: () => number;
}

/** Cache misses answered from the parsed head; see the module documentation. */
export class QuickMisses {
  #context: MissContext;
  #dates = new HttpDates();

  /** Misses answered with `context`'s rules. */
  constructor(context: MissContext) {
    this.#context = context;
  }

  /**
   * The answer to a plain GET of a missing package file (its download is started now) or of a cached one not
   * remembered yet (the quick path of hits answers it), or undefined for the full path. `files`: whether the
   * connection can send files with sendfile.
   */
  forHead(head: RequestHead, options: QuickOptions): QuickAnswer | undefined {
    if (!options.files || !isPlainGet(head)) return undefined;
    let cacheControl: string | null = null;
    for (const [name, value] of head.headers) {
      if (name === "via") return undefined;
      // Several lines are one list, as Headers.get() joins them.
      if (name === "cache-control") {
        cacheControl = cacheControl === null ? value : `${cacheControl}, ${value}`;
      }
    }
    if (asksOnlyIfCached(cacheControl)) return undefined;
    const context = this.#context;
    const rawPath = targetPath(head.target);
    let target: RequestTarget;
    try {
      target = parseRequestPath(rawPath, { customRepoNames: context.customRepoNames });
    } catch {
      return undefined; // the full path answers a refused path
    }
    if (target.kind !== "package" && target.kind !== "package_signature") return undefined;
    const found = lookUpPackage(target, context.proxy).type;
    if (found === "hot" || found === "cached") return this.#firstHit(head, rawPath, target, options);
    if (found !== "missing") return undefined;
    const started = context.now();
    context.remember(rawPath, target);
    return { later: this.#answer(target, rawPath, started) };
  }

  /** A cached file's first answer: its path remembered, the quick path of hits answers it (undefined: full path). */
  #firstHit(
    head: RequestHead,
    rawPath: string,
    target: RequestTarget,
    options: QuickOptions,
  ): QuickAnswer | undefined {
    const context = this.#context;
    if (context.hit === undefined) return undefined;
    context.remember(rawPath, target);
    const answer = context.hit(head, options);
    // A client's fetch, as the full path notes it for prefetch.
    if (answer !== undefined) context.noteFetch?.(target, 200);
    return answer;
  }

  /** Starts the download and answers once its head came; never rejects. */
  async #answer(target: RequestTarget, rawPath: string, started: number): Promise<LaterAnswer> {
    const context = this.#context;
    const completion = Promise.withResolvers<ResponseSent>();
    const settled = { started, completed: completion.promise };
    try {
      const download = startMiss(target, context.proxy, undefined);
      const head: DownloadHead = await download.head;
      const whole = wholeMiss(download, head, target, context.proxy);
      if (whole !== undefined) {
        context.noteFetch?.(target, 200);
        const length = whole.file.length;
        context.settle(PLAIN_GET, rawPath, { result: "CACHE MISS", status: 200, bytes: length }, settled);
        return {
          head: responseHead({ code: 200 }, whole.headers, {
            length,
            close: false,
            date: this.#dates.text(),
          }),
          file: whole.file,
          response: whole.response,
          done: completion.resolve,
        };
      }
      const answer: ProxyAnswer = await answerDownload(
        PLAIN_GET,
        target,
        download,
        { head, joined: false },
        context.proxy,
      );
      context.noteFetch?.(target, answer.response.status);
      const { result, bytes, readsFile, response } = answer;
      context.settle(PLAIN_GET, rawPath, { result, status: response.status, bytes, readsFile }, settled);
      return { response: () => response, done: completion.resolve };
    } catch (error) {
      const response = context.answerError(error, { method: "GET", path: rawPath });
      return { response: () => response, done: () => {} };
    }
  }
}
