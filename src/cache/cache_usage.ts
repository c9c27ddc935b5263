/**
 * How much the cache holds: one scan of the cache directory in the background at start, then kept current by
 * the proxy telling it about every file it adds or removes, so the status page and the metrics never walk the
 * disk on a request.
 *
 * @module
 */

import { isAbsolute, join, relative, resolve } from "node:path";
import { describeError } from "../describe_error.ts";

/** The cache's size as known now. */
export interface CacheUsageSnapshot {
  /** Bytes in complete files (downloads in progress under `.partial/` and other hidden files are left out). */
  bytes: number;
  /** Number of complete files. */
  files: number;
  /** False while the first scan is still running: the numbers are then what was counted so far. */
  complete: boolean;
}

/** Options for {@linkcode CacheUsage}. */
export interface CacheUsageOptions {
  /** Called for every folder a walk cannot list: its files are left out, every other folder is counted. */
  onError?: (error: Error) => void;
}

/** Options for {@linkcode CacheUsage.added} and {@linkcode CacheUsage.removed}. */
export interface CacheFileChange {
  /**
   * The file's path (absolute, or relative to the cache directory). Give it whenever it is known: a file that
   * replaces another of the same name (a database update) then replaces its size instead of counting twice.
   */
  path?: string;
}

/** Package files never change under one name, so only the sizes of other files are remembered. */
const IMMUTABLE_FILE = /\.pkg\.tar(\.[a-z0-9]+)?(\.sig)?$/;

/** What one walk of the cache directory counted. */
interface Tally {
  bytes: number;
  files: number;
  /** Sizes of files that may be replaced in place, by relative path. */
  mutable: Map<string, number>;
  /** Every file the walk counted, with its size, by relative path (dropped when the walk ends). */
  counted: Map<string, number>;
}

function emptyTally(): Tally {
  return { bytes: 0, files: 0, mutable: new Map(), counted: new Map() };
}

/** Paths remembered for {@linkcode CacheUsage.takeReported} at most; beyond, changes look foreign (a rescan). */
const MAX_REPORTED = 10_000;

/** The size and file count of a cache directory. */
export class CacheUsage {
  /** The absolute cache directory. */
  readonly root: string;
  /** The numbers shown; during the first scan, the scan's own tally is shown instead. */
  #current: Tally = emptyTally();
  #complete = false;
  #scan?: Promise<void>;
  /** The walk under way (the first scan or a rescan), and whether another was asked for meanwhile. */
  #walking?: { tally: Tally; touched: Set<string>; promise: Promise<void> };
  #again = false;
  /** Paths the proxy reported through added() and removed() since the last takeReported(). */
  #reported = new Set<string>();
  #onError?: (error: Error) => void;

  /** @param cacheDir The cache directory (made absolute). Nothing happens until {@linkcode CacheUsage.start}. */
  constructor(cacheDir: string, options: CacheUsageOptions = {}) {
    this.root = resolve(cacheDir);
    this.#onError = options.onError;
  }

  /** Starts the scan in the background (once); the promise resolves when it has ended, and never rejects. */
  start(): Promise<void> {
    this.#scan ??= this.#walk();
    return this.#scan;
  }

  /**
   * Counts the directory again and then shows the new numbers, for changes the proxy was not told about (another
   * process such as `flexo import` wrote to the cache). One walk at a time: asked during a walk, another follows
   * it. Resolves when the numbers are current; never rejects.
   */
  rescan(): Promise<void> {
    if (this.#scan === undefined) return this.start();
    if (this.#walking === undefined) return this.#walk();
    this.#again = true;
    return this.#walking.promise; // it ends after the walk that follows it
  }

  /** The numbers as known now. */
  snapshot(): CacheUsageSnapshot {
    const shown = this.#complete ? this.#current : this.#walking?.tally ?? this.#current;
    return { bytes: shown.bytes, files: shown.files, complete: this.#complete };
  }

  /**
   * The cache paths (relative) that the proxy reported as added or removed since the last call: a watcher of the
   * directory tells its own changes from another process's by them.
   */
  takeReported(): Set<string> {
    const reported = this.#reported;
    this.#reported = new Set();
    return reported;
  }

  /**
   * How many paths it keeps in memory now: the files that may be replaced in place (databases and their
   * signatures), and while a walk runs what it counted. Package files are never kept, so that memory does not
   * grow with the cache (issue 20). (The paths reported for {@linkcode CacheUsage.takeReported} are apart: at
   * most 10,000, taken by the cache watch once quiet.)
   */
  get rememberedPaths(): number {
    const walking = this.#walking;
    return this.#current.mutable.size +
      (walking ? walking.tally.mutable.size + walking.tally.counted.size + walking.touched.size : 0);
  }

  /** Counts a file that was added to the cache (a committed download). */
  added(bytes: number, change: CacheFileChange = {}): void {
    const key = this.#note(change.path);
    if (!this.#complete && this.#walking) return; // counted at the end of the first scan
    applyAdded(this.#current, key, bytes);
  }

  /** Counts a file that was removed from the cache (retention, size limit, a rejected file). */
  removed(bytes: number, change: CacheFileChange = {}): void {
    const key = this.#note(change.path);
    if (!this.#complete && this.#walking) return; // counted at the end of the first scan
    if (key !== undefined) this.#current.mutable.delete(key);
    this.#current.bytes = Math.max(0, this.#current.bytes - bytes);
    this.#current.files = Math.max(0, this.#current.files - 1);
  }

  /** Remembers a reported path: for the walk under way (to count it again) and for takeReported(). */
  #note(path: string | undefined): string | undefined {
    const key = this.#keyOf(path);
    if (key === undefined) return undefined;
    this.#walking?.touched.add(key);
    if (this.#reported.size < MAX_REPORTED) this.#reported.add(key);
    return key;
  }

  #keyOf(path: string | undefined): string | undefined {
    if (path === undefined) return undefined;
    const rel = relative(this.root, isAbsolute(path) ? path : join(this.root, path));
    return rel.startsWith("..") ? undefined : rel;
  }

  #walk(): Promise<void> {
    const walking = { tally: emptyTally(), touched: new Set<string>(), promise: Promise.resolve() };
    walking.promise = this.#count(walking.tally, walking.touched).then(() => {
      this.#current = walking.tally;
      this.#complete = true;
      this.#walking = undefined;
      if (this.#again) {
        this.#again = false;
        return this.#walk();
      }
    });
    this.#walking = walking;
    return walking.promise;
  }

  async #count(tally: Tally, touched: Set<string>): Promise<void> {
    await walkInto(tally, this.root, "", (error) => this.#onError?.(error));
    // Files added or removed during the walk may or may not have been seen by it: count what is there now.
    for (const key of touched) {
      const seen = tally.counted.get(key);
      if (seen !== undefined) {
        tally.bytes -= seen;
        tally.files -= 1;
        tally.mutable.delete(key);
      }
      const size = await fileSize(join(this.root, key));
      if (size === undefined) continue;
      tally.bytes += size;
      tally.files += 1;
      if (!IMMUTABLE_FILE.test(key)) tally.mutable.set(key, size);
    }
    tally.counted.clear();
  }
}

/** Counts an added file into `tally`; a replaced mutable file changes its size instead of counting twice. */
function applyAdded(tally: Tally, key: string | undefined, bytes: number): void {
  if (key !== undefined && !IMMUTABLE_FILE.test(key)) {
    const before = tally.mutable.get(key);
    tally.mutable.set(key, bytes);
    if (before !== undefined) {
      tally.bytes += bytes - before;
      return;
    }
  }
  tally.bytes += bytes;
  tally.files += 1;
}

/**
 * Counts the files below `dir` into `tally`. A folder that cannot be listed is told to `onError` and left out,
 * and the walk goes on with the others; one that is gone (removed meanwhile, or a missing cache) has nothing.
 */
async function walkInto(
  tally: Tally,
  dir: string,
  prefix: string,
  onError: (error: Error) => void,
): Promise<void> {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      const message = describeError(error);
      onError(
        new Error(
          `cannot list ${dir} (${message}): its files are not counted; give the flexo user read access to it`,
          { cause: error },
        ),
      );
    }
    return;
  }
  for (const entry of entries) {
    // Downloads in progress (`.partial/`), flexo's records (`.flexo/`) and anything hidden: not cached files,
    // and not what cleaning and `max_cache_size` count (scanCache in cleanup.ts).
    if (entry.name.startsWith(".")) continue;
    const key = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory) {
      await walkInto(tally, join(dir, entry.name), key, onError);
      continue;
    }
    if (!entry.isFile) continue;
    const size = await fileSize(join(dir, entry.name));
    if (size === undefined) continue;
    tally.counted.set(key, size);
    tally.bytes += size;
    tally.files += 1;
    if (!IMMUTABLE_FILE.test(key)) tally.mutable.set(key, size);
  }
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    const info = await Deno.lstat(path);
    return info.isFile ? info.size : undefined;
  } catch {
    return undefined;
  }
}
