/**
 * The cache on disk as the rest of flexo sees it: one facade over the parts that each do one job.
 *
 * - `cache_paths.ts`: where complete files and downloads in progress live;
 * - `partial_records.ts`: the record of a download in progress (its one reader and one writer);
 * - `file_memo.ts`: the small files kept in memory and the complete files known to the quick path;
 * - `readers.ts`: the complete files clients are reading, which cleaning spares.
 *
 * The store also moves finished downloads into place and removes files: every removal goes through
 * {@linkcode CacheStore.removeIfPresent}, so that the files it remembers check the disk again. That count is
 * state of one store: two stores in one process (tests, a command) do not see each other's removals.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { dirname } from "node:path";
import { type CachedFile, CachePaths, isMissing } from "./cache_paths.ts";
import { FileMemo, type HotFile } from "./file_memo.ts";
import {
  type PartialMeta,
  type PartialRecordRead,
  readPartialRecord,
  writePartialRecord,
} from "./partial_records.ts";
import { Readers } from "./readers.ts";
import { type PathProbe, statPathProbe } from "./surely_missing.ts";

export type { CachedFile } from "./cache_paths.ts";
export type { HotFile } from "./file_memo.ts";
export type { PartialMeta, PartialRecordRead } from "./partial_records.ts";
export {
  HOT_FILE_MAX_AGE_MS,
  HOT_FILE_MAX_SIZE,
  HOT_FILE_RECHECK_MS,
  HOT_FILES_BUDGET,
  KNOWN_FILES_MAX,
} from "./file_memo.ts";

const log = getLogger(["flexo", "cache"]);

/**
 * The bytes this process may still write on the file system of a path, or undefined when that cannot be told
 * (`libcFreeSpace` of src/server/libc.ts).
 */
export type FreeSpaceProbe = (path: string) => number | undefined;

/** Files on disk, addressed by the safe path segments of a request target. */
export class CacheStore {
  /** The absolute cache directory. */
  readonly root: string;
  #paths: CachePaths;
  #memo: FileMemo;
  #readers = new Readers();
  #surelyMissing: PathProbe;
  #freeSpace?: FreeSpaceProbe;

  /**
   * @param cacheDir The cache directory; made absolute.
   * @param options `now`: the clock in milliseconds for the files kept in memory (default `performance.now`);
   * `surelyMissing`: the cheap "nothing there" check before a synchronous stat or read on a miss (default
   * {@linkcode statPathProbe}; the server passes one made from the C library); `freeSpace`: how much the cache's
   * file system can still take (none: never known, see {@linkcode CacheStore.freeBytes}).
   */
  constructor(
    cacheDir: string,
    options: { now?: () => number; surelyMissing?: PathProbe; freeSpace?: FreeSpaceProbe } = {},
  ) {
    this.#paths = new CachePaths(cacheDir);
    this.root = this.#paths.root;
    this.#surelyMissing = options.surelyMissing ?? statPathProbe;
    this.#freeSpace = options.freeSpace;
    this.#memo = new FileMemo(options.now ?? (() => performance.now()), this.#surelyMissing);
  }

  /** Marks a complete file as being read by a client; call the returned function when the response is sent. */
  beginRead(path: string): () => void {
    return this.#readers.begin(path);
  }

  /** True while a client is reading this complete file. */
  isBeingRead(path: string): boolean {
    return this.#readers.has(path);
  }

  /** Where the complete file lives. */
  finalPath(segments: readonly string[]): string {
    return this.#paths.finalPath(segments);
  }

  /** Where the file being downloaded lives. */
  partialPath(segments: readonly string[]): string {
    return this.#paths.partialPath(segments);
  }

  /** Where the record of a download in progress lives. */
  metaPath(segments: readonly string[]): string {
    return this.#paths.recordPath(segments);
  }

  /**
   * The complete file, or undefined if it is not cached; known to {@linkcode CacheStore.knownFile} from now on.
   * Synchronous, like the other lookups of a file's metadata here (`partialSize`, `readPartialRecord`): the kernel
   * answers from its caches in microseconds, where an asynchronous call hands the work to a thread and back
   * (0.1-0.5 ms each on a busy 2-core machine, several of them on the way to a cache miss's first byte).
   */
  statComplete(segments: readonly string[]): CachedFile | undefined {
    return this.#memo.stat(segments, this.#paths.finalPath(segments));
  }

  /** A small complete file from memory, if it is still the file on disk (see `FileMemo.hot`). */
  hotFile(segments: readonly string[]): HotFile | undefined {
    return this.#memo.hot(segments);
  }

  /**
   * A complete file that {@linkcode CacheStore.statComplete} found before, if it is still the file on disk (see
   * `FileMemo.known`). Lets a cache hit skip the `stat` (and the objects around it) a request would make.
   */
  knownFile(segments: readonly string[]): CachedFile | undefined {
    return this.#memo.known(segments);
  }

  /**
   * Reads a small complete file into memory, so that {@linkcode CacheStore.hotFile} finds it next time;
   * undefined when it is missing, larger than `HOT_FILE_MAX_SIZE`, or changed while being read.
   */
  loadHot(segments: readonly string[]): Promise<HotFile | undefined> {
    return this.#memo.load(segments, this.#paths.finalPath(segments));
  }

  /**
   * The bytes the cache's file system can still take, or undefined when unknown (no probe, or it failed): a
   * download that needs more fails before its clients get a head (see `download/file_writes.ts`).
   */
  freeBytes(): number | undefined {
    return this.#freeSpace?.(this.root);
  }

  /** Size of the partial file on disk (0 when there is none). Synchronous, as `statComplete`. */
  partialSize(segments: readonly string[]): number {
    try {
      return Deno.statSync(this.#paths.partialPath(segments)).size;
    } catch (error) {
      if (isMissing(error)) return 0;
      throw error;
    }
  }

  /** What reading the record of this file's download found (see `partial_records.ts` for the rules). */
  readPartialRecord(segments: readonly string[]): PartialRecordRead {
    return readPartialRecord(this.#paths.recordPath(segments), this.#surelyMissing);
  }

  /**
   * Opens the partial file for appending, creating folders as needed. Opened synchronously, as the metadata is
   * looked up (see `statComplete`): it is on the way to a cache miss's first byte.
   */
  openPartial(segments: readonly string[], options: { truncate: boolean }): Deno.FsFile {
    const path = this.#paths.partialPath(segments);
    const open = () => Deno.openSync(path, { write: true, create: true, truncate: options.truncate });
    let file: Deno.FsFile;
    try {
      file = open();
    } catch (error) {
      // The folders are made only when missing: one operation less before the first byte of most downloads.
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      Deno.mkdirSync(dirname(path), { recursive: true });
      file = open();
    }
    if (!options.truncate) file.seekSync(0, Deno.SeekMode.End);
    return file;
  }

  /**
   * Creates the partial file empty (making folders as needed) and opens it for writing, through a thread: for a
   * download that starts while the mirror is being asked (see `download/partial_file.ts`).
   */
  async createPartial(segments: readonly string[]): Promise<Deno.FsFile> {
    const path = this.#paths.partialPath(segments);
    const options = { write: true, create: true, truncate: true };
    try {
      return await Deno.open(path, options);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      await Deno.mkdir(dirname(path), { recursive: true });
      return await Deno.open(path, options);
    }
  }

  /**
   * Saves what upstream announced, so that a restart can resume this download. Synchronous (see
   * `partial_records.ts`): the record is written between a mirror's answer and the first byte for clients.
   */
  writePartialMeta(segments: readonly string[], meta: PartialMeta): void {
    writePartialRecord(this.#paths.recordPath(segments), meta);
  }

  /**
   * Removes the record of a partial download on the calling thread (where a record could not be written: see
   * `PartialFile.writeRecordIfDue`). A record is not a cached file, so nothing remembered changes.
   *
   * @returns True when no record is there any more (removed, or none was), false when it could not be removed.
   */
  removePartialMetaSync(segments: readonly string[]): boolean {
    try {
      Deno.removeSync(this.#paths.recordPath(segments));
      return true;
    } catch (error) {
      return error instanceof Deno.errors.NotFound;
    }
  }

  /**
   * Makes a finished download visible: moves it into place atomically, sets its modification time to
   * upstream's `Last-Modified`, and removes its record.
   *
   * `file` is the partial file, open and flushed by the caller, who hands it over: its time is set through that
   * descriptor, and it is closed (also when the commit fails) before the move (closed in the cache's tree, it
   * would wake the cache watch). The folder is made only when the move finds none. Every path-based call of Deno
   * checks its permission on the main thread and an asynchronous one hands the call to a thread and back; a
   * commit made five, now one (BENCHMARKS.md, session seven). The move stays on a thread: a rename took 0.2 ms
   * of the kernel's time on ext4 here. `noRecord`: the caller knows that no record of the partial file is on
   * disk, and none is looked for.
   */
  async commit(
    segments: readonly string[],
    options: { lastModified?: number; file?: Deno.FsFile; noRecord?: boolean },
  ): Promise<CachedFile> {
    const from = this.#paths.partialPath(segments);
    const to = this.#paths.finalPath(segments);
    const { file, lastModified } = options;
    this.#memo.forget(segments);
    try {
      if (lastModified !== undefined) {
        // mtime carries upstream's Last-Modified; atime stays "now", since the size limit evicts by last use.
        if (file !== undefined) file.utimeSync(new Date(), new Date(lastModified));
        else await Deno.utime(from, new Date(), new Date(lastModified));
      }
    } finally {
      // Closed whatever happens: the caller has handed it over.
      file?.close();
    }
    try {
      await Deno.rename(from, to);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      // The folder is not there yet (or was removed as empty): made, and the move tried once more.
      await Deno.mkdir(dirname(to), { recursive: true });
      await Deno.rename(from, to);
    }
    // A small download never writes a record: no removal (a thread's round trip and a NotFound error), and no
    // reason for every hot and known file to check the disk again at its next hit. With `noRecord` (the
    // download looked at its start and wrote none) not even the look: a cold one, 35 us of the main thread.
    const record = this.#paths.recordPath(segments);
    if (!options.noRecord && !this.#surelyMissing(record)) await this.removeIfPresent(record);
    const removalsBefore = this.#memo.removals;
    // After the move, which changed the file's ctime (remembered to tell whether the file is still the same
    // one); answered from the inode cache.
    const info = Deno.statSync(to);
    // Known from now on: the next request for it can be answered without routing (see quick_answers.ts).
    return this.#memo.remember(segments, to, info, removalsBefore);
  }

  /** Removes a partial download and its record. */
  async discardPartial(segments: readonly string[]): Promise<void> {
    await this.removeIfPresent(this.#paths.partialPath(segments));
    await this.removeIfPresent(this.#paths.recordPath(segments));
  }

  /**
   * Removes a file (or an empty folder) of this cache, ignoring that it does not exist. The files this store
   * remembers check the disk again at their next use. Every removal in the cache directory goes through here.
   *
   * @returns True when this call removed it, false when nothing was there (another process removed it first):
   * only a true removal may be counted off the cache's usage.
   */
  async removeIfPresent(path: string): Promise<boolean> {
    try {
      await Deno.remove(path);
      return true;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      return false;
    } finally {
      this.#memo.noteRemoval();
    }
  }
}

/**
 * The record of an earlier download, when a valid one was left behind (`store.readPartialRecord()`); an invalid
 * one is logged with what was wrong and means the download starts over.
 */
export function usableRecord(read: PartialRecordRead): PartialMeta | undefined {
  if (read.kind === "found") return read.meta;
  if (read.kind === "invalid") log.warn("{message}", { message: read.message });
  return undefined;
}
