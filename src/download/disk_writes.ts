/**
 * Writing a download's bytes to its partial file, and telling a full disk from other write errors.
 *
 * @module
 */

/** True for the errors of a file system that has no space (or quota) left. */
export function isDiskFull(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

/** Writes the whole chunk to the file. */
export async function writeAll(file: Deno.FsFile, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) offset += await file.write(chunk.subarray(offset));
}

/** Writes the whole chunk to the file, synchronously. */
export function writeAllSync(file: Deno.FsFile, chunk: Uint8Array): void {
  let offset = 0;
  while (offset < chunk.byteLength) offset += file.writeSync(chunk.subarray(offset));
}
