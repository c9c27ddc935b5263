/**
 * How much the cache holds: one scan of the cache directory in the background at start, then kept current by
 * the proxy telling it about every file it adds or removes, so the status page and the metrics never walk the
 * disk on a request.
 *
 * @module
 */

import { isAbsolute, join, relative, resolve } from "node:path";
import { PARTIAL_DIR } from "./cache_paths.ts";

/** The cache's size as known now. */
export interface CacheUsageSnapshot {
  /** Bytes in complete files (downloads in progress under `.partial/` are not counted). */
  bytes: number;
  /** Number of complete files. */
  files: number;
  /** False while the first scan is still running: the numbers are then what was counted so far. */
  complete: boolean;
}

/** Options for {@linkcode CacheUsage}. */
export interface CacheUsageOptions {
  /** Called when the scan fails (the numbers then stay what was counted). */
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

/** The size and file count of a cache directory. */
export class CacheUsage {
  /** The absolute cache directory. */
  readonly root: string;
  #bytes = 0;
  #files = 0;
  #complete = false;
  #scan?: Promise<void>;
  /** Sizes of files that may be replaced in place (databases and their signatures), by relative path. */
  #mutable = new Map<string, number>();
  /** Paths added or removed while the first scan runs: their sizes are read again at its end. */
  #touchedDuringScan = new Set<string>();
  /** What the running scan counted, by relative path (dropped when it ends). */
  #counted = new Map<string, number>();
  #onError?: (error: Error) => void;

  /** @param cacheDir The cache directory (made absolute). Nothing happens until {@linkcode CacheUsage.start}. */
  constructor(cacheDir: string, options: CacheUsageOptions = {}) {
    this.root = resolve(cacheDir);
    this.#onError = options.onError;
  }

  /** Starts the scan in the background (once); the promise resolves when it has ended, and never rejects. */
  start(): Promise<void> {
    this.#scan ??= this.#runScan();
    return this.#scan;
  }

  /** The numbers as known now. */
  snapshot(): CacheUsageSnapshot {
    return { bytes: this.#bytes, files: this.#files, complete: this.#complete };
  }

  /**
   * How many paths it keeps in memory now: the files that may be replaced in place (databases and their
   * signatures), and while the first scan runs what it counted. Package files are never kept, so that memory
   * does not grow with the cache (issue 20).
   */
  get rememberedPaths(): number {
    return this.#mutable.size + this.#counted.size + this.#touchedDuringScan.size;
  }

  /** Counts a file that was added to the cache (a committed download). */
  added(bytes: number, change: CacheFileChange = {}): void {
    const key = this.#keyOf(change.path);
    if (key !== undefined && !this.#complete && this.#scan) {
      this.#touchedDuringScan.add(key);
      return;
    }
    if (key !== undefined && !IMMUTABLE_FILE.test(key)) {
      const before = this.#mutable.get(key);
      this.#mutable.set(key, bytes);
      if (before !== undefined) {
        this.#bytes += bytes - before;
        return;
      }
    }
    this.#bytes += bytes;
    this.#files += 1;
  }

  /** Counts a file that was removed from the cache (retention, size limit, a rejected file). */
  removed(bytes: number, change: CacheFileChange = {}): void {
    const key = this.#keyOf(change.path);
    if (key !== undefined && !this.#complete && this.#scan) {
      this.#touchedDuringScan.add(key);
      return;
    }
    if (key !== undefined) this.#mutable.delete(key);
    this.#bytes = Math.max(0, this.#bytes - bytes);
    this.#files = Math.max(0, this.#files - 1);
  }

  #keyOf(path: string | undefined): string | undefined {
    if (path === undefined) return undefined;
    const rel = relative(this.root, isAbsolute(path) ? path : join(this.root, path));
    return rel.startsWith("..") ? undefined : rel;
  }

  async #runScan(): Promise<void> {
    try {
      await this.#walk(this.root, "");
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        this.#onError?.(error instanceof Error ? error : new Error(String(error)));
      }
    }
    // Files added or removed during the scan may or may not have been seen by it: count what is there now.
    for (const key of this.#touchedDuringScan) {
      const seen = this.#counted.get(key);
      if (seen !== undefined) {
        this.#bytes -= seen;
        this.#files -= 1;
        this.#mutable.delete(key);
      }
      const size = await fileSize(join(this.root, key));
      if (size === undefined) continue;
      this.#bytes += size;
      this.#files += 1;
      if (!IMMUTABLE_FILE.test(key)) this.#mutable.set(key, size);
    }
    this.#touchedDuringScan.clear();
    this.#counted.clear();
    this.#complete = true;
  }

  async #walk(dir: string, prefix: string): Promise<void> {
    for await (const entry of Deno.readDir(dir)) {
      if (prefix === "" && entry.name === PARTIAL_DIR) continue;
      const key = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
      if (entry.isDirectory) {
        await this.#walk(join(dir, entry.name), key);
        continue;
      }
      if (!entry.isFile) continue;
      const size = await fileSize(join(dir, entry.name));
      if (size === undefined) continue;
      this.#counted.set(key, size);
      this.#bytes += size;
      this.#files += 1;
      if (!IMMUTABLE_FILE.test(key)) this.#mutable.set(key, size);
    }
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
