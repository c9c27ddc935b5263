/**
 * One prefetch run: revalidate the databases of the repositories the cache serves, then download the newest
 * version (and its `.sig`) of every package a client fetched recently that is not cached yet, within a byte
 * budget and a number of parallel downloads. Downloads go through the {@linkcode DownloadManager}, so they are
 * verified against the databases, failed over, shared with clients asking at the same time, and the app's
 * completion hook (retention) sees them like any other.
 *
 * @module
 */

import { basename, join } from "node:path";
import { getLogger } from "@logtape/logtape";
import type { CacheStore } from "../cache/cache_store.ts";
import type { DownloadManager } from "../download/download_manager.ts";
import { CacheStorageError } from "../download/file_writes.ts";
import { CUSTOM_REPO_PREFIX, parseRequestPath, type RequestTarget } from "../repo/request_path.ts";
import type { PackageIndex } from "../repo/package_index.ts";
import type { PackageEntry } from "../repo/repo_db.ts";
import { vercmp } from "../repo/vercmp.ts";
import { type PackageFileName, parsePackageFileName } from "../repo/package_file_name.ts";
import { describeError } from "../describe_error.ts";
import { HttpError } from "../http/http_error.ts";
import type { PackageUsage, UsedPackage } from "./package_usage.ts";

const log = getLogger(["flexo", "prefetch"]);
const DAY_MS = 86_400_000;
/**
 * Bytes a prefetch download leaves free on the cache's file system (when its free space is known): the rest of
 * the disk is for the clients' own downloads.
 */
export const PREFETCH_FREE_RESERVE = 1024 ** 3;
/** Packages in a row that failed at every mirror (not for want of the file) after which a run ends. */
const MIRROR_FAILURES_IN_A_ROW = 3;

/** What a run needs from the app. */
export interface PrefetchDeps {
  store: CacheStore;
  downloads: DownloadManager;
  packageIndex: PackageIndex;
  usage: PackageUsage;
  customRepoNames: ReadonlySet<string>;
  now: () => number;
  /** `offline = true`: no run may contact a mirror, so none runs (see {@linkcode Prefetcher}). */
  offline?: boolean;
  /** `num_versions_retain` (0 or none: every version is kept): a run fetches no version retention removes. */
  keepVersions?: number;
}

/** The limits of a run (from the `[prefetch]` table). */
export interface PrefetchLimits {
  unaccessed_days: number;
  max_bytes_per_run: number;
  max_parallel: number;
}

/** What happened to one file of a run. */
export type PrefetchFileOutcome =
  | "fetched"
  | "would_fetch"
  | "over_budget"
  | "failed";

/** One file a run looked at. */
export interface PrefetchFile {
  /** Cache path, "/"-separated, e.g. `core/os/x86_64/tool-0.10-1-x86_64.pkg.tar.zst`. */
  path: string;
  outcome: PrefetchFileOutcome;
  /** Bytes downloaded (fetched), or the size the database announces (otherwise). */
  bytes: number;
  /** Why it failed. */
  error?: string;
}

/** The outcome of revalidating one database (`would_revalidate`: a dry run's, which asks no mirror). */
export interface PrefetchDatabase {
  path: string;
  outcome: "updated" | "not_modified" | "failed" | "would_revalidate";
  error?: string;
}

/** What one run did. */
export interface PrefetchReport {
  dryRun: boolean;
  startedAt: number;
  finishedAt: number;
  databases: PrefetchDatabase[];
  /** Packages and signatures, in the order they were looked at. */
  files: PrefetchFile[];
  /** Bytes downloaded by the run. */
  bytes: number;
}

/**
 * Runs one prefetch pass; never throws (failures are in the report). A dry run changes nothing on disk: it
 * revalidates no database (which would download and store it), lists them as `would_revalidate`, and lists
 * what the databases in the cache say would be fetched (a run, revalidating them first, may find newer
 * versions); it saves nothing of the usage record either. Once `options.signal` aborts (the proxy is
 * stopping), no further database or file is asked for: the downloads running then end on their own.
 */
export async function runPrefetch(
  deps: PrefetchDeps,
  limits: PrefetchLimits,
  options: { dryRun?: boolean; signal?: AbortSignal } = {},
): Promise<PrefetchReport> {
  const signal = options.signal;
  const dryRun = options.dryRun ?? false;
  const startedAt = deps.now();
  const used = deps.usage.fetchedSince(startedAt - limits.unaccessed_days * DAY_MS, { save: !dryRun })
    .filter((fetched) => isServed(deps, fetched.folder));
  const folders = new Set(used.map((fetched) => fetched.folder));
  const databases = dryRun
    ? databasePaths(deps, folders).map((path): PrefetchDatabase => ({ path, outcome: "would_revalidate" }))
    : await revalidateDatabases(deps, folders, signal);
  await deps.packageIndex.idle();
  const wanted = await wantedPackages(deps, used);
  const files: PrefetchFile[] = [];
  let reserved = 0;
  let bytes = 0;
  const queue: { folder: string; entry: PackageEntry }[] = [];
  for (const item of wanted) {
    const path = `${item.folder}/${item.entry.fileName}`;
    if (reserved + item.entry.compressedSize > limits.max_bytes_per_run) {
      files.push({ path, outcome: "over_budget", bytes: item.entry.compressedSize });
      continue;
    }
    reserved += item.entry.compressedSize;
    if (dryRun) files.push({ path, outcome: "would_fetch", bytes: item.entry.compressedSize });
    else queue.push(item);
  }
  // A cache that cannot store files (a full disk, a read-only mount) fails every other download too, and so do
  // mirrors that all failed for packages in a row (the line to them is down): the run ends there rather than
  // ask the mirrors for each of what may be thousands of packages.
  let stopped: "storage" | "room" | "mirrors" | undefined;
  let mirrorFailures = 0;
  const own = new Set<unknown>();
  const worker = async () => {
    for (let item; !signal?.aborted && !stopped && (item = queue.shift());) {
      for (const fileName of [item.entry.fileName, `${item.entry.fileName}.sig`]) {
        await clientsDone(deps, own, signal);
        if (signal?.aborted) break;
        const free = fileName === item.entry.fileName ? deps.store.freeBytes() : undefined;
        if (free !== undefined && free - item.entry.compressedSize < PREFETCH_FREE_RESERVE) {
          const error =
            `it would leave less than ${PREFETCH_FREE_RESERVE} bytes free in the cache (${free} free)`;
          files.push({ path: `${item.folder}/${fileName}`, outcome: "failed", bytes: 0, error });
          stopped = "room";
          break;
        }
        const { failure, ...file } = await fetchFile(deps, item.folder, fileName, own);
        if (failure === "storage") stopped = "storage";
        // A missing signature is not worth a line unless it was the package itself.
        if (file.outcome === "failed" && fileName.endsWith(".sig")) {
          log.debug("No signature for {path}: {error}", { path: file.path, error: file.error });
          continue;
        }
        mirrorFailures = failure === "mirrors" ? mirrorFailures + 1 : 0;
        if (mirrorFailures >= MIRROR_FAILURES_IN_A_ROW) stopped ??= "mirrors";
        files.push(file);
        if (file.outcome === "fetched") bytes += file.bytes;
        if (file.outcome === "failed") break;
      }
    }
  };
  await Promise.all(Array.from({ length: limits.max_parallel }, worker));
  if (stopped && queue.length > 0) {
    log.warn("Prefetch run stopped, {why}: {count} package(s) left for a later run", {
      why: stopped === "storage"
        ? "the cache cannot store files"
        : stopped === "room"
        ? "the cache's disk is nearly full"
        : `${MIRROR_FAILURES_IN_A_ROW} packages in a row failed at every mirror`,
      count: queue.length,
    });
  } else if (signal?.aborted && queue.length > 0) {
    log.info("Prefetch run stopped: {count} package(s) left for a later run", { count: queue.length });
  }
  const report = { dryRun, startedAt, finishedAt: deps.now(), databases, files, bytes };
  if (dryRun) {
    log.info(
      "Prefetch dry run: {databases} databases to revalidate, {files} files to fetch; nothing changed",
      {
        databases: databases.length,
        files: files.filter((f) => f.outcome === "would_fetch").length,
      },
    );
  } else {
    log.info("Prefetch run: {databases} databases revalidated, {fetched} files ({bytes} bytes) fetched", {
      databases: databases.length,
      fetched: files.filter((f) => f.outcome === "fetched").length,
      bytes,
    });
  }
  return report;
}

/**
 * Databases to revalidate, sorted: those of the folders clients fetched packages from within `unaccessed_days`
 * (`used`), cached or, when none is, named after the folder's `$repo`. A database of a folder no client uses any
 * more is left as it is: a new copy every run would be mirror traffic for nothing a run fetches.
 */
function databasePaths(deps: PrefetchDeps, used: ReadonlySet<string>): string[] {
  const paths = new Set<string>();
  for (const folder of used) {
    const cached = deps.packageIndex.databasesIn(folder);
    for (const path of cached) paths.add(`${folder}/${basename(path)}`);
    const name = cached.length === 0 ? databaseNameFor(folder) : undefined;
    if (name) paths.add(`${folder}/${name}`);
  }
  return [...paths].sort();
}

/** Revalidates the databases of {@linkcode databasePaths}, storing the new ones, until `signal` aborts. */
async function revalidateDatabases(
  deps: PrefetchDeps,
  used: ReadonlySet<string>,
  signal?: AbortSignal,
): Promise<PrefetchDatabase[]> {
  const results: PrefetchDatabase[] = [];
  for (const path of databasePaths(deps, used)) {
    if (signal?.aborted) break;
    const target = targetOf(deps, path);
    if (!target) continue;
    const cached = deps.store.statComplete(target.cacheSegments);
    try {
      const download = deps.downloads.obtain(target, { ifModifiedSince: cached?.mtime.getTime() });
      await download.finished;
      const outcome = download.state === "complete"
        ? "updated"
        : download.state === "not_modified"
        ? "not_modified"
        : "failed";
      results.push({ path, outcome, ...(outcome === "failed" ? { error: "no mirror delivered it" } : {}) });
    } catch (error) {
      results.push({ path, outcome: "failed", error: describeError(error) });
    }
  }
  return results;
}

/**
 * Whether flexo still serves a cache folder: not one of a custom repository removed from the configuration,
 * whose cached files and usage stay behind (a run passes over them without a warning each time).
 */
function isServed(deps: PrefetchDeps, folder: string): boolean {
  const [first, name] = folder.split("/");
  return first !== CUSTOM_REPO_PREFIX || (name !== undefined && deps.customRepoNames.has(name));
}

/** The values of pacman's `$arch` on Arch Linux and its ports (ARM, 32-bit, RISC-V, LoongArch, POWER). */
const ARCHITECTURES = new Set([
  "x86_64",
  "x86_64_v2",
  "x86_64_v3",
  "x86_64_v4",
  "i486",
  "i686",
  "pentium4",
  "aarch64",
  "arm",
  "armv6h",
  "armv7h",
  "riscv64",
  "loong64",
  "powerpc",
  "powerpc64",
  "powerpc64le",
  "any",
]);

/**
 * The database of a folder, named after its `$repo`: `core.db` for `core/os/x86_64`. Below `custom_repo/X/`
 * the layout is the repository's own: `$repo/$arch`, `$repo/os/$arch`, or `$arch/$repo` (Arch Linux ARM), told
 * apart by which segment is an architecture; `$repo/$arch` when neither is one.
 */
function databaseNameFor(folder: string): string | undefined {
  const segments = folder.split("/");
  if (segments[0] !== "custom_repo") {
    return segments.length === 3 && segments[1] === "os" ? `${segments[0]}.db` : undefined;
  }
  const below = segments.slice(2);
  if (below.length < 2) return undefined;
  const [beforeLast, last] = below.slice(-2);
  if (!ARCHITECTURES.has(last) && ARCHITECTURES.has(beforeLast)) return `${last}.db`;
  const repo = below.slice(0, -1).findLast((segment) => segment !== "os");
  return repo === undefined ? undefined : `${repo}.db`;
}

/**
 * The newest version of each recently fetched package, when it is not in the cache yet, and retention would not
 * remove it next (the folder holds `num_versions_retain` newer versions: a repository gone back to an older
 * version, whose download would be removed after each run and fetched again at the next).
 */
async function wantedPackages(
  deps: PrefetchDeps,
  fetched: readonly UsedPackage[],
): Promise<{ folder: string; entry: PackageEntry }[]> {
  const byFolder = new Map<string, Set<string>>();
  for (const used of fetched) {
    let names = byFolder.get(used.folder);
    if (!names) byFolder.set(used.folder, names = new Set());
    names.add(used.name);
  }
  const wanted: { folder: string; entry: PackageEntry }[] = [];
  for (const [folder, names] of byFolder) {
    const newest = new Map<string, PackageEntry>();
    for (const entry of deps.packageIndex.entriesIn(folder)) {
      if (!names.has(entry.name)) continue;
      const current = newest.get(entry.name);
      if (!current || vercmp(entry.version, current.version) > 0) newest.set(entry.name, entry);
    }
    const cached = newest.size > 0 && deps.keepVersions ? await cachedPackages(deps, folder) : [];
    for (const entry of newest.values()) {
      if (deps.store.statComplete([...folder.split("/"), entry.fileName])) continue;
      const arch = parsePackageFileName(entry.fileName)?.arch;
      const newer = cached.filter((other) =>
        other.name === entry.name && other.arch === arch && vercmp(other.version, entry.version) > 0
      );
      if (deps.keepVersions && newer.length >= deps.keepVersions) {
        log.debug("Prefetch skips {file}: num_versions_retain keeps the {count} newer version(s) cached", {
          file: entry.fileName,
          count: newer.length,
        });
        continue;
      }
      wanted.push({ folder, entry });
    }
  }
  return wanted;
}

/** The package files of a cache folder, parsed. */
async function cachedPackages(deps: PrefetchDeps, folder: string): Promise<PackageFileName[]> {
  try {
    const entries = await Array.fromAsync(Deno.readDir(join(deps.store.root, ...folder.split("/"))));
    return entries.flatMap((entry) => {
      const parsed = entry.isFile ? parsePackageFileName(entry.name) : undefined;
      return parsed ? [parsed] : [];
    });
  } catch {
    return [];
  }
}

/**
 * Downloads one file through the download manager (joining a running download of it); `failure` says why it
 * failed when that ends the run: the cache could not store it (`storage`), or the mirrors failed otherwise than
 * by not having it (`mirrors`).
 */
async function fetchFile(
  deps: PrefetchDeps,
  folder: string,
  fileName: string,
  own: Set<unknown>,
): Promise<PrefetchFile & { failure?: "storage" | "mirrors" }> {
  const path = `${folder}/${fileName}`;
  const target = targetOf(deps, path);
  if (!target) return { path, outcome: "failed", bytes: 0, error: "not a cacheable path" };
  if (deps.store.statComplete(target.cacheSegments)) return { path, outcome: "fetched", bytes: 0 };
  try {
    const download = deps.downloads.obtain(target, { missing: true });
    own.add(download);
    try {
      await download.finished;
    } finally {
      own.delete(download);
    }
    if (download.state !== "complete") {
      const error = download.error?.message ?? "no mirror delivered it";
      return {
        path,
        outcome: "failed",
        bytes: 0,
        error,
        failure: download.error instanceof CacheStorageError
          ? "storage"
          : download.error instanceof HttpError && download.error.status === 404
          ? undefined
          : "mirrors",
      };
    }
    const size = (await Deno.stat(download.finalPath)).size;
    return { path, outcome: "fetched", bytes: size };
  } catch (error) {
    return { path, outcome: "failed", bytes: 0, error: describeError(error) };
  }
}

/**
 * Waits until no download runs but the run's own `own`: a client's downloads (its pacman -Syu) have the line to
 * the mirrors to themselves, and a prefetch download starts only once they have ended (or the run is stopped).
 */
async function clientsDone(deps: PrefetchDeps, own: Set<unknown>, signal?: AbortSignal): Promise<void> {
  for (;;) {
    const theirs = deps.downloads.list().filter((download) => !download.ended && !own.has(download));
    if (theirs.length === 0 || signal?.aborted) return;
    const stopped = Promise.withResolvers<void>();
    const onAbort = () => stopped.resolve();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await Promise.race([stopped.promise, ...theirs.map((download) => download.finished)]);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

/** The request target of a cache path, or undefined when it is not one flexo would cache. */
function targetOf(deps: PrefetchDeps, path: string): RequestTarget | undefined {
  try {
    const raw = "/" + path.split("/").map(encodeURIComponent).join("/");
    const target = parseRequestPath(raw, { customRepoNames: deps.customRepoNames });
    return target.kind === "other" ? undefined : target;
  } catch (error) {
    log.warn("Prefetch skips {path}: {error}", { path, error: describeError(error) });
    return undefined;
  }
}
