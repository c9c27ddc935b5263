/**
 * The cache never goes backwards: a file a mirror sends in answer to `If-Modified-Since` that is older than the
 * cached copy (an older `Last-Modified`; mirrors copy the master's timestamps) comes from a lagging mirror.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { MirrorPool } from "../mirrors/mirrors.ts";
import type { FailoverStep, FailureTally } from "./failover.ts";
import type { RejectedCopies } from "./content_check.ts";

const log = getLogger(["flexo", "download"]);

/** Whether two times (milliseconds) fall in the same second: HTTP dates and file times compare by seconds. */
export function sameSecond(a: number, b: number): boolean {
  return Math.floor(a / 1000) === Math.floor(b / 1000);
}

/**
 * Why an answer is an older snapshot than the cached copy, or undefined when it is not (newer, equal, or
 * without a date to compare).
 *
 * @param head The mirror's answer: its `Last-Modified` in milliseconds since the epoch.
 * @param cachedModified The cached copy's time (what `If-Modified-Since` carried).
 */
export function olderSnapshot(
  head: { lastModified?: number },
  cachedModified: number | undefined,
): string | undefined {
  if (cachedModified === undefined || head.lastModified === undefined) return undefined;
  // HTTP dates have whole seconds.
  if (Math.floor(head.lastModified / 1000) >= Math.floor(cachedModified / 1000)) return undefined;
  return `sent a copy from ${new Date(head.lastModified).toUTCString()}, older than the cached one from ` +
    new Date(cachedModified).toUTCString();
}

/**
 * Refuses an answer whose copy is no better than the cached one, before any byte of it is stored: an older
 * snapshot (the mirror is then marked lagging in the pool) or the copy that failed its content check before
 * (a failure of the mirror). Either is counted in the tally, and the next mirror is asked.
 *
 * @returns "next_mirror" when the answer was refused, undefined when it may be stored.
 */
export async function refuseNoBetterCopy(
  head: { response: Response; lastModified?: number; total?: number },
  context: {
    mirror: string;
    upstreamPath: string;
    ifModifiedSince?: number;
    rejected?: RejectedCopies;
    mirrors: MirrorPool;
    tally: FailureTally;
  },
): Promise<FailoverStep | undefined> {
  const { mirror, upstreamPath: path, tally } = context;
  const older = olderSnapshot(head, context.ifModifiedSince);
  const copy = { upstreamPath: path, mirror, lastModified: head.lastModified, total: head.total };
  if (older === undefined && !context.rejected?.has(copy)) return undefined;
  await head.response.body?.cancel().catch(() => {});
  if (older !== undefined) {
    context.mirrors.markLagging(mirror, older);
    log.warn("{mirror} {reason} for {path}; not stored, marked lagging", { mirror, reason: older, path });
  } else {
    const reason = "sent again the copy that failed its check";
    tally.failed(mirror, reason);
    log.warn("{mirror} {reason} for {path}; not stored", { mirror, reason, path });
  }
  if (context.ifModifiedSince !== undefined) tally.noBetterCopy(mirror);
  return "next_mirror";
}
