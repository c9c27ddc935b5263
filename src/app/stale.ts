/**
 * Answers when the mirrors cannot: stale-if-error (RFC 5861) for databases, and `offline = true`.
 *
 * A database is revalidated upstream on every request. When every mirror fails (refused, timeout, 5xx, a file
 * that does not verify), or none has answered within {@linkcode STALE_DEADLINE_MS}, the last good copy in the
 * cache is the answer -- `200`, or `304` to a matching `If-Modified-Since` -- marked with
 * `Cache-Status: flexo; hit; detail=stale` (RFC 9211). pacman then goes on with what it has instead of failing
 * `-Sy`. One warning is logged when such an outage begins and one line when a mirror answers again. A newer
 * database that the cache cannot store (its disk full, its directory read-only) is answered the same way, but is
 * no outage.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { CachedFile, CacheStore } from "../cache/cache_store.ts";
import { HttpError } from "../http/http_error.ts";
import { CacheStorageError } from "../download/file_writes.ts";
import type { Timers } from "../download/transfer.ts";
import { fileHeadersFor, serveCachedFile, type Served } from "./responses.ts";
import type { RequestTarget } from "../repo/request_path.ts";
import { isPaired, signedDatabase } from "./database_signature.ts";

const log = getLogger(["flexo", "upstream"]);

/**
 * How long a database request waits for the mirrors before the cached copy answers. pacman gives up after 10 s
 * without a byte; this leaves it a wide margin.
 */
export const STALE_DEADLINE_MS = 6_000;

/** The `Cache-Status` of an answer from the cache because the mirrors failed. */
export const STALE_CACHE_STATUS = "flexo; hit; detail=stale";

/** Stale-if-error's settings and state, part of the proxy's context. */
export interface StaleContext {
  /** How long a database request waits for the mirrors before the cached copy answers. */
  deadlineMs: number;
  /** Timers for the deadline, injected so that tests decide when it runs out. */
  timers: Timers;
  outage: Outage;
}

/** What these answers need of the proxy's context. */
interface CacheContext {
  store: CacheStore;
  stale?: StaleContext;
}

/** An answer from the cache because the mirrors could not (or may not) be asked. */
export type CacheAnswer = Served & { result: "STALE" | "CACHE HIT" };

/** Whether the mirrors are failing, so that an outage is logged once, not once per request. */
export class Outage {
  #since: number | undefined;
  #now: () => number;

  /** An outage tracker on the clock `now` (milliseconds since the epoch). */
  constructor(now: () => number) {
    this.#now = now;
  }

  /** When the current outage began, or undefined while the mirrors answer. */
  get since(): number | undefined {
    return this.#since;
  }

  /** A request was answered from the cache because the mirrors failed with `reason`. */
  failed(reason: string): void {
    if (this.#since !== undefined) return;
    this.#since = this.#now();
    log.warn("The mirrors are failing ({reason}); serving cached databases until one answers again", {
      reason,
    });
  }

  /** A mirror answered. */
  answered(): void {
    if (this.#since === undefined) return;
    log.info("A mirror answers again after {seconds} s; databases are fresh again", {
      seconds: Math.round((this.#now() - this.#since) / 1000),
    });
    this.#since = undefined;
  }
}

/** True for the errors that mean "the mirrors failed", as opposed to "the file does not exist" or a bad request. */
function isUpstreamFailure(error: unknown): error is HttpError {
  return error instanceof HttpError && error.status >= 500;
}

/**
 * The answer to a database request: `serve()` (which revalidates upstream), or the cached copy when it fails or
 * takes longer than `deadlineMs`. Without a cached copy, `serve()` is the only answer.
 */
export async function serveDatabaseOrStale<T extends Served>(
  req: Request,
  target: RequestTarget,
  ctx: CacheContext,
  serve: () => Promise<T>,
): Promise<T | CacheAnswer> {
  const stale = ctx.stale;
  if (stale === undefined || ctx.store.statComplete(target.cacheSegments) === undefined) return await serve();
  type First = { type: "fresh"; answer: T } | { type: "error"; error: unknown } | { type: "late" };
  const fresh = serve();
  let timer: unknown;
  const late = new Promise<First>((resolve) => {
    timer = stale.timers.setTimer(() => resolve({ type: "late" }), stale.deadlineMs);
  });
  const first = await Promise.race([
    fresh.then((answer): First => ({ type: "fresh", answer }), (error): First => ({ type: "error", error })),
    late,
  ]);
  stale.timers.clearTimer(timer);
  if (first.type === "fresh") {
    stale.outage.answered();
    return first.answer;
  }
  if (first.type === "error" && !isUpstreamFailure(first.error)) throw first.error;
  if (first.type === "late") {
    // The revalidation goes on (its download may still commit a newer database); its answer is not needed.
    fresh.then((answer) => answer.response.body?.cancel(), () => {});
  }
  const cached = ctx.store.statComplete(target.cacheSegments);
  if (cached === undefined) {
    if (first.type === "error") throw first.error;
    return await fresh;
  }
  // A cache that cannot store the file (logged where it was found) is no outage: the mirrors answered.
  if (!(first.type === "error" && first.error instanceof CacheStorageError)) {
    stale.outage.failed(
      first.type === "error"
        ? (first.error as HttpError).message
        : `no mirror answered within ${stale.deadlineMs} ms`,
    );
  }
  return staleAnswer(req, target, cached);
}

/** The cached copy of `target` as a stale answer. */
function staleAnswer(req: Request, target: RequestTarget, cached: CachedFile): CacheAnswer {
  const served = serveCachedFile(req, cached, { origin: "Cache", ...fileHeadersFor(target) });
  served.response.headers.set("Cache-Status", STALE_CACHE_STATUS);
  return { ...served, result: "STALE" };
}

/**
 * The answer under `offline = true`: what the cache has (databases as they are, marked stale), and for anything
 * else a 503 at once that says why.
 */
export function serveOffline(req: Request, target: RequestTarget, ctx: CacheContext): CacheAnswer {
  const cached = ctx.store.statComplete(target.cacheSegments);
  const unpaired = target.kind === "database_signature" &&
    !pairedWithCachedDatabase(cached, ctx.store.statComplete(signedDatabase(target).cacheSegments));
  if (cached === undefined || target.kind === "other" || unpaired) {
    throw new HttpError(
      503,
      `flexo is offline (offline = true): it does not contact mirrors, and ${target.fileName} is not in its ` +
        (unpaired ? "cache for the cached database" : "cache") + "; set offline = false to fetch it",
    );
  }
  if (target.kind === "database" || target.kind === "database_signature") {
    return staleAnswer(req, target, cached);
  }
  const served = serveCachedFile(req, cached, { origin: "Cache", ...fileHeadersFor(target) });
  return { ...served, result: "CACHE HIT" };
}

function pairedWithCachedDatabase(sig: CachedFile | undefined, db: CachedFile | undefined): boolean {
  return db !== undefined && isPaired(sig, db);
}
