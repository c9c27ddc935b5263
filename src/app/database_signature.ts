/**
 * A database's signature (`core.db.sig`) is served as a pair with the database it signs: fetched from the
 * mirror the cached database snapshot came from (or that last answered 304 to it), never from whichever
 * mirror answers first. Otherwise, while mirrors sync, a database from one mirror meets a signature from
 * another, and pacman reports "signature is invalid".
 *
 * The pair's mark: a cached signature carries its database's date (the file time, from the database's
 * `Last-Modified`), so a signature cached for an older snapshot is never served with a newer database. A
 * signature the repository does not have answers 404 from that mirror at once.
 *
 * @module
 */

import type { CachedFile, CacheStore } from "../cache/cache_store.ts";
import type { DownloadManager } from "../download/download_manager.ts";
import { sameSecond } from "../download/snapshot_order.ts";
import { HttpError } from "../http/http_error.ts";
import { redactUrl } from "../redact_url.ts";
import type { RequestTarget } from "../repo/request_path.ts";
import { fileHeadersFor, serveCachedFile, type Served, serveDownload } from "./responses.ts";

const SIG = ".sig";

/** What serving a signature needs of the proxy's context. */
export interface SignatureContext {
  store: CacheStore;
  downloads: DownloadManager;
  /** Counts body bytes sent to clients from upstream as they flow. */
  onUpstreamBytes?: (bytes: number) => void;
}

/** How a signature was answered. */
export type SignatureAnswer = Served & { result: "CACHE HIT" | "CACHE MISS" | "JOINED DOWNLOAD" };

/** The database whose signature `target` (of kind `database_signature`) is. */
export function signedDatabase(target: RequestTarget): RequestTarget {
  const strip = (s: string) => s.endsWith(SIG) ? s.slice(0, -SIG.length) : s;
  return {
    ...target,
    kind: "database",
    cacheSegments: [...target.cacheSegments.slice(0, -1), strip(target.cacheSegments.at(-1)!)],
    upstreamPath: strip(target.upstreamPath),
    fileName: strip(target.fileName),
  };
}

/** Whether the cached signature `sig` belongs to the cached database `db` (it carries the database's date). */
export function isPaired(sig: CachedFile | undefined, db: CachedFile): boolean {
  return sig !== undefined && sameSecond(sig.mtime.getTime(), db.mtime.getTime());
}

/** Headers that would make the answer depend on dates or parts of a signature: see below. */
const CONDITIONAL = [
  "if-modified-since",
  "if-none-match",
  "if-match",
  "if-unmodified-since",
  "if-range",
  "range",
];

/**
 * `req` without conditionals and Range. A cached signature carries its database's date, not its own, so a
 * client's `If-Modified-Since` (pacman sends its copy's date) could be answered 304 while it holds the
 * signature of another snapshot. A signature is a few hundred bytes: it is always sent whole.
 */
function wholeAndUnconditional(req: Request): Request {
  const headers = new Headers(req.headers);
  if (!CONDITIONAL.some((name) => headers.has(name))) return req;
  for (const name of CONDITIONAL) headers.delete(name);
  return new Request(req.url, { method: req.method, headers });
}

/**
 * Answers a request for a database's signature: the cached one paired with the cached database, else the one
 * fetched for it from the mirror that holds that snapshot. Without a cached database there is nothing to pair
 * with, and `passThrough()` answers (uncached).
 */
export async function serveDatabaseSignature<T extends Served>(
  request: Request,
  target: RequestTarget,
  ctx: SignatureContext,
  passThrough: () => Promise<T>,
): Promise<T | SignatureAnswer> {
  const req = wholeAndUnconditional(request);
  const database = signedDatabase(target);
  // pacman asks for the signature right after the database: the pair follows the database it was just sent.
  await ctx.downloads.active(database)?.finished;
  const db = ctx.store.statComplete(database.cacheSegments);
  if (db === undefined) return await passThrough();
  const described = fileHeadersFor(target);
  const cached = ctx.store.statComplete(target.cacheSegments);
  if (isPaired(cached, db)) {
    return {
      ...(await serveCachedFile(req, cached!, { origin: "Cache", ...described })),
      result: "CACHE HIT",
    };
  }
  const dated = db.mtime.getTime();
  const mirror = ctx.downloads.databaseSource(database, dated);
  if (mirror === undefined) {
    throw new HttpError(
      502,
      `No mirror is known to hold the copy of ${database.fileName} that flexo serves (from ` +
        `${db.mtime.toUTCString()}), so there is no signature known to match it; run pacman -Sy again later`,
    );
  }
  let running = ctx.downloads.active(target);
  // One for another snapshot (the database changed while its signature downloaded) is not joined: its bytes
  // would be that snapshot's signature, which pacman finds invalid for this database.
  while (running !== undefined && !sameSecond(running.pairedWith ?? Number.NaN, dated)) {
    await running.finished;
    running = ctx.downloads.active(target);
  }
  const download = running ?? ctx.downloads.obtain(target, {
    from: mirror,
    pairedWith: dated,
    // Carried upstream like any download's, so that tiers pointing at each other see the loop.
    via: req.headers.get("via") ?? undefined,
  });
  let head;
  try {
    head = await download.head;
  } catch (error) {
    if (!(error instanceof HttpError) || error.status === 404) throw error;
    throw new HttpError(
      error.status,
      `The signature of ${database.fileName} must come from ${redactUrl(mirror)}, which sent that copy of ` +
        `the database, and it failed: ${error.message}`,
      { cause: error },
    );
  }
  if (download.state === "complete" && download.file && isPaired(download.file, db)) {
    return {
      ...(await serveCachedFile(req, download.file, { origin: "Cache", ...described })),
      result: "CACHE HIT",
    };
  }
  // Dated like the database, as the cached pair is (not with the mirror's date of the .sig file): pacman gives
  // its copy the Last-Modified it got and asks with it next time, and curl drops a body whose Last-Modified is not
  // newer than that, keeping the old signature of the older database.
  const paired = { ...head, lastModified: dated };
  // A client that shares a running download is counted as joined: its bytes crossed the internet once.
  const joined = running !== undefined;
  return {
    ...serveDownload(req, download, {
      head: paired,
      ...described,
      onBytes: joined ? undefined : ctx.onUpstreamBytes,
    }),
    result: joined ? "JOINED DOWNLOAD" : "CACHE MISS",
  };
}
