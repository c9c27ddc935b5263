/**
 * Decide which cached package files to delete, without touching the disk.
 *
 * Packages are grouped by repository folder (the directory the file is in, such as `core/os/x86_64` or
 * `custom_repo/NAME/...`), name and architecture: each folder keeps its own newest versions, so that one package
 * name at different versions in two repositories (`core` and `core-testing`, a custom repository rebuilding an
 * official package) does not have each download remove the other repository's copy. A version stored with
 * several extensions in one folder counts once, and its copies are kept or removed together with their `.sig`
 * files. Versions are ordered by pacman's {@linkcode vercmp}. File names that are not package file
 * names are never removed. A signature whose package file is not in the cache goes when its version is older
 * than every version retention keeps (a failed or abandoned download leaves such files behind); otherwise
 * it stays, since its package may still come. A version any of whose files is in use is left whole for a
 * later run.
 *
 * @module
 */

import { dirname } from "node:path";
import { parsePackageFileName, signedFileOf } from "../repo/package_file_name.ts";
import { vercmp } from "../repo/vercmp.ts";

/** A file found in the cache. */
export interface CachedPackageFile {
  /** Path of the file; the plans return these paths. */
  path: string;
  /** Bare file name, e.g. `zstd-1.5.6-1-x86_64.pkg.tar.zst` or its `.sig`. */
  fileName: string;
  /** Size in bytes. */
  size: number;
  /** Last access time in ms since the epoch; a file without one counts as used longest ago. */
  atimeMs?: number;
}

/** One package version that a plan removes. */
export interface RemovedVersion {
  /** Package name. */
  name: string;
  /** Architecture. */
  arch: string;
  /** Version `[epoch:]pkgver-pkgrel` (of the first copy when copies spell it differently). */
  version: string;
  /** Paths of every copy and its signature. */
  paths: string[];
  /** Bytes of all those files. */
  bytes: number;
}

/** Options of {@linkcode planRetention}. */
export interface RetentionOptions {
  /** How many versions of each package to keep; 0 keeps everything. */
  keep: number;
  /** True for a path that a client is downloading or reading: never removed. */
  inUse: (path: string) => boolean;
}

/** What {@linkcode planRetention} decided. */
export interface RetentionPlan {
  /** Paths to delete, sorted. */
  remove: string[];
  /** Package files (not signatures, not unparsable files) that stay. */
  keepCount: number;
  /** Bytes that deleting `remove` frees. */
  freedBytes: number;
  /** The removed versions, for reporting. */
  versions: RemovedVersion[];
}

/**
 * Keep the newest `keep` versions of every package and architecture in each repository folder, remove the older
 * ones.
 *
 * @param files Every file of the cache: packages, signatures and anything else (left alone).
 * @param options `keep` (non-negative integer, 0 keeps all) and `inUse`.
 * @returns The paths to delete and what stays.
 */
export function planRetention(files: CachedPackageFile[], options: RetentionOptions): RetentionPlan {
  if (!Number.isInteger(options.keep) || options.keep < 0) {
    throw new RangeError(
      `keep must be a whole number of versions, 0 or more (0 keeps all), not ${options.keep}`,
    );
  }
  const packages = groupPackages(files);
  const versions: RemovedVersion[] = [];
  let packageCount = 0;
  let removedPackageCount = 0;
  for (const group of packages.values()) {
    for (const version of group) packageCount += version.packages.length;
    if (options.keep === 0) continue;
    for (const version of group.slice(options.keep)) {
      if (isVersionInUse(version, options.inUse)) continue;
      versions.push(describe(version));
      removedPackageCount += version.packages.length;
    }
  }
  if (options.keep > 0) {
    for (const orphan of orphanSignatures(files)) {
      // Only below the oldest kept version: with fewer versions cached than kept, its package would stay too.
      const group = packages.get(groupKey(orphan.file.path, orphan.name, orphan.arch));
      if (group === undefined || group.length < options.keep) continue;
      const oldestKept = group[options.keep - 1];
      if (vercmp(orphan.version, oldestKept.version) >= 0 || options.inUse(orphan.file.path)) continue;
      versions.push({
        name: orphan.name,
        arch: orphan.arch,
        version: orphan.version,
        paths: [orphan.file.path],
        bytes: orphan.file.size,
      });
    }
  }
  return { ...summarize(versions), keepCount: packageCount - removedPackageCount };
}

/** Options of {@linkcode planSizeEviction}. */
export interface SizeEvictionOptions {
  /** The cache size not to exceed, in bytes. */
  maxBytes: number;
  /** True for a path that a client is downloading or reading: never removed. */
  inUse: (path: string) => boolean;
}

/** What {@linkcode planSizeEviction} decided. */
export interface SizeEvictionPlan {
  /** Paths to delete, sorted. */
  remove: string[];
  /** Bytes that deleting `remove` frees. */
  freedBytes: number;
  /** Size of all files before eviction. */
  totalBytes: number;
  /** Size after eviction; above `maxBytes` only when nothing more may be evicted. */
  remainingBytes: number;
  /** The evicted versions in eviction order, for reporting. */
  versions: RemovedVersion[];
}

/**
 * When the files take more than `maxBytes`, evict package versions, least recently used first: first the
 * versions that are not the newest of their package, then, only if that is not enough, newest versions.
 * The last use of a version is the latest access time of its package copies. Unparsable files count
 * towards the total but are never evicted.
 *
 * @param files Every file of the cache.
 * @param options `maxBytes` and `inUse`.
 * @returns The paths to delete and the bytes freed.
 */
export function planSizeEviction(files: CachedPackageFile[], options: SizeEvictionOptions): SizeEvictionPlan {
  if (!Number.isFinite(options.maxBytes) || options.maxBytes < 0) {
    throw new RangeError(`maxBytes must be a number of bytes, 0 or more, not ${options.maxBytes}`);
  }
  const totalBytes = files.reduce((sum, file) => sum + file.size, 0);
  const older: VersionGroup[] = [];
  const newest: VersionGroup[] = [];
  for (const group of groupPackages(files).values()) {
    newest.push(group[0]);
    older.push(...group.slice(1));
  }
  const versions: RemovedVersion[] = [];
  let remainingBytes = totalBytes;
  for (const candidates of [older, newest]) {
    candidates.sort(byLeastRecentlyUsed);
    for (const version of candidates) {
      if (remainingBytes <= options.maxBytes) break;
      if (isVersionInUse(version, options.inUse)) continue;
      const removed = describe(version);
      versions.push(removed);
      remainingBytes -= removed.bytes;
    }
  }
  const { remove, freedBytes } = summarize(versions);
  return { remove, freedBytes, totalBytes, remainingBytes, versions };
}

/** All copies of one version of one package, newest group first in {@linkcode groupPackages}. */
interface VersionGroup {
  name: string;
  arch: string;
  version: string;
  packages: CachedPackageFile[];
  signatures: CachedPackageFile[];
  lastUsedMs: number;
}

interface ParsedFile {
  file: CachedPackageFile;
  name: string;
  arch: string;
  version: string;
}

/** The group of a package file: its folder, name and architecture. */
function groupKey(path: string, name: string, arch: string): string {
  return `${dirname(path)}\0${name}\0${arch}`;
}

/**
 * Versions of each (folder, name, arch), newest first; copies of equal versions (by vercmp) share a group.
 */
function groupPackages(files: CachedPackageFile[]): Map<string, VersionGroup[]> {
  const signaturesByPackagePath = new Map<string, CachedPackageFile[]>();
  const byPackage = new Map<string, ParsedFile[]>();
  for (const file of files) {
    if (signedFileOf(file.fileName) !== undefined) {
      const packagePath = file.path.slice(0, file.path.length - ".sig".length);
      const list = signaturesByPackagePath.get(packagePath) ?? [];
      list.push(file);
      signaturesByPackagePath.set(packagePath, list);
      continue;
    }
    const parsed = parsePackageFileName(file.fileName);
    if (!parsed) continue;
    const key = groupKey(file.path, parsed.name, parsed.arch);
    const list = byPackage.get(key) ?? [];
    list.push({ file, name: parsed.name, arch: parsed.arch, version: parsed.version });
    byPackage.set(key, list);
  }

  const result = new Map<string, VersionGroup[]>();
  for (const [key, list] of byPackage) {
    list.sort((a, b) => vercmp(b.version, a.version) || compareStrings(a.file.path, b.file.path));
    const groups: VersionGroup[] = [];
    for (const entry of list) {
      let group = groups.at(-1);
      if (!group || vercmp(group.version, entry.version) !== 0) {
        group = {
          name: entry.name,
          arch: entry.arch,
          version: entry.version,
          packages: [],
          signatures: [],
          lastUsedMs: 0,
        };
        groups.push(group);
      }
      group.packages.push(entry.file);
      group.signatures.push(...(signaturesByPackagePath.get(entry.file.path) ?? []));
      group.lastUsedMs = Math.max(group.lastUsedMs, entry.file.atimeMs ?? 0);
    }
    result.set(key, groups);
  }
  return result;
}

/** Signatures whose package file is not among `files`, with what their names say. */
function orphanSignatures(files: CachedPackageFile[]): ParsedFile[] {
  const paths = new Set(files.map((file) => file.path));
  const orphans: ParsedFile[] = [];
  for (const file of files) {
    const packageFileName = signedFileOf(file.fileName);
    if (packageFileName === undefined) continue;
    if (paths.has(file.path.slice(0, file.path.length - ".sig".length))) continue;
    const parsed = parsePackageFileName(packageFileName)!;
    orphans.push({ file, name: parsed.name, arch: parsed.arch, version: parsed.version });
  }
  return orphans;
}

function isVersionInUse(version: VersionGroup, inUse: (path: string) => boolean): boolean {
  return [...version.packages, ...version.signatures].some((file) => inUse(file.path));
}

function describe(version: VersionGroup): RemovedVersion {
  const files = [...version.packages, ...version.signatures];
  return {
    name: version.name,
    arch: version.arch,
    version: version.version,
    paths: files.map((file) => file.path).sort(compareStrings),
    bytes: files.reduce((sum, file) => sum + file.size, 0),
  };
}

function summarize(
  versions: RemovedVersion[],
): { remove: string[]; freedBytes: number; versions: RemovedVersion[] } {
  return {
    remove: versions.flatMap((version) => version.paths).sort(compareStrings),
    freedBytes: versions.reduce((sum, version) => sum + version.bytes, 0),
    versions,
  };
}

/** Least recently used first; ties: older version first, then by name and path so plans are stable. */
function byLeastRecentlyUsed(a: VersionGroup, b: VersionGroup): number {
  return a.lastUsedMs - b.lastUsedMs ||
    (a.name === b.name && a.arch === b.arch ? vercmp(a.version, b.version) : 0) ||
    compareStrings(a.packages[0].path, b.packages[0].path);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
