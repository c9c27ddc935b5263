/**
 * The one way flexo replaces a small file whole (a record, a ranking, a mirror list): the new content goes to a
 * temporary file beside it, which is then renamed over it, so that a reader or a crash finds the old content or
 * the new one, never half of it. Two behaviours, each here once:
 *
 * - **The temporary file never stays behind.** When any step fails (a full disk, a read-only mount, a folder
 *   removed meanwhile), the temporary file is removed before the error is thrown: a disk that is full for a
 *   day must not collect one empty `.tmp` per attempt.
 * - **Durable, when asked** ({@linkcode AtomicWriteOptions.durable}): the file's bytes are flushed to the disk
 *   before the rename, and its folder after it. Without the first, a power loss shortly after the rename can
 *   leave the file empty on ext4 or XFS (the rename reaches the disk before the delayed data); without the
 *   second, the rename itself may be lost. Each flush is a thread's wait for the disk (milliseconds, more on a
 *   busy one), so only writes off the serving path ask for it; the synchronous variant, for the main thread,
 *   has none (see its callers for why they can do without).
 *
 * @module
 */

import { dirname } from "node:path";
import { writeAll } from "./write_all.ts";

/** The end of the default temporary file's name: `FILE.tmp` beside `FILE`. */
export const TEMPORARY_SUFFIX = ".tmp";

/** How {@linkcode writeAtomically} writes. */
export interface AtomicWriteOptions {
  /** The temporary file, in the same folder as the file (default: the file's path and {@linkcode TEMPORARY_SUFFIX}). */
  temporary?: string;
  /** Flush the file before the rename and its folder after it (see the module's text). Default false. */
  durable?: boolean;
  /** The permissions of a new file (before the umask); default 0o666, as `Deno.writeFile`. */
  mode?: number;
}

const encoder = new TextEncoder();

/**
 * Replaces `path` with `data` atomically, making its folder when it is missing. On failure the temporary file
 * is gone and the old content (if any) is in place; the error is thrown as the system gave it.
 */
export async function writeAtomically(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const temporary = options.temporary ?? `${path}${TEMPORARY_SUFFIX}`;
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  const open = () => Deno.open(temporary, { write: true, create: true, truncate: true, mode: options.mode });
  try {
    let file: Deno.FsFile;
    try {
      file = await open();
    } catch (error) {
      // The folder is made only when missing: one operation less for most writes.
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      await Deno.mkdir(dirname(path), { recursive: true });
      file = await open();
    }
    try {
      await writeAll(file, bytes);
      if (options.durable) await file.syncData();
    } finally {
      file.close();
    }
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
  if (options.durable) await syncFolder(dirname(path));
}

/**
 * {@linkcode writeAtomically} on the calling thread, never durable: for the few bytes that must be on disk
 * before the caller goes on, where a flush would hold the main thread for as long as the disk takes.
 */
export function writeAtomicallySync(path: string, data: string, options: { temporary?: string } = {}): void {
  const temporary = options.temporary ?? `${path}${TEMPORARY_SUFFIX}`;
  try {
    try {
      Deno.writeTextFileSync(temporary, data);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      Deno.mkdirSync(dirname(path), { recursive: true });
      Deno.writeTextFileSync(temporary, data);
    }
    Deno.renameSync(temporary, path);
  } catch (error) {
    try {
      Deno.removeSync(temporary);
    } catch {
      // Not there (the open failed), or not removable either: nothing more to do here.
    }
    throw error;
  }
}

/**
 * Flushes a folder's entries (a rename into it) to the disk. Its failure is not the write's: the file is in
 * place, and some file systems refuse to flush a folder.
 */
async function syncFolder(folder: string): Promise<void> {
  try {
    const directory = await Deno.open(folder, { read: true });
    try {
      await directory.sync();
    } finally {
      directory.close();
    }
  } catch {
    // See above.
  }
}
