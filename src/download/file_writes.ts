/**
 * What a download's failed writes mean: a full disk and an unusable cache directory told from other errors, and
 * the error a download ends with.
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

/**
 * The error of a download that could not store its file on the cache's side, the mirror having answered: the
 * disk full (`disk_full`, 507) or a cache directory that cannot take files (`unusable`, 503: read-only or lost
 * mount, permissions, I/O errors). Its clients get it as an {@linkcode HttpError}; stale-if-error answers a
 * database request with the cached copy, but counts no mirror outage.
 */
export class CacheStorageError extends HttpError {
  /** What was wrong with the cache's storage. */
  readonly kind: "disk_full" | "unusable";

  /** @param kind What was wrong. @param message What, where, and what to do. @param cause The system's error. */
  constructor(kind: "disk_full" | "unusable", message: string, cause: unknown) {
    super(kind === "disk_full" ? 507 : 503, message, { cause });
    this.kind = kind;
  }
}

/** Error codes of a cache directory that cannot take files until someone fixes it (not a full disk). */
const UNUSABLE_CODES: ReadonlySet<string> = new Set([
  "EROFS",
  "EACCES",
  "EPERM",
  "ENOTDIR",
  "EIO",
  "ELOOP",
  "ENAMETOOLONG",
]);

/** True for the errors of a cache directory that cannot take files (see {@linkcode CacheStorageError}). */
export function isCacheUnusable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && UNUSABLE_CODES.has(code);
}

/** Logs that a download found the cache's disk full, and gives the error its clients get (507). */
export function diskFullError(dir: string, path: string, cause: unknown): CacheStorageError {
  log.error("disk full: {dir}: could not store {path}; free space there or lower max_cache_size", {
    dir,
    path,
  });
  return new CacheStorageError(
    "disk_full",
    `disk full: no space left in the cache directory ${dir} to store ${path}`,
    cause,
  );
}

/** Logs that the cache directory cannot take a download's file, and gives the error its clients get (503). */
function unusableError(dir: string, path: string, cause: unknown): CacheStorageError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  log.error(
    "cache directory unusable: {dir}: could not store {path} ({reason}); check its mount, permissions and disk",
    {
      dir,
      path,
      reason,
    },
  );
  return new CacheStorageError(
    "unusable",
    `the cache directory ${dir} cannot store ${path} (${reason}): check its mount, permissions and disk`,
    cause,
  );
}

/**
 * The error a download ends with after `error` was thrown while it ran: an {@linkcode HttpError} as it is; a
 * full disk logged and answered 507, its partial file removed (giving the space back for other downloads); a
 * cache directory that cannot take files logged and answered 503; anything else logged.
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
  if (isCacheUnusable(error)) return unusableError(store.root, path, error);
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
