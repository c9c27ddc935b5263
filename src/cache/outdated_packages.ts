/**
 * Cached packages that the newest database no longer vouches for. A repository rebuilt in place (a custom
 * repository's `repo-add` of a package built again without a new `pkgrel`) lists the same file name with a new
 * size and SHA-256; the cached copy, verified against the older database, would be served to every client that
 * synced the newer one, and pacman refuses it ("invalid or corrupted package (checksum)"). When a database is
 * indexed, the cached files it lists differently are removed, with their `.sig` (signed again with the
 * package), so that the next request downloads and verifies the current file.
 *
 * Nothing is read from the package files: a cached package goes when its size differs from the entry's, or when
 * the database said another SHA-256 of the same file name before (the cached copy was verified against that
 * one), since a rebuilt archive may keep the size. A cached `.sig` is compared with the signature the database
 * carries (`%PGPSIG%`), when it carries one: its size and SHA-256, read from the few hundred bytes of the file;
 * one that differs (stored before flexo checked signatures, or a package signed again) is removed the same way.
 *
 * Only custom repositories' folders (`custom_repo/NAME/...`) are looked at. An official repository never
 * reuses a file name for another build (every rebuild has a new `pkgrel`), so a database of one that lists a
 * cached file with another size is broken or hostile: the verified copy stays (and can be served when every
 * mirror is down), rather than be deleted on a mirror's word.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { join, relative, sep } from "node:path";
import type { PackageEntry } from "../repo/repo_db_desc.ts";
import { expectedFileOf } from "../repo/package_index.ts";
import { signedFileOf } from "../repo/package_file_name.ts";
import { sha256Hex } from "../repo/sha256.ts";
import { CUSTOM_REPO_PREFIX } from "../repo/request_path.ts";
import { describeError } from "../describe_error.ts";
import type { CacheStore } from "./cache_store.ts";

const log = getLogger(["flexo", "integrity"]);

/** A cached file removed because the database lists another file under its name. */
export interface OutdatedFile {
  /** The removed file (a package or its `.sig`). */
  path: string;
  /** Its size in bytes. */
  bytes: number;
}

/**
 * Removes the cached packages of `dir` whose size differs from what `entries` (a database of that folder) says
 * of the same file name, and their signatures, and the signatures that differ from the one the database carries
 * for their package. Failures are logged: the file then stays as it was.
 *
 * @param dir The cache folder of the database.
 * @param entries The database's entries by file name.
 * @param store The store to remove files through (its remembered files check the disk again).
 * @param previous What the same database said before, if it was read before.
 * @returns The files removed.
 */
export async function removeOutdatedPackages(
  dir: string,
  entries: ReadonlyMap<string, PackageEntry>,
  store: Pick<CacheStore, "removeIfPresent" | "root">,
  previous?: ReadonlyMap<string, PackageEntry>,
): Promise<OutdatedFile[]> {
  const removed: OutdatedFile[] = [];
  const folder = relative(store.root, dir).split(sep);
  if (folder[0] !== CUSTOM_REPO_PREFIX || folder.length < 2) return removed;
  let names: string[];
  try {
    names = (await Array.fromAsync(Deno.readDir(dir))).filter((e) => e.isFile).map((e) => e.name);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      log.warn("Cannot list {dir} to find outdated packages: {error}", { dir, error: describeError(error) });
    }
    return removed;
  }
  const present = new Set(names);
  for (const name of names) {
    const entry = entries.get(name);
    if (!entry) {
      const signature = await outdatedSignature(dir, name, entries);
      if (signature !== undefined && await store.removeIfPresent(signature.path)) removed.push(signature);
      continue;
    }
    const path = join(dir, name);
    try {
      const size = (await Deno.stat(path)).size;
      const before = previous?.get(name)?.sha256;
      const rebuilt = before !== undefined && before !== entry.sha256;
      if (size === entry.compressedSize && !rebuilt) continue;
      log.warn(
        "{path} is {size} bytes, the database now lists {expected} bytes{sha} (the package was rebuilt under " +
          "the same name): removed, with its signature, so that the next request gets the current file",
        { path, size, expected: entry.compressedSize, sha: rebuilt ? " and another SHA-256" : "" },
      );
      if (await store.removeIfPresent(path)) removed.push({ path, bytes: size });
      const signature = `${path}.sig`;
      if (!present.has(`${name}.sig`)) continue;
      const signatureBytes = (await Deno.stat(signature)).size;
      if (await store.removeIfPresent(signature)) removed.push({ path: signature, bytes: signatureBytes });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      log.warn("Cannot remove the outdated {path}: {error}", { path, error: describeError(error) });
    }
  }
  return removed;
}

/**
 * A cached `.sig` of `dir` that differs from the signature its package's entry carries (`%PGPSIG%`: size and
 * the first 16 bytes of its SHA-256), as the file to remove; undefined when it matches, when `name` is no
 * package's signature, or when the database carries no signature for it. A signature is a few hundred bytes:
 * reading it costs about what the package's stat does.
 */
async function outdatedSignature(
  dir: string,
  name: string,
  entries: ReadonlyMap<string, PackageEntry>,
): Promise<OutdatedFile | undefined> {
  const packageName = signedFileOf(name);
  const entry = packageName === undefined ? undefined : entries.get(packageName);
  const expected = entry && expectedFileOf(entry, name);
  if (expected === undefined) return undefined;
  const path = join(dir, name);
  try {
    const size = (await Deno.stat(path)).size;
    if (size === expected.size && sha256Hex(await Deno.readFile(path)).startsWith(expected.sha256)) {
      return undefined;
    }
    log.warn(
      "{path} differs from the signature the database carries ({size} bytes, {expected} expected): removed, so " +
        "that the next request gets the right one",
      { path, size, expected: expected.size },
    );
    return { path, bytes: size };
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      log.warn("Cannot check the signature {path}: {error}", { path, error: describeError(error) });
    }
    return undefined;
  }
}
