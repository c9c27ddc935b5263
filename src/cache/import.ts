/**
 * Seeding the cache from a pacman cache directory (`/var/cache/pacman/pkg`): every package that a repository
 * database in the cache lists is verified against that database (size and SHA-256) and copied, with its
 * `.sig`, where the proxy would have stored it had a client downloaded it. A copy is written to a temporary
 * file under `.partial/` and renamed into place, so a half-copied file is never visible as complete.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { PARTIAL_DIR, pathExists } from "./cache_paths.ts";
import type { CacheStore } from "./cache_store.ts";
import { expectedFileOf, type PackageIndex } from "../repo/package_index.ts";
import { digestMatches } from "../download/download_integrity.ts";
import { parsePackageFileName, signatureOf } from "../repo/package_file_name.ts";
import { formatBytes } from "../config/units.ts";
import { writeAll } from "../write_all.ts";

/** Where to import to, and what the databases say. */
export interface ImportOptions {
  /** The cache. */
  store: Pick<CacheStore, "root" | "finalPath" | "removeIfPresent">;
  /** The databases of the cache, already loaded (`PackageIndex.loadAll`). */
  index: Pick<PackageIndex, "foldersListing" | "expected">;
}

/** One package file that was imported. */
export interface ImportedPackage {
  /** Its file name. */
  fileName: string;
  /** Where it was put (one path per repository folder whose database lists it). */
  paths: string[];
  /** Its size. */
  bytes: number;
}

/** What {@linkcode importPackages} did. */
export interface ImportReport {
  /** Packages copied into the cache. */
  imported: ImportedPackage[];
  /** Signature files copied along with packages. */
  signatures: number;
  /** Packages skipped because every folder that lists them has them already. */
  alreadyPresent: string[];
  /** Packages that do not match what the databases say: not imported. */
  corrupt: { fileName: string; reason: string }[];
  /** Packages that no database in the cache lists: not imported. */
  unknown: string[];
  /** Other files of the directory (partial downloads, signatures without their package, anything else). */
  ignored: number;
  /** Files that could not be read or written. */
  failures: { path: string; message: string }[];
}

/**
 * Copies the verified packages of a pacman cache directory into the proxy's cache.
 *
 * @param dir The directory to import from (not searched recursively).
 * @param options The cache store and the loaded package index.
 * @returns What was imported and what was skipped, and why.
 * @throws {Error} when `dir` cannot be listed.
 */
export async function importPackages(dir: string, options: ImportOptions): Promise<ImportReport> {
  const report: ImportReport = {
    imported: [],
    signatures: 0,
    alreadyPresent: [],
    corrupt: [],
    unknown: [],
    ignored: 0,
    failures: [],
  };
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    throw new Error(`Cannot list ${dir}: ${messageOf(error)}; give a readable pacman cache directory.`, {
      cause: error,
    });
  }
  const names = new Set(entries.filter((e) => e.isFile || e.isSymlink).map((e) => e.name));
  const packages = [...names].filter((name) => parsePackageFileName(name) !== undefined).sort();
  const signatures = new Set(packages.map(signatureOf).filter((name) => names.has(name)));
  report.ignored = names.size - packages.length - signatures.size;
  for (const fileName of packages) {
    await importOne(dir, fileName, {
      ...options,
      report,
      hasSignature: signatures.has(signatureOf(fileName)),
    });
  }
  return report;
}

/**
 * An import report as text for people: what was skipped and why, then the counts.
 *
 * @param report What {@linkcode importPackages} returned.
 * @returns Lines without line breaks.
 */
export function describeImport(report: ImportReport): string[] {
  const lines: string[] = [];
  for (const item of report.imported) {
    for (const path of item.paths) lines.push(`imported ${path}`);
  }
  for (const item of report.corrupt) lines.push(`corrupt, skipped: ${item.fileName}: ${item.reason}`);
  for (const fileName of report.unknown) {
    lines.push(`unknown, skipped: ${fileName} (no database in the cache lists it)`);
  }
  for (const failure of report.failures) lines.push(`failed: ${failure.path}: ${failure.message}`);
  const bytes = report.imported.reduce((sum, item) => sum + item.bytes, 0);
  lines.push(
    `Imported ${report.imported.length} packages (${
      formatBytes(bytes)
    }) and ${report.signatures} signatures; ` +
      `${report.alreadyPresent.length} already cached, ${report.corrupt.length} corrupt, ` +
      `${report.unknown.length} unknown, ${report.ignored} other files ignored, ${report.failures.length} failed.`,
  );
  return lines;
}

async function importOne(
  dir: string,
  fileName: string,
  options: ImportOptions & { report: ImportReport; hasSignature: boolean },
): Promise<void> {
  const { store, index, report } = options;
  const source = join(dir, fileName);
  const folders = index.foldersListing(fileName);
  if (folders.length === 0) {
    report.unknown.push(fileName);
    return;
  }
  const targets = folders.map((folder) => {
    const segments = [...folder.split("/"), fileName];
    return { segments, path: store.finalPath(segments), expected: index.expected(segments)! };
  });
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(source);
  } catch (error) {
    report.failures.push({ path: source, message: messageOf(error) });
    return;
  }
  const present = await Promise.all(targets.map((target) => pathExists(target.path)));
  const missing = targets.filter((_, i) => !present[i]);
  const sized = missing.filter((target) => target.expected.compressedSize === info.size);
  if (missing.length === 0) {
    report.alreadyPresent.push(fileName);
  } else if (sized.length === 0) {
    report.corrupt.push({
      fileName,
      reason: `${info.size} bytes, but the database of ${folders.join(", ")} says ` +
        `${missing.map((target) => target.expected.compressedSize).join(", ")}`,
    });
    return;
  } else {
    const imported = await copyVerified(source, sized, { ...options, mtime: info.mtime });
    if (imported === undefined) return;
    report.imported.push({ fileName, paths: imported, bytes: info.size });
  }
  if (!options.hasSignature) return;
  const sigSource = join(dir, signatureOf(fileName));
  // The signature goes wherever the package now is, unless it is there already or differs from the one the
  // folder's database carries (%PGPSIG%), as a download of it would be checked.
  for (const target of targets) {
    const sigPath = signatureOf(target.path);
    if (!(await pathExists(target.path)) || (await pathExists(sigPath))) continue;
    try {
      const wrong = await signatureMismatch(
        sigSource,
        expectedFileOf(target.expected, signatureOf(fileName)),
      );
      if (wrong !== undefined) {
        report.corrupt.push({ fileName: signatureOf(fileName), reason: wrong });
        continue;
      }
      const tmp = tempPath(store.root);
      await copyToTemp(sigSource, tmp);
      await renameInto(tmp, sigPath);
      report.signatures++;
    } catch (error) {
      report.failures.push({ path: sigPath, message: messageOf(error) });
    }
  }
}

/**
 * Why the signature file `path` is not the one a database carries (`expected`), or undefined when it is, or when
 * the database carries none. A file of the signature's size (a few hundred bytes) is read whole.
 */
async function signatureMismatch(
  path: string,
  expected: { size: number; sha256: string } | undefined,
): Promise<string | undefined> {
  if (expected === undefined) return undefined;
  // The size first: a stray file named like a signature may be of any size, and is not read into memory.
  const { size } = await Deno.stat(path);
  if (size !== expected.size) {
    return `${size} bytes, but the database's signature has ${expected.size} bytes`;
  }
  const bytes = await Deno.readFile(path);
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  if (bytes.length === expected.size && digestMatches(sha256, expected.sha256)) return undefined;
  return `${bytes.length} bytes with SHA-256 ${sha256}, but the database's signature has ${expected.size} bytes ` +
    `with SHA-256 ${expected.sha256}...`;
}

/** Copies `source` to every target it matches (size and SHA-256); returns their paths, or undefined. */
async function copyVerified(
  source: string,
  targets: { path: string; expected: { sha256: string } }[],
  options: ImportOptions & { report: ImportReport; mtime: Date | null },
): Promise<string[] | undefined> {
  const { store, report } = options;
  const tmp = tempPath(store.root);
  try {
    let sha256: string;
    try {
      sha256 = await copyToTemp(source, tmp);
    } catch (error) {
      report.failures.push({ path: source, message: messageOf(error) });
      return undefined;
    }
    const matching = targets.filter((target) => target.expected.sha256 === sha256);
    if (matching.length === 0) {
      report.corrupt.push({
        fileName: basename(source),
        reason: `SHA-256 ${sha256}, but the database says ${
          targets.map((t) => t.expected.sha256).join(", ")
        }`,
      });
      return undefined;
    }
    if (options.mtime) await Deno.utime(tmp, new Date(), options.mtime);
    const done: string[] = [];
    for (const [i, target] of matching.entries()) {
      try {
        if (i === matching.length - 1) {
          await renameInto(tmp, target.path);
        } else {
          // Copied as the first was (its bytes on disk before the rename, so a crash leaves no empty file
          // under a package's name), and checked again: a copy is only as good as the bytes it wrote.
          const copy = tempPath(store.root);
          const copied = await copyToTemp(tmp, copy).catch(async (error) => {
            await store.removeIfPresent(copy).catch(() => {});
            throw error;
          });
          if (copied !== sha256) {
            await store.removeIfPresent(copy).catch(() => {});
            throw new Error(
              `the copy for ${target.path} has SHA-256 ${copied}, not ${sha256}; import it again`,
            );
          }
          if (options.mtime) await Deno.utime(copy, new Date(), options.mtime);
          await renameInto(copy, target.path);
        }
        done.push(target.path);
      } catch (error) {
        report.failures.push({ path: target.path, message: messageOf(error) });
      }
    }
    return done.length > 0 ? done : undefined;
  } finally {
    await store.removeIfPresent(tmp).catch(() => {});
  }
}

/** A fresh temporary file name under `.partial/` (same file system as the cache; start-up recovery removes leftovers). */
function tempPath(root: string): string {
  return join(root, PARTIAL_DIR, `import-${crypto.randomUUID()}.tmp`);
}

/** Copies a file, returning the SHA-256 of the bytes written. */
async function copyToTemp(source: string, tmp: string): Promise<string> {
  await Deno.mkdir(dirname(tmp), { recursive: true });
  const hash = createHash("sha256");
  const input = await Deno.open(source, { read: true });
  try {
    const output = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      const buffer = new Uint8Array(256 * 1024);
      while (true) {
        const read = await input.read(buffer);
        if (read === null) break;
        const chunk = buffer.subarray(0, read);
        hash.update(chunk);
        await writeAll(output, chunk);
      }
      await output.syncData();
    } finally {
      output.close();
    }
  } finally {
    input.close();
  }
  return hash.digest("hex");
}

async function renameInto(tmp: string, path: string): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.rename(tmp, path);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
