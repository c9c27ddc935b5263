/**
 * Keeping the cache within its limits: `num_versions_retain` versions of each package and architecture in each
 * repository folder, and, when `max_cache_size` is set, no more bytes than that (least recently used versions
 * beyond the newest of each package in its folder go first). What to remove is decided by `retention_plan.ts`;
 * this module scans the disk, spares files that are in use, removes the rest and reports what it did.
 *
 * A {@linkcode Cleaner} runs the cleaning once at start-up and then a few seconds after downloads complete,
 * never on a request's path and never twice at the same time.
 *
 * The last use of a file is its access time. A committed download's access time is the time of the download
 * (its modification time is upstream's `Last-Modified`); on file systems mounted with `noatime` it stays so.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { join, resolve } from "node:path";
import { type CachedFile, CacheStore } from "./cache_store.ts";
import type { Config } from "../config/config_schema.ts";
import {
  type CachedPackageFile,
  planRetention,
  planSizeEviction,
  type RemovedVersion,
} from "./retention_plan.ts";
import type { Stats } from "../status/stats.ts";
import { formatBytes } from "../config/units.ts";
import { SIGNATURE_SUFFIX } from "../repo/package_file_name.ts";

const log = getLogger(["flexo", "cleanup"]);

/** What the cache may hold, from the configuration. */
export interface CleanupLimits {
  /** Versions to keep of each package and architecture (`num_versions_retain`); 0 keeps all. */
  keep: number;
  /** Bytes the cache may take (`max_cache_size`); undefined for no limit. */
  maxBytes?: number;
}

/** Options of {@linkcode runCleanup}. */
export interface CleanupOptions extends CleanupLimits {
  /** True for a path that a client is reading or a download is writing: never removed. Default: none. */
  inUse?: (path: string) => boolean;
  /** Decide and report, but remove nothing. */
  dryRun?: boolean;
  /** Called for every file removed (not in a dry run), e.g. to keep the cache usage current. */
  onRemoved?: (path: string, bytes: number) => void;
  /**
   * The store of the cache directory to remove files through, so that the files it keeps in memory check the
   * disk again (the app's store, when the proxy runs). Default: a store of its own.
   */
  store?: Pick<CacheStore, "removeIfPresent">;
}

/** Why a version was removed. */
export type RemovalReason = "retention" | "size";

/** A package version that a cleaning run removed (or would remove, in a dry run). */
export interface CleanupRemoval extends RemovedVersion {
  /** `retention` for `num_versions_retain`, `size` for `max_cache_size`. */
  reason: RemovalReason;
}

/** What a cleaning run did. */
export interface CleanupReport {
  /** True when nothing was removed on purpose. */
  dryRun: boolean;
  /** Complete files found in the cache. */
  scannedFiles: number;
  /** Their bytes before cleaning. */
  totalBytes: number;
  /** Removed versions, retention first, then size evictions in eviction order. */
  removed: CleanupRemoval[];
  /** Files removed (packages and signatures). */
  removedFiles: number;
  /** Bytes freed. */
  freedBytes: number;
  /** Bytes left after cleaning. */
  remainingBytes: number;
  /** True when `maxBytes` is set and the cache is still larger (everything else was in use or newest). */
  overLimit: boolean;
  /** Versions left alone because one of their files became in use while the run was removing. */
  skippedInUse: number;
  /** Files or folders that could not be read or removed. */
  failures: { path: string; message: string }[];
}

/** The limits that the configuration asks for. */
export function cleanupLimitsOf(
  config: Pick<Config, "num_versions_retain" | "max_cache_size">,
): CleanupLimits {
  return { keep: config.num_versions_retain, maxBytes: config.max_cache_size };
}

/** True when the limits ask for any cleaning at all. */
export function cleaningEnabled(limits: CleanupLimits): boolean {
  return limits.keep > 0 || limits.maxBytes !== undefined;
}

/**
 * A test for files that must not be removed: complete files a client is reading, files a download is
 * writing, and the package or signature that goes with a file being downloaded.
 *
 * @param app The running proxy's store and downloads.
 */
export function inUseBy(app: {
  store: { isBeingRead(path: string): boolean };
  downloads: { list(): readonly { readonly finalPath: string }[] };
}): (path: string) => boolean {
  // A package whose signature is downloading (or the reverse) stays too, so that no orphan is left.
  return (path) =>
    app.store.isBeingRead(path) ||
    app.downloads.list().some((download) =>
      download.finalPath === path || download.finalPath === `${path}.sig` ||
      `${download.finalPath}.sig` === path
    );
}

/**
 * Every complete file of the cache with its size and access time. Downloads in progress (`.partial/`),
 * hidden entries and symbolic links are left out. A folder or file that cannot be read is reported through
 * `onError` and skipped.
 *
 * @param cacheDir The cache directory.
 * @param options `onError`: told about every unreadable entry.
 */
export async function scanCache(
  cacheDir: string,
  options: { onError?: (path: string, error: Error) => void } = {},
): Promise<CachedPackageFile[]> {
  const files: CachedPackageFile[] = [];
  const onError = options.onError ?? (() => {});
  const pending = [cacheDir];
  while (pending.length > 0) {
    const dir = pending.pop()!;
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch (error) {
      if (dir === cacheDir && error instanceof Deno.errors.NotFound) return files;
      onError(dir, asError(error));
      continue;
    }
    const fileNames: string[] = [];
    for (const entry of entries) {
      if (entry.name.startsWith(".")) continue; // .partial and anything hidden
      if (entry.isDirectory) pending.push(join(dir, entry.name));
      else if (entry.isFile) fileNames.push(entry.name);
    }
    // A few stats at a time: fast on large caches without flooding the thread pool.
    for (let i = 0; i < fileNames.length; i += 32) {
      const batch = fileNames.slice(i, i + 32);
      const infos = await Promise.all(batch.map(async (fileName) => {
        const path = join(dir, fileName);
        try {
          const info = await Deno.lstat(path);
          return info.isFile
            ? { path, fileName, size: info.size, atimeMs: info.atime?.getTime() }
            : undefined;
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound)) onError(path, asError(error));
          return undefined;
        }
      }));
      for (const info of infos) if (info) files.push(info);
    }
  }
  return files;
}

/**
 * Scans the cache, removes package versions beyond `keep` and, when the cache is larger than `maxBytes`, the
 * least recently used versions (older versions first, newest versions only when that is not enough). A
 * version is removed whole (every copy and its signatures) or not at all; one with a file in use stays. A file
 * that comes into use while its version is being removed stays, with the files after it; a signature stays when
 * its package could not be removed.
 *
 * @param directory The cache directory (made absolute: the paths it reports and tests are absolute).
 * @param options The limits, the in-use test, `dryRun` and `onRemoved`.
 * @returns What was removed and the bytes freed.
 */
export async function runCleanup(directory: string, options: CleanupOptions): Promise<CleanupReport> {
  // Absolute, as the store's paths are (CachePaths): the in-use test compares paths, and a relative cache
  // directory (`--cache-dir ./pkg`) would match none of them.
  const cacheDir = resolve(directory);
  const inUse = options.inUse ?? (() => false);
  const store = options.store ?? new CacheStore(cacheDir);
  const failures: CleanupReport["failures"] = [];
  const files = await scanCache(cacheDir, {
    onError: (path, error) => {
      log.warn("Cannot read {path}, skipped: {error}", { path, error: error.message });
      failures.push({ path, message: error.message });
    },
  });
  const totalBytes = files.reduce((sum, file) => sum + file.size, 0);
  const planned: CleanupRemoval[] = [];
  const retention = planRetention(files, { keep: options.keep, inUse });
  for (const version of retention.versions) planned.push({ ...version, reason: "retention" });
  if (options.maxBytes !== undefined) {
    const gone = new Set(retention.remove);
    const left = files.filter((file) => !gone.has(file.path));
    const eviction = planSizeEviction(left, { maxBytes: options.maxBytes, inUse });
    for (const version of eviction.versions) planned.push({ ...version, reason: "size" });
  }

  const sizes = new Map(files.map((file) => [file.path, file.size]));
  const removed: CleanupRemoval[] = [];
  let removedFiles = 0;
  let freedBytes = 0;
  let skippedInUse = 0;
  for (const version of planned) {
    if (options.dryRun) {
      removed.push(version);
      removedFiles += version.paths.length;
      freedBytes += version.bytes;
      continue;
    }
    // A client may have started reading, or a download writing, since the plan was made.
    if (version.paths.some(inUse)) {
      skippedInUse++;
      continue;
    }
    const done: string[] = [];
    const failed = new Set<string>();
    let bytes = 0;
    for (const path of version.paths) {
      // Each removal waits for a thread: a client may start reading another file of this version meanwhile.
      if (inUse(path)) {
        skippedInUse++;
        break;
      }
      // A signature goes only with its package (sorted, the package comes first): one whose package could not
      // be removed stays beside it, or the package would be left unverifiable.
      if (path.endsWith(SIGNATURE_SUFFIX) && failed.has(path.slice(0, -SIGNATURE_SUFFIX.length))) continue;
      let removedNow: boolean;
      try {
        removedNow = await store.removeIfPresent(path);
      } catch (error) {
        const message = asError(error).message;
        log.warn("Cannot remove {path}: {message}", { path, message });
        failures.push({ path, message });
        failed.add(path);
        continue;
      }
      // Gone since the scan (another process removed it): this run freed nothing, and counts nothing.
      if (!removedNow) continue;
      const size = sizes.get(path) ?? 0;
      done.push(path);
      bytes += size;
      options.onRemoved?.(path, size);
    }
    if (done.length === 0) continue;
    removed.push({ ...version, paths: done, bytes });
    removedFiles += done.length;
    freedBytes += bytes;
  }
  const remainingBytes = totalBytes - freedBytes;
  return {
    dryRun: options.dryRun ?? false,
    scannedFiles: files.length,
    totalBytes,
    removed,
    removedFiles,
    freedBytes,
    remainingBytes,
    overLimit: options.maxBytes !== undefined && remainingBytes > options.maxBytes,
    skippedInUse,
    failures,
  };
}

/**
 * A cleaning report as text for people: one line per removed file, then the total freed.
 *
 * @param report What {@linkcode runCleanup} returned.
 * @returns Lines without line breaks.
 */
export function describeCleanup(report: CleanupReport): string[] {
  const verb = report.dryRun ? "would remove" : "removed";
  const lines: string[] = [];
  for (const version of report.removed) {
    const why = version.reason === "retention" ? "older version" : "least recently used, over max_cache_size";
    for (const path of version.paths) lines.push(`${verb} ${path} (${why})`);
  }
  for (const failure of report.failures) lines.push(`could not clean ${failure.path}: ${failure.message}`);
  const freed = formatBytes(report.freedBytes);
  lines.push(
    report.removedFiles === 0
      ? `Nothing to remove; ${report.scannedFiles} files, ${formatBytes(report.totalBytes)} in the cache.`
      : `${
        report.dryRun ? "Would remove" : "Removed"
      } ${report.removedFiles} files of ${report.removed.length} ` +
        `package versions; ${freed} ${report.dryRun ? "would be " : ""}freed, ` +
        `${formatBytes(report.remainingBytes)} left.`,
  );
  if (report.overLimit) {
    lines.push(
      "The cache is still larger than max_cache_size: the rest is the newest version of each package or in " +
        "use; raise max_cache_size or lower num_versions_retain.",
    );
  }
  return lines;
}

/** Options of {@linkcode Cleaner}. */
export interface CleanerOptions extends CleanupLimits {
  /** The cache directory. */
  cacheDir: string;
  /** True for a path in use (see {@linkcode inUseBy}). */
  inUse: (path: string) => boolean;
  /** Counters to update with the files removed and bytes freed. */
  stats?: Pick<Stats, "retentionRemovals" | "retentionBytesFreed">;
  /** Called for every file removed. */
  onRemoved?: (path: string, bytes: number) => void;
  /** The store to remove files through (see {@linkcode CleanupOptions.store}); the app's when the proxy runs. */
  store?: Pick<CacheStore, "removeIfPresent">;
  /** Called after every run with its report. */
  onReport?: (report: CleanupReport) => void;
  /** Wait this long after the last completed download before cleaning (default 5 s). */
  delayMs?: number;
  /** Clean at the latest this long after the first download that asked for it (default 60 s). */
  maxDelayMs?: number;
  /** Clock in milliseconds for the longest wait. Default `Date.now`. */
  now?: () => number;
  /** Starts the timer of the quiet time. Default `setTimeout`. */
  setTimer?: (callback: () => void, ms: number) => unknown;
  /** Cancels a timer started by `setTimer`. Default `clearTimeout`. */
  clearTimer?: (timer: unknown) => void;
}

/** Default quiet time after the last completed download before cleaning. */
export const CLEANUP_DELAY_MS = 5_000;

/** Default longest wait before cleaning while downloads keep completing. */
export const CLEANUP_MAX_DELAY_MS = 60_000;

/**
 * Runs {@linkcode runCleanup} in the background: once at start-up, then a few seconds after downloads complete
 * (several completions close together give one run), never two runs at the same time. With neither
 * `num_versions_retain` nor `max_cache_size` it does nothing.
 */
export class Cleaner {
  #options: CleanerOptions;
  #timer?: unknown;
  #firstRequestAt?: number;
  #running?: Promise<CleanupReport | undefined>;
  #again = false;
  #stopped = false;
  /** Number of cleaning runs so far. */
  runs = 0;

  /** @param options The cache, the limits, the in-use test and the timing; nothing runs until asked. */
  constructor(options: CleanerOptions) {
    this.#options = options;
  }

  /** True when the limits ask for cleaning. */
  get enabled(): boolean {
    return cleaningEnabled(this.#options);
  }

  /** The start-up run, in the background; the promise resolves with its report and never rejects. */
  start(): Promise<CleanupReport | undefined> {
    return this.runNow();
  }

  /**
   * Notes a download that committed a file and schedules a run.
   *
   * @param _file The committed file, if any (its access time is already the time of the download).
   */
  downloadCompleted(_file?: Pick<CachedFile, "path" | "mtime">): void {
    if (!this.enabled || this.#stopped) return;
    this.schedule();
  }

  /** Asks for a run after the quiet time; repeated calls postpone it, up to the longest wait. */
  schedule(): void {
    if (!this.enabled || this.#stopped) return;
    const delay = this.#options.delayMs ?? CLEANUP_DELAY_MS;
    const maxDelay = this.#options.maxDelayMs ?? CLEANUP_MAX_DELAY_MS;
    const now = (this.#options.now ?? Date.now)();
    this.#firstRequestAt ??= now;
    const wait = Math.max(0, Math.min(delay, this.#firstRequestAt + maxDelay - now));
    this.#clearTimer();
    this.#timer = (this.#options.setTimer ?? setTimeout)(() => {
      this.#timer = undefined;
      this.#firstRequestAt = undefined;
      void this.runNow();
    }, wait);
  }

  /**
   * Cleans now, or right after the run in progress. Resolves with the report (undefined when cleaning is
   * disabled or the cleaner was stopped); never rejects.
   */
  runNow(): Promise<CleanupReport | undefined> {
    if (!this.enabled || this.#stopped) return Promise.resolve(undefined);
    if (this.#running) {
      this.#again = true;
      return this.#running.then(() => this.#running ?? this.runNow());
    }
    const run = this.#run();
    this.#running = run;
    run.then(() => {
      if (this.#running === run) this.#running = undefined;
      if (this.#again) {
        this.#again = false;
        void this.runNow();
      }
    });
    return run;
  }

  /** Resolves when no run is in progress or due to follow the current one. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /** Cancels a scheduled run and waits for the one in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#clearTimer();
    this.#again = false;
    await this.idle();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) {
      (this.#options.clearTimer ?? ((timer) => clearTimeout(timer as number)))(this.#timer);
    }
    this.#timer = undefined;
  }

  async #run(): Promise<CleanupReport | undefined> {
    this.runs++;
    const { cacheDir, keep, maxBytes, inUse, stats, onRemoved, store } = this.#options;
    try {
      const report = await runCleanup(cacheDir, {
        keep,
        maxBytes,
        inUse,
        store,
        onRemoved: (path, bytes) => {
          if (stats) {
            stats.retentionRemovals++;
            stats.retentionBytesFreed += bytes;
          }
          onRemoved?.(path, bytes);
        },
      });
      this.#options.onReport?.(report);
      return report;
    } catch (error) {
      log.error("Cleaning the cache failed: {error}", { error: asError(error).message });
      return undefined;
    }
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
