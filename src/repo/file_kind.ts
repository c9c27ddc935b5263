/**
 * What a file of a pacman repository is, told by its name alone: a package, a database, the signature of
 * either, or anything else. The kind decides how a file is cached, resumed and kept (see `download_manager.ts`,
 * `recovery.ts`).
 *
 * @module
 */

/** What a requested file is, judged by its name. */
export type FileKind = "package" | "package_signature" | "database" | "database_signature" | "other";

const PACKAGE_RE = /^.+\.pkg\.tar(\.(zst|xz|gz|bz2|lz4|lz|lrz|lzo|Z))?$/;
const DATABASE_RE = /^.+\.(db|files|(db|files)\.tar(\.(gz|zst|xz|bz2))?|links\.tar\.gz)$/;
const SIGNATURE_SUFFIX = ".sig";

/**
 * Tells what a file is from its name alone.
 *
 * - `"package"`: `*.pkg.tar`, optionally compressed (`.zst`, `.xz`, `.gz`, `.bz2`, `.lz4`, `.lz`, `.lrz`, `.lzo`,
 *   `.Z`: every `PKGEXT` makepkg takes);
 * - `"package_signature"`: a package name followed by `.sig`;
 * - `"database"`: `NAME.db`, `NAME.files`, `NAME.db.tar[.(gz|zst|xz|bz2)]`, `NAME.files.tar[.(gz|zst|xz|bz2)]`
 *   (the compressions `repo_db.ts` reads or names, and none), `NAME.links.tar.gz`;
 * - `"database_signature"`: a database name followed by `.sig`;
 * - `"other"`: everything else.
 *
 * @example
 * ```ts
 * classifyFileName("zstd-1.5.6-1-x86_64.pkg.tar.zst"); // "package"
 * classifyFileName("core.db.sig"); // "database_signature"
 * ```
 */
export function classifyFileName(name: string): FileKind {
  if (name.endsWith(SIGNATURE_SUFFIX)) {
    const base = name.slice(0, -SIGNATURE_SUFFIX.length);
    if (PACKAGE_RE.test(base)) return "package_signature";
    if (DATABASE_RE.test(base)) return "database_signature";
    return "other";
  }
  if (PACKAGE_RE.test(name)) return "package";
  if (DATABASE_RE.test(name)) return "database";
  return "other";
}
