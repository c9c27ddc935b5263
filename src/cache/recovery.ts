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
import { join, relative, sep } from "node:path";
import { PARTIAL_DIR, pathExists, removeIfPresent } from "./cache_store.ts";
import { rulesFor } from "../download/download_manager.ts";
import { classifyFileName } from "../repo/file_kind.ts";

const log = getLogger(["flexo", "recovery"]);

const META_SUFFIX = ".meta.json";
const TMP_SUFFIX = ".tmp";

/** A file that recovery removed, and why. */
export interface RecoveryRemoval {
  /** Absolute path. */
  path: string;
  /** Why it was removed, for the log. */
  reason: string;
}

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
 * @returns What was kept, removed and skipped.
 */
export async function recoverPartials(cacheDir: string): Promise<RecoveryReport> {
  const report: RecoveryReport = { resumable: [], removed: [], skipped: [] };
  const root = join(cacheDir, PARTIAL_DIR);
  await recoverDirectory(cacheDir, root, report);
  for (const removal of report.removed) {
    log.info("Removed {path}: {reason}", { path: removal.path, reason: removal.reason });
  }
  for (const item of report.resumable) {
    log.info("Download of {path} will resume from byte {bytes}", { path: item.path, bytes: item.bytes });
  }
  return report;
}

/** Recovers one folder below `.partial/`; returns true when it is empty afterwards. */
async function recoverDirectory(cacheDir: string, dir: string, report: RecoveryReport): Promise<boolean> {
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
  const ordered = [...entries].sort((a, b) => Number(isMeta(a.name)) - Number(isMeta(b.name)));
  for (const entry of ordered) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) {
      if (await recoverDirectory(cacheDir, path, report)) {
        if (await remove(report, path, "an empty folder")) left--;
      }
      continue;
    }
    if (!entry.isFile) {
      skip(report, path, new Error("not a regular file or folder; remove it by hand if it is not needed"));
      continue;
    }
    const reason = await judge(cacheDir, dir, entry.name, names, report);
    if (reason === undefined) continue;
    if (await remove(report, path, reason)) {
      names.delete(entry.name);
      left--;
    }
  }
  return left === 0;
}

function isMeta(name: string): boolean {
  return name.endsWith(META_SUFFIX) && !name.endsWith(TMP_SUFFIX);
}

/** Why a file in `.partial/` must go, or undefined to keep it. */
async function judge(
  cacheDir: string,
  dir: string,
  name: string,
  names: Set<string>,
  report: RecoveryReport,
): Promise<string | undefined> {
  if (name.endsWith(TMP_SUFFIX)) return "a temporary file left by an interrupted write";
  if (isMeta(name)) {
    return names.has(name.slice(0, -META_SUFFIX.length))
      ? undefined
      : "a download record without its download";
  }
  const path = join(dir, name);
  if (!rulesFor(classifyFileName(name)).resumeAcrossMirrors) {
    return "an interrupted download of a file that is always fetched whole";
  }
  if (!names.has(name + META_SUFFIX)) return "an interrupted download without its record";
  const total = await readTotal(path + META_SUFFIX);
  if (total === "unreadable") return "an interrupted download whose record is unreadable";
  let size: number;
  try {
    size = (await Deno.lstat(path)).size;
  } catch (error) {
    skip(report, path, error);
    return undefined;
  }
  if (size === 0) return "an interrupted download with no bytes";
  if (total !== undefined && size > total) {
    return `an interrupted download of ${size} bytes, more than the ${total} announced`;
  }
  const relativePath = relative(join(cacheDir, PARTIAL_DIR), path);
  if (await pathExists(join(cacheDir, relativePath))) {
    return "an interrupted download of a file already cached";
  }
  report.resumable.push({ path: relativePath.split(sep).join("/"), bytes: size, total });
  return undefined;
}

/** The announced total of a download record (undefined when none was announced), or "unreadable". */
async function readTotal(metaPath: string): Promise<number | undefined | "unreadable"> {
  try {
    const parsed = JSON.parse(await Deno.readTextFile(metaPath));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return "unreadable";
    if (parsed.total === undefined) return undefined;
    return Number.isSafeInteger(parsed.total) && parsed.total >= 0 ? parsed.total : "unreadable";
  } catch {
    return "unreadable";
  }
}

/** Removes a file or an empty folder; false when that failed (logged and recorded as skipped). */
async function remove(report: RecoveryReport, path: string, reason: string): Promise<boolean> {
  try {
    await removeIfPresent(path);
  } catch (error) {
    skip(report, path, error);
    return false;
  }
  report.removed.push({ path, reason });
  return true;
}

function skip(report: RecoveryReport, path: string, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  log.warn("Cannot recover {path}, left as it is: {message}", { path, message });
  report.skipped.push({ path, message });
}
