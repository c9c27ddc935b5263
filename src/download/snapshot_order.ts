/**
 * The cache never goes backwards: a file a mirror sends in answer to `If-Modified-Since` that is older than the
 * cached copy (an older `Last-Modified`; mirrors copy the master's timestamps) comes from a lagging mirror.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { MirrorPool } from "../mirrors/mirrors.ts";
import type { FailoverStep, FailureTally } from "./failover.ts";

const log = getLogger(["flexo", "download"]);

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
 * Refuses an answer that is an older snapshot than the cached copy: its body is not read, the mirror is marked
 * lagging in the pool and counted in the tally, and the next mirror is asked.
 */
export async function refuseOlderSnapshot(
  head: { response: Response },
  context: { mirror: string; reason: string; mirrors: MirrorPool; tally: FailureTally },
): Promise<FailoverStep> {
  const { mirror, reason } = context;
  await head.response.body?.cancel().catch(() => {});
  context.mirrors.markLagging(mirror, reason);
  context.tally.lagging(mirror);
  log.warn("{mirror} {reason}; not stored, marked lagging, asking the next mirror", { mirror, reason });
  return "next_mirror";
}
