/**
 * What a download's failed writes mean: a full disk told from other errors, and the error a download ends with.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { CacheStore } from "../cache/cache_store.ts";
import { HttpError } from "../http/http_error.ts";

const log = getLogger(["flexo", "download"]);

/** True for the errors of a file system that has no space (or quota) left. */
export function isDiskFull(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

/** The status of a download that found the cache's disk full: 507 Insufficient Storage. */
export const DISK_FULL_STATUS = 507;

/** Logs that a download found the cache's disk full, and gives the error its clients get (507). */
export function diskFullError(dir: string, path: string, cause: unknown): HttpError {
  log.error("disk full: {dir}: could not store {path}; free space there or lower max_cache_size", {
    dir,
    path,
  });
  return new HttpError(
    DISK_FULL_STATUS,
    `disk full: no space left in the cache directory ${dir} to store ${path}`,
    {
      cause,
    },
  );
}

/**
 * The error a download ends with after `error` was thrown while it ran: an {@linkcode HttpError} as it is; a
 * full disk logged and answered 507, its partial file removed (giving the space back for other downloads);
 * anything else logged.
 */
export async function runError(
  error: unknown,
  where: { store: CacheStore; segments: readonly string[]; path: string },
): Promise<Error> {
  if (error instanceof HttpError) return error;
  const { store, path } = where;
  if (isDiskFull(error)) {
    // The partial file cannot be finished, and removing it gives the space back for other downloads.
    await store.discardPartial(where.segments).catch(() => {});
    return diskFullError(store.root, path, error);
  }
  const message = error instanceof Error ? error.message : String(error);
  log.error("Download of {path} failed: {message}", { path, message });
  return error instanceof Error ? error : new Error(message);
}

/**
 * Fails a download whose `needed` bytes (those still to come) do not fit on the cache's file system, before its
 * clients get a head: they get the clear 507 of {@linkcode diskFullError} (and a database request the cached
 * copy, stale), not a `200` that breaks off when a write finds the disk full. The partial file is removed first,
 * giving its space back. Nothing is checked when the free space is unknown (see `CacheStore.freeBytes`).
 */
export async function ensureRoom(
  needed: number,
  partial: { discard(): Promise<void> },
  where: { store: CacheStore; upstreamPath: string },
): Promise<void> {
  const free = needed > 0 ? where.store.freeBytes() : undefined;
  if (free === undefined || needed <= free) return;
  await partial.discard().catch(() => {});
  throw diskFullError(
    where.store.root,
    where.upstreamPath,
    new Error(`${needed} bytes needed, ${free} free`),
  );
}
