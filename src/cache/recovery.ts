/**
 * Start-up recovery of downloads that a crash or a kill left in `.partial/`, before the proxy serves anything.
 *
 * A partial package (or package signature) with a readable record of what upstream announced and no more
 * bytes than announced is kept: the next request for it resumes it with a `Range` request and verifies the
 * whole file before it becomes complete. Everything else is removed: a partial without a readable record, one
 * larger than announced, an empty one, one whose complete file already exists, one of a kind of file that is
 * never resumed (databases are fetched whole again), a record without its partial, and leftover `*.tmp` files.
 * An entry that cannot be read or removed is logged and skipped; recovery never fails the start-up.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { dirname, join, relative, sep } from "node:path";
import { PARTIAL_DIR, pathExists } from "./cache_paths.ts";
import { CacheStore } from "./cache_store.ts";
import {
  isPartialRecordName,
  PARTIAL_RECORD_SUFFIX,
  PARTIAL_RECORD_TMP_SUFFIX,
  readPartialRecord,
} from "./partial_records.ts";
import { rulesFor } from "../download/download_manager.ts";
import { classifyFileName } from "../repo/file_kind.ts";
import { parsePackageFileName, signedFileOf } from "../repo/package_file_name.ts";
import { vercmp } from "../repo/vercmp.ts";

const log = getLogger(["flexo", "recovery"]);

/** A file that recovery removed, and why. */
export interface RecoveryRemoval {
  /** Absolute path. */
  path: string;
  /** Why it was removed, for the log. */
  reason: string;
  /** What was wrong in more words, when there is more to say (an invalid record's message). */
  detail?: string;
}

/** Why a file must go. */
type Verdict = Omit<RecoveryRemoval, "path">;

/** What {@linkcode recoverPartials} did. */
export interface RecoveryReport {
  /** Partial downloads kept for the next request to resume, as cache-relative paths. */
  resumable: { path: string; bytes: number; total?: number }[];
  /** Files removed. */
  removed: RecoveryRemoval[];
  /** Entries that could not be read or removed; they were left as they are. */
  skipped: { path: string; message: string }[];
}

/**
 * Walks `<cacheDir>/.partial/`, keeps the partial downloads that can be resumed and removes the rest.
 * Call it before the proxy starts downloading.
 *
 * @param cacheDir The cache directory.
 * @param options `store`: the store of that directory to remove files through (default: a store of its own).
 * @returns What was kept, removed and skipped.
 */
export async function recoverPartials(
  cacheDir: string,
  options: { store?: CacheStore } = {},
): Promise<RecoveryReport> {
  const report: RecoveryReport = { resumable: [], removed: [], skipped: [] };
  const store = options.store ?? new CacheStore(cacheDir);
  await recoverDirectory({ cacheDir, store, report, listed: new Map() }, join(cacheDir, PARTIAL_DIR));
  for (const removal of report.removed) {
    log.info("Removed {path}: {reason}{detail}", {
      path: removal.path,
      reason: removal.reason,
      detail: removal.detail === undefined ? "" : ` (${removal.detail})`,
    });
  }
  for (const item of report.resumable) {
    log.info("Download of {path} will resume from byte {bytes}", { path: item.path, bytes: item.bytes });
  }
  return report;
}

/** What a recovery run works on. */
interface Run {
  cacheDir: string;
  store: CacheStore;
  report: RecoveryReport;
  /** The complete files of cache folders listed so far, by folder. */
  listed: Map<string, string[]>;
}

/** Recovers one folder below `.partial/`; returns true when it is empty afterwards. */
async function recoverDirectory(run: Run, dir: string): Promise<boolean> {
  const { report } = run;
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    skip(report, dir, error);
    return false;
  }
  let left = entries.length;
  const names = new Set(entries.filter((entry) => entry.isFile).map((entry) => entry.name));
  // Records last, so that a record whose download was just removed goes too.
  const ordered = [...entries].sort((a, b) =>
    Number(isPartialRecordName(a.name)) - Number(isPartialRecordName(b.name))
  );
  for (const entry of ordered) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) {
      if (await recoverDirectory(run, path)) {
        if (await remove(run, path, { reason: "an empty folder" })) left--;
      }
      continue;
    }
    if (!entry.isFile) {
      skip(report, path, new Error("not a regular file or folder; remove it by hand if it is not needed"));
      continue;
    }
    const verdict = await judge(run, dir, entry.name, names);
    if (verdict === undefined) continue;
    if (await remove(run, path, verdict)) {
      names.delete(entry.name);
      left--;
    }
  }
  return left === 0;
}

/** Why a file in `.partial/` must go, or undefined to keep it. */
async function judge(run: Run, dir: string, name: string, names: Set<string>): Promise<Verdict | undefined> {
  const { cacheDir, report } = run;
  if (name.endsWith(PARTIAL_RECORD_TMP_SUFFIX)) {
    return { reason: "a temporary file left by an interrupted write" };
  }
  if (isPartialRecordName(name)) {
    return names.has(name.slice(0, -PARTIAL_RECORD_SUFFIX.length))
      ? undefined
      : { reason: "a download record without its download" };
  }
  const path = join(dir, name);
  if (!rulesFor(classifyFileName(name)).resumeAcrossMirrors) {
    return { reason: "an interrupted download of a file that is always fetched whole" };
  }
  const record = names.has(name + PARTIAL_RECORD_SUFFIX)
    ? readPartialRecord(path + PARTIAL_RECORD_SUFFIX)
    : { kind: "missing" as const };
  if (record.kind === "missing") return { reason: "an interrupted download without its record" };
  if (record.kind === "invalid") {
    return { reason: "an interrupted download whose record is unreadable", detail: record.message };
  }
  const total = record.meta.total;
  let size: number;
  try {
    size = (await Deno.lstat(path)).size;
  } catch (error) {
    skip(report, path, error);
    return undefined;
  }
  if (size === 0) return { reason: "an interrupted download with no bytes" };
  if (total !== undefined && size > total) {
    return { reason: `an interrupted download of ${size} bytes, more than the ${total} announced` };
  }
  const relativePath = relative(join(cacheDir, PARTIAL_DIR), path);
  if (await pathExists(join(cacheDir, relativePath))) {
    return { reason: "an interrupted download of a file already cached" };
  }
  // Nothing asks for it again (a prefetch cut off by a stop, and the next version came meanwhile): kept, it
  // would stay in `.partial/` for good, counted by no size limit.
  if (await newerVersionCached(run, dirname(join(cacheDir, relativePath)), name)) {
    return { reason: "an interrupted download of a version older than one cached" };
  }
  report.resumable.push({ path: relativePath.split(sep).join("/"), bytes: size, total });
  return undefined;
}

/** Whether the cache folder `dir` holds a newer version of the package `name` is (or is the signature of). */
async function newerVersionCached(run: Run, dir: string, name: string): Promise<boolean> {
  const partial = parsePackageFileName(signedFileOf(name) ?? name);
  if (!partial) return false;
  let names = run.listed.get(dir);
  if (!names) {
    try {
      names = (await Array.fromAsync(Deno.readDir(dir))).filter((entry) => entry.isFile).map((entry) =>
        entry.name
      );
    } catch {
      names = [];
    }
    run.listed.set(dir, names);
  }
  return names.some((cached) => {
    const other = parsePackageFileName(cached);
    return other !== undefined && other.name === partial.name && other.arch === partial.arch &&
      vercmp(other.version, partial.version) > 0;
  });
}

/** Removes a file or an empty folder; false when that failed (logged and recorded as skipped). */
async function remove(run: Run, path: string, verdict: Verdict): Promise<boolean> {
  try {
    await run.store.removeIfPresent(path);
  } catch (error) {
    skip(run.report, path, error);
    return false;
  }
  run.report.removed.push({ path, ...verdict });
  return true;
}

function skip(report: RecoveryReport, path: string, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  log.warn("Cannot recover {path}, left as it is: {message}", { path, message });
  report.skipped.push({ path, message });
}
