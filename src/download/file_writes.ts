/**
 * Writing a download's bytes to its partial file, and telling a full disk from other write errors.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { HttpError } from "../http/http_error.ts";

const log = getLogger(["flexo", "download"]);

/** True for the errors of a file system that has no space (or quota) left. */
export function isDiskFull(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

/** Logs that a download found the cache's disk full, and gives the error its clients get (507). */
export function diskFullError(dir: string, path: string, cause: unknown): HttpError {
  log.error("disk full: {dir}: could not store {path}; free space there or lower max_cache_size", {
    dir,
    path,
  });
  return new HttpError(507, `disk full: no space left in the cache directory ${dir} to store ${path}`, {
    cause,
  });
}

/** Writes all of `chunk` to `file`. */
export async function writeAll(file: Deno.FsFile, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) offset += await file.write(chunk.subarray(offset));
}

/** Writes all of `chunk` to `file` at once, on the event loop. */
export function writeAllSync(file: Deno.FsFile, chunk: Uint8Array): void {
  let offset = 0;
  while (offset < chunk.byteLength) offset += file.writeSync(chunk.subarray(offset));
}
