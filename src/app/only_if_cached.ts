/**
 * `Cache-Control: only-if-cached` (RFC 9111 section 5.2.1.7): the client (a cache peer, or a lower tier) wants the file
 * only if this node has it, and never a request to a mirror on its behalf. So the answer is the cached file as it
 * is, databases included (no revalidation upstream: that would contact a mirror), or a 504 at once. pacman never
 * sends it, so pacman clients (also with flexo as a `CacheServer`) are served and fetched for as always.
 *
 * @module
 */

import type { CacheStore } from "../cache/cache_store.ts";
import type { RequestTarget } from "../repo/request_path.ts";
import { fileHeadersFor, serveCachedFile, type Served } from "./responses.ts";
import type { CacheAnswer } from "./stale.ts";

/**
 * The 504 of an only-if-cached request for a file this node lacks: an answer, not an error. Every miss of a node
 * of a cluster asks each peer so, and a peer without the file is no failure: it is counted and logged as
 * `NOT CACHED`, never as an upstream error (a warning, a recent error on the status page).
 */
export type NotCachedAnswer = Served & { result: "NOT CACHED" };

/** The `Cache-Status` (RFC 9211) of an only-if-cached answer: a hit, not checked with any mirror. */
export const ONLY_IF_CACHED_STATUS = "flexo; hit; detail=only-if-cached";

/** Whether a `Cache-Control` header value asks for only-if-cached. */
export function asksOnlyIfCached(cacheControl: string | null): boolean {
  return cacheControl !== null &&
    cacheControl.split(",").some((directive) => directive.trim().toLowerCase() === "only-if-cached");
}

/**
 * The answer to an only-if-cached request: `target`'s complete cached file, served without asking a mirror
 * (a database as it was last stored), or a 504 ({@linkcode NotCachedAnswer}) when the cache lacks it; files
 * that are never cached (listings, other files) are always a 504.
 */
export function serveOnlyIfCached(
  req: Request,
  target: RequestTarget,
  store: CacheStore,
): CacheAnswer | NotCachedAnswer {
  const cached = target.kind === "other" || target.cacheSegments.length === 0
    ? undefined
    : store.statComplete(target.cacheSegments);
  if (cached === undefined) {
    const text =
      "Not in this node's cache, and the request asked for only-if-cached: ask a mirror or another node\n";
    const body = new TextEncoder().encode(text);
    const headers = { "Content-Type": "text/plain; charset=utf-8", "Content-Length": String(body.length) };
    return {
      response: new Response(req.method === "HEAD" ? null : body, { status: 504, headers }),
      bytes: req.method === "HEAD" ? 0 : body.length,
      result: "NOT CACHED",
    };
  }
  const served = serveCachedFile(req, cached, { origin: "Cache", ...fileHeadersFor(target) });
  served.response.headers.set("Cache-Status", ONLY_IF_CACHED_STATUS);
  return { ...served, result: "CACHE HIT" };
}
