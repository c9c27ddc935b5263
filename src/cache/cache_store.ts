/**
 * Where files live on disk: complete files under the cache directory in the same layout as the mirrors
 * (`core/os/x86_64/FILE`, `custom_repo/NAME/...`), downloads in progress under `.partial/` beside a small JSON
 * record of what upstream announced, so that a restart can resume them and nothing partial is ever served as
 * complete.
 *
 * @module
 */

import { dirname, join, resolve, sep } from "node:path";

/** What is remembered about a download in progress. */
export interface PartialMeta {
  /** Length upstream announced for the whole file, if it did. */
  total?: number;
  /** Upstream `Last-Modified` as milliseconds since the epoch. */
  lastModified?: number;
  /** Upstream `Content-Type`. */
  contentType?: string;
  /** The mirror the transfer started from. */
  mirror?: string;
}

/** A complete file in the cache. */
export interface CachedFile {
  path: string;
  size: number;
  /** Modification time: upstream's `Last-Modified` when it sent one. */
  mtime: Date;
}

/** A complete file in the cache whose bytes are held in memory. */
export interface HotFile extends CachedFile {
  bytes: Uint8Array<ArrayBuffer>;
}

/** The name of the folder inside the cache directory that holds downloads in progress. */
export const PARTIAL_DIR = ".partial";

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
 * any file was removed through {@linkcode removeIfPresent} (which is how cleaning removes files). A change made
 * on disk by another program (say, a file deleted or replaced by hand) is seen within this time; until then the
 * bytes served are the complete file as it was, as for a read that began just before the change.
 */
export const HOT_FILE_RECHECK_MS = 1000;

/** Files removed through {@linkcode removeIfPresent} by this process: a change makes hot files check the disk. */
let removals = 0;

/** At most this many complete files are remembered for {@linkcode CacheStore.knownFile}; the oldest go first. */
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

/** Files on disk, addressed by the safe path segments of a request target. */
export class CacheStore {
  /** The absolute cache directory. */
  readonly root: string;
  #readers = new Map<string, number>();
  /** Small files in memory by segments joined with "/", least recently served first. */
  #hot = new Map<string, HotEntry>();
  #hotBytes = 0;
  /** The key of a segments array, for arrays that are asked for again (the app keeps known targets). */
  #hotKeys = new WeakMap<readonly string[], string>();
  /** Complete files seen by statComplete(), by segments joined with "/", oldest first. */
  #known = new Map<string, KnownEntry>();
  #now: () => number;

  /**
   * @param cacheDir The cache directory; made absolute.
   * @param options `now`: the clock in milliseconds for the files kept in memory (default `performance.now`).
   */
  constructor(cacheDir: string, options: { now?: () => number } = {}) {
    this.root = resolve(cacheDir);
    this.#now = options.now ?? (() => performance.now());
  }

  /** Marks a complete file as being read by a client; call the returned function when the response is sent. */
  beginRead(path: string): () => void {
    this.#readers.set(path, (this.#readers.get(path) ?? 0) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const left = (this.#readers.get(path) ?? 1) - 1;
      if (left <= 0) this.#readers.delete(path);
      else this.#readers.set(path, left);
    };
  }

  /** True while a client is reading this complete file. */
  isBeingRead(path: string): boolean {
    return this.#readers.has(path);
  }

  /** Where the complete file lives. */
  finalPath(segments: readonly string[]): string {
    return this.#inside(join(this.root, ...segments));
  }

  /** Where the file being downloaded lives. */
  partialPath(segments: readonly string[]): string {
    return this.#inside(join(this.root, PARTIAL_DIR, ...segments));
  }

  /** Where the record of a download in progress lives. */
  metaPath(segments: readonly string[]): string {
    return `${this.partialPath(segments)}.meta.json`;
  }

  /**
   * The complete file, or undefined if it is not cached. Like the other lookups of a file's metadata here
   * (`partialSize`, `readPartialMeta`), it asks the kernel synchronously: answered from its caches in
   * microseconds, where an asynchronous call hands the work to a thread and back (0.1-0.5 ms each on a busy
   * 2-core machine, several of them on the way to a cache miss's first byte).
   */
  // deno-lint-ignore require-await
  async statComplete(segments: readonly string[]): Promise<CachedFile | undefined> {
    const path = this.finalPath(segments);
    const removalsBefore = removals;
    try {
      const info = Deno.statSync(path);
      if (!info.isFile) return undefined;
      return this.#rememberKnown(segments, path, info, removalsBefore);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        return undefined;
      }
      throw error;
    }
  }

  /** Remembers a complete file that `info` describes for {@linkcode CacheStore.knownFile}. */
  #rememberKnown(
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
  hotFile(segments: readonly string[]): HotFile | undefined {
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
   * A complete file that {@linkcode CacheStore.statComplete} found before (the last {@linkcode KNOWN_FILES_MAX}
   * of them), if the file on disk is still the same one; checked as for {@linkcode CacheStore.hotFile}, with a
   * synchronous `stat` at most every {@linkcode HOT_FILE_RECHECK_MS} and after any removal. Lets a cache hit skip
   * the asynchronous `stat` (and the objects around it) that a request would otherwise make.
   */
  knownFile(segments: readonly string[]): CachedFile | undefined {
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

  /** Whether the file of `entry` is unchanged on disk, asking the disk only when it is time to. */
  #stillOnDisk(entry: KnownEntry, now: number): boolean {
    const sinceCheck = now - entry.checkedAt;
    if (sinceCheck < HOT_FILE_RECHECK_MS && sinceCheck >= 0 && entry.removalsSeen === removals) return true;
    if (!sameFileOnDisk(entry)) return false;
    entry.checkedAt = now;
    entry.removalsSeen = removals;
    return true;
  }

  /** The key of `segments`, remembered for arrays that are asked for again (the app keeps known targets). */
  #keyOf(segments: readonly string[]): string {
    let key = this.#hotKeys.get(segments);
    if (key === undefined) {
      key = segments.join("/");
      this.#hotKeys.set(segments, key);
    }
    return key;
  }

  /**
   * Reads a complete file of at most {@linkcode HOT_FILE_MAX_SIZE} bytes into memory, so that
   * {@linkcode CacheStore.hotFile} finds it next time; undefined when it is missing, larger, or changed while
   * being read.
   */
  async loadHot(segments: readonly string[]): Promise<HotFile | undefined> {
    const path = this.finalPath(segments);
    // A removal while the file is being read makes its first use check the disk again.
    const removalsBefore = removals;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        return undefined;
      }
      throw error;
    }
    try {
      const info = await file.stat();
      if (!info.isFile || info.size > HOT_FILE_MAX_SIZE) return undefined;
      const bytes = new Uint8Array(info.size);
      let offset = 0;
      while (offset < bytes.byteLength) {
        const read = await file.read(bytes.subarray(offset));
        if (read === null) return undefined;
        offset += read;
      }
      const mtime = info.mtime ?? new Date(0);
      const entry: HotEntry = {
        path,
        size: info.size,
        mtime,
        bytes,
        loadedAt: this.#now(),
        movedAt: this.#now(),
        checkedAt: this.#now(),
        removalsSeen: removalsBefore,
        mtimeMs: mtime.getTime(),
        ctimeMs: info.ctime?.getTime() ?? 0,
        ino: info.ino,
      };
      const key = segments.join("/");
      this.#forgetHot(key);
      this.#hot.set(key, entry);
      this.#hotBytes += entry.size;
      for (const [oldest] of this.#hot) {
        if (this.#hotBytes <= HOT_FILES_BUDGET) break;
        this.#forgetHot(oldest);
      }
      return entry;
    } finally {
      file.close();
    }
  }

  #forgetHot(key: string): void {
    const entry = this.#hot.get(key);
    if (entry === undefined) return;
    this.#hot.delete(key);
    this.#hotBytes -= entry.size;
  }

  /** Size of the partial file on disk (0 when there is none). */
  // deno-lint-ignore require-await
  async partialSize(segments: readonly string[]): Promise<number> {
    try {
      return Deno.statSync(this.partialPath(segments)).size;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return 0;
      throw error;
    }
  }

  /** The record of an earlier download of this file, if one was left behind (a few bytes, read at once). */
  // deno-lint-ignore require-await
  async readPartialMeta(segments: readonly string[]): Promise<PartialMeta | undefined> {
    try {
      const parsed = JSON.parse(Deno.readTextFileSync(this.metaPath(segments)));
      if (typeof parsed !== "object" || parsed === null) return undefined;
      return {
        total: typeof parsed.total === "number" ? parsed.total : undefined,
        lastModified: typeof parsed.lastModified === "number" ? parsed.lastModified : undefined,
        contentType: typeof parsed.contentType === "string" ? parsed.contentType : undefined,
        mirror: typeof parsed.mirror === "string" ? parsed.mirror : undefined,
      };
    } catch {
      return undefined;
    }
  }

  /**
   * Opens the partial file for appending, creating folders as needed. Opened synchronously, as the metadata is
   * looked up (see `statComplete`): it is on the way to a cache miss's first byte.
   */
  // deno-lint-ignore require-await
  async openPartial(segments: readonly string[], options: { truncate: boolean }): Promise<Deno.FsFile> {
    const path = this.partialPath(segments);
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
   * Saves what upstream announced, so that a restart can resume this download. A few bytes, written at once
   * (see `statComplete`): the record is written between a mirror's answer and the first byte for clients.
   */
  // deno-lint-ignore require-await
  async writePartialMeta(segments: readonly string[], meta: PartialMeta): Promise<void> {
    const path = this.metaPath(segments);
    const tmp = `${path}.tmp`;
    try {
      Deno.writeTextFileSync(tmp, JSON.stringify(meta));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      Deno.mkdirSync(dirname(path), { recursive: true });
      Deno.writeTextFileSync(tmp, JSON.stringify(meta));
    }
    Deno.renameSync(tmp, path);
  }

  /**
   * Makes a finished download visible: moves it into place atomically, sets its modification time to
   * upstream's `Last-Modified`, and removes its record.
   */
  async commit(segments: readonly string[], options: { lastModified?: number }): Promise<CachedFile> {
    const from = this.partialPath(segments);
    const to = this.finalPath(segments);
    const key = this.#keyOf(segments);
    this.#forgetHot(key);
    this.#known.delete(key);
    await Deno.mkdir(dirname(to), { recursive: true });
    if (options.lastModified !== undefined) {
      // mtime carries upstream's Last-Modified; atime stays "now", since the size limit evicts by last use.
      await Deno.utime(from, new Date(), new Date(options.lastModified));
    }
    await Deno.rename(from, to);
    await removeIfPresent(this.metaPath(segments));
    const removalsBefore = removals;
    const info = await Deno.stat(to);
    // Known from now on: the next request for it can be answered without routing (see quick_answers.ts).
    return this.#rememberKnown(segments, to, info, removalsBefore);
  }

  /** Removes a partial download and its record. */
  async discardPartial(segments: readonly string[]): Promise<void> {
    await removeIfPresent(this.partialPath(segments));
    await removeIfPresent(this.metaPath(segments));
  }

  #inside(path: string): string {
    if (!path.startsWith(this.root + sep)) {
      throw new Error(`Refusing a cache path outside the cache directory: ${path}`);
    }
    return path;
  }
}

/** True when something (a file, folder or link) is at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
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

/** Removes a file, ignoring that it does not exist. Files kept in memory are checked against the disk again. */
export async function removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  } finally {
    removals++;
  }
}
