/**
 * `Cache-Control: only-if-cached` (RFC 9111 §5.2.1.7): the client (a cache peer) wants the file only if this node
 * has it, and never a fetch from a mirror on its behalf. Cached files are served as usual; anything else is
 * answered 504 at once. pacman never sends it, so pacman clients (also with flexo as a `CacheServer`) are served
 * and fetched for as always.
 *
 * @module
 */

import { HttpError } from "../http/http_error.ts";
import type { RequestTarget } from "./request_path.ts";

/** Whether a `Cache-Control` header value asks for only-if-cached. */
export function asksOnlyIfCached(cacheControl: string | null): boolean {
  return cacheControl !== null &&
    cacheControl.split(",").some((directive) => directive.trim().toLowerCase() === "only-if-cached");
}

/**
 * Throws a 504 HttpError when the request asks for only-if-cached and `target` is not a complete file in the
 * cache (`isCached`); files that are never cached (listings, other files) are always a 504 then.
 */
export async function refuseUncached(
  cacheControl: string | null,
  target: RequestTarget,
  isCached: (segments: readonly string[]) => boolean | Promise<boolean>,
): Promise<void> {
  if (!asksOnlyIfCached(cacheControl)) return;
  if (target.kind !== "other" && target.cacheSegments.length > 0 && await isCached(target.cacheSegments)) {
    return;
  }
  throw new HttpError(
    504,
    `Not in this node's cache, and the request asked for only-if-cached: ask a mirror or another node`,
  );
}
