/**
 * What the quick path remembers of complete files: small "hot" files with their bytes, and "known" files with
 * what a `stat` found, so that a cache hit skips the work a request would otherwise make. Every entry keeps
 * what identified the file on disk (inode, size, modification and change time) and is compared with the disk
 * at most every {@linkcode HOT_FILE_RECHECK_MS}, and at its next use after the store removed any file.
 *
 * Entries are flat (numbers and the few objects a caller gets back): a cache may hold many files, and what is
 * kept per file should stay small.
 *
 * @module
 */

import { type CachedFile, isMissing } from "./cache_paths.ts";
import { type PathProbe, statPathProbe } from "./surely_missing.ts";

/** A complete file in the cache whose bytes are held in memory. */
export interface HotFile extends CachedFile {
  bytes: Uint8Array<ArrayBuffer>;
}

/** Complete files up to this size are kept in memory once served (signatures, small packages). */
export const HOT_FILE_MAX_SIZE = 64 * 1024;

/** At most this many bytes of files are kept in memory; the least recently served go first. */
export const HOT_FILES_BUDGET = 8 * 1024 * 1024;

/**
 * A file in memory is read from disk again after this long, so that its access time (which cleaning takes as
 * its last use) keeps moving while it is served from memory.
 */
export const HOT_FILE_MAX_AGE_MS = 10 * 60 * 1000;

/**
 * A file in memory is compared with the file on disk (one `stat`) at most this often, and at its next use after
 * the store removed any file (which is how cleaning removes files). A change made on disk by another program
 * (say, a file deleted or replaced by hand) is seen within this time; until then the bytes served are the
 * complete file as it was, as for a read that began just before the change.
 */
export const HOT_FILE_RECHECK_MS = 1000;

/** At most this many complete files are remembered as known; the oldest go first. */
export const KNOWN_FILES_MAX = 4096;

/** A complete file and what identified it on disk when it was seen. */
interface KnownEntry extends CachedFile {
  /** When the file on disk was last compared with this entry, and the removal count then. */
  checkedAt: number;
  removalsSeen: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number | null;
}

/** A file in memory and what identified it on disk when it was read. */
interface HotEntry extends HotFile, KnownEntry {
  loadedAt: number;
  /** When it was last moved to the end of the least-recently-served order. */
  movedAt: number;
}

/** The hot and known files of one store, and the count of the removals that store made. */
export class FileMemo {
  /** Small files in memory by segments joined with "/", least recently served first. */
  #hot = new Map<string, HotEntry>();
  #hotBytes = 0;
  /** The key of a segments array, for arrays that are asked for again (the app keeps known targets). */
  #keys = new WeakMap<readonly string[], string>();
  /** Complete files seen by `stat()`, by segments joined with "/", oldest first. */
  #known = new Map<string, KnownEntry>();
  /** Reads of small files into memory that are running, by key (see {@linkcode FileMemo.load}). */
  #loading = new Map<string, Promise<HotFile | undefined>>();
  /** Files the store removed: a change makes every entry check the disk at its next use. */
  #removals = 0;
  #now: () => number;
  #surelyMissing: PathProbe;

  /**
   * @param now The clock in milliseconds (monotonic; the store passes `performance.now` by default).
   * @param surelyMissing The cheap "nothing there" check before a stat (default {@linkcode statPathProbe}).
   */
  constructor(now: () => number, surelyMissing: PathProbe = statPathProbe) {
    this.#now = now;
    this.#surelyMissing = surelyMissing;
  }

  /** How many removals the store has noted. */
  get removals(): number {
    return this.#removals;
  }

  /** Notes that the store removed a file (or tried to): every entry checks the disk at its next use. */
  noteRemoval(): void {
    this.#removals++;
  }

  /**
   * The complete file at `path`, or undefined if there is none, remembered as known. Asks the kernel
   * synchronously: answered from its caches in microseconds, where an asynchronous call hands the work to a
   * thread and back (0.1-0.5 ms each on a busy 2-core machine, several of them on the way to a cache miss's
   * first byte).
   */
  stat(segments: readonly string[], path: string): CachedFile | undefined {
    const removalsBefore = this.#removals;
    // A miss (the usual answer when this is asked) without the failed stat's error object.
    if (this.#surelyMissing(path)) return undefined;
    try {
      const info = Deno.statSync(path);
      if (!info.isFile) return undefined;
      return this.remember(segments, path, info, removalsBefore);
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  /**
   * Remembers a complete file that `info` describes as known.
   *
   * @param removalsBefore {@linkcode FileMemo.removals} before `info` was read.
   */
  remember(
    segments: readonly string[],
    path: string,
    info: Deno.FileInfo,
    removalsBefore: number,
  ): CachedFile {
    const mtime = info.mtime ?? new Date(0);
    const key = this.#keyOf(segments);
    this.#known.delete(key);
    if (this.#known.size >= KNOWN_FILES_MAX) this.#known.delete(this.#known.keys().next().value!);
    this.#known.set(key, {
      path,
      size: info.size,
      mtime,
      checkedAt: this.#now(),
      removalsSeen: removalsBefore,
      mtimeMs: mtime.getTime(),
      ctimeMs: info.ctime?.getTime() ?? 0,
      ino: info.ino,
    });
    return { path, size: info.size, mtime };
  }

  /**
   * A small complete file from memory, if it was read from disk in the last {@linkcode HOT_FILE_MAX_AGE_MS} and
   * the file on disk is still the same one (same inode, size, modification and change time). That is checked with
   * a synchronous `stat` (answered from the kernel's inode cache in microseconds, while an asynchronous one costs
   * a hand-off to a thread), at most every {@linkcode HOT_FILE_RECHECK_MS} and after any removal: a `stat` on
   * every hit took a fifth of the time it takes to answer one.
   */
  hot(segments: readonly string[]): HotFile | undefined {
    if (this.#hot.size === 0) return undefined;
    const key = this.#keyOf(segments);
    const entry = this.#hot.get(key);
    if (entry === undefined) return undefined;
    const now = this.#now();
    const age = now - entry.loadedAt;
    if (age > HOT_FILE_MAX_AGE_MS || age < 0 || !this.#stillOnDisk(entry, now)) {
      this.#forgetHot(key);
      return undefined;
    }
    // To the end of the least-recently-served order, at most once a second: moving it costs the map a new entry
    // (and now and then a new table), which a hit many times a second should not pay each time.
    if (now - entry.movedAt >= HOT_FILE_RECHECK_MS || now < entry.movedAt) {
      this.#hot.delete(key);
      this.#hot.set(key, entry);
      entry.movedAt = now;
    }
    return entry;
  }

  /**
   * A complete file that {@linkcode FileMemo.stat} found before (the last {@linkcode KNOWN_FILES_MAX} of them),
   * if the file on disk is still the same one; checked as for {@linkcode FileMemo.hot}.
   */
  known(segments: readonly string[]): CachedFile | undefined {
    if (this.#known.size === 0) return undefined;
    const key = this.#keyOf(segments);
    const entry = this.#known.get(key);
    if (entry === undefined) return undefined;
    if (!this.#stillOnDisk(entry, this.#now())) {
      this.#known.delete(key);
      return undefined;
    }
    return entry;
  }

  /**
   * Reads the complete file at `path` into memory if it has at most {@linkcode HOT_FILE_MAX_SIZE} bytes, so
   * that {@linkcode FileMemo.hot} finds it next time; undefined when it is missing, larger, or shorter than its
   * `stat` said. Calls for a file whose read is running get that read's outcome.
   */
  load(segments: readonly string[], path: string): Promise<HotFile | undefined> {
    // Hits of a file not in memory yet come many at once: they share one read.
    const key = segments.join("/");
    const running = this.#loading.get(key);
    if (running !== undefined) return running;
    const loading = this.#load(key, path).finally(() => this.#loading.delete(key));
    this.#loading.set(key, loading);
    return loading;
  }

  async #load(key: string, path: string): Promise<HotFile | undefined> {
    // A removal while the file is being read makes its first use check the disk again.
    const removalsBefore = this.#removals;
    const read = await readSmallFile(path, HOT_FILE_MAX_SIZE);
    if (read === undefined) return undefined;
    const { info, bytes } = read;
    const mtime = info.mtime ?? new Date(0);
    const now = this.#now();
    const entry: HotEntry = {
      path,
      size: info.size,
      mtime,
      bytes,
      loadedAt: now,
      movedAt: now,
      checkedAt: now,
      removalsSeen: removalsBefore,
      mtimeMs: mtime.getTime(),
      ctimeMs: info.ctime?.getTime() ?? 0,
      ino: info.ino,
    };
    this.#forgetHot(key);
    this.#hot.set(key, entry);
    this.#hotBytes += entry.size;
    for (const [oldest] of this.#hot) {
      if (this.#hotBytes <= HOT_FILES_BUDGET) break;
      this.#forgetHot(oldest);
    }
    return entry;
  }

  /** Forgets the file of `segments`, hot and known (it is about to be replaced). */
  forget(segments: readonly string[]): void {
    const key = this.#keyOf(segments);
    this.#forgetHot(key);
    this.#known.delete(key);
  }

  /** Whether the file of `entry` is unchanged on disk, asking the disk only when it is time to. */
  #stillOnDisk(entry: KnownEntry, now: number): boolean {
    const sinceCheck = now - entry.checkedAt;
    if (sinceCheck < HOT_FILE_RECHECK_MS && sinceCheck >= 0 && entry.removalsSeen === this.#removals) {
      return true;
    }
    if (!sameFileOnDisk(entry)) return false;
    entry.checkedAt = now;
    entry.removalsSeen = this.#removals;
    return true;
  }

  /** The key of `segments`, remembered for arrays that are asked for again (the app keeps known targets). */
  #keyOf(segments: readonly string[]): string {
    let key = this.#keys.get(segments);
    if (key === undefined) {
      key = segments.join("/");
      this.#keys.set(segments, key);
    }
    return key;
  }

  #forgetHot(key: string): void {
    const entry = this.#hot.get(key);
    if (entry === undefined) return;
    this.#hot.delete(key);
    this.#hotBytes -= entry.size;
  }
}

/**
 * The bytes of the regular file at `path` and its `stat`, if it has at most `maxSize` bytes; undefined when it
 * is missing, not a regular file, larger, or shorter than its `stat` said (being replaced).
 */
export async function readSmallFile(
  path: string,
  maxSize: number,
): Promise<{ info: Deno.FileInfo; bytes: Uint8Array<ArrayBuffer> } | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  try {
    const info = await file.stat();
    if (!info.isFile || info.size > maxSize) return undefined;
    const bytes = new Uint8Array(info.size);
    let offset = 0;
    while (offset < bytes.byteLength) {
      const read = await file.read(bytes.subarray(offset));
      if (read === null) return undefined;
      offset += read;
    }
    return { info, bytes };
  } finally {
    file.close();
  }
}

/** True when the file of an entry is still on disk unchanged (same inode, size, mtime and ctime). */
function sameFileOnDisk(entry: KnownEntry): boolean {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(entry.path);
  } catch {
    return false;
  }
  return info.isFile && info.size === entry.size && info.ino === entry.ino &&
    (info.mtime?.getTime() ?? 0) === entry.mtimeMs && (info.ctime?.getTime() ?? 0) === entry.ctimeMs;
}
