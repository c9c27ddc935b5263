/**
 * What a pacman sync database says about one package: the `%FIELD%` sections of its `desc` entry that the
 * cache uses to verify downloads, and the error every step of reading a database throws.
 *
 * @module
 */

import { sha256Hex } from "./sha256.ts";

/** One package as a repository database describes it. */
export interface PackageEntry {
  /** Package name (`%NAME%`). */
  name: string;
  /** Full version `[epoch:]pkgver-pkgrel` (`%VERSION%`). */
  version: string;
  /** File name of the package archive on the mirror (`%FILENAME%`). */
  fileName: string;
  /** Size in bytes of the package archive (`%CSIZE%`). */
  compressedSize: number;
  /** Lower-case hex SHA-256 of the package archive (`%SHA256SUM%`). */
  sha256: string;
  /**
   * Size in bytes of the package's detached signature, the `.sig` file, when the database carries it
   * (`%PGPSIG%`, its base64); undefined otherwise (custom repositories often leave it out).
   */
  signatureSize: number | undefined;
  /**
   * The first 16 bytes of the SHA-256 of that signature, as 32 lower-case hex digits (a prefix of its
   * SHA-256 in the form of {@linkcode PackageEntry.sha256}); undefined without `%PGPSIG%`. The signature
   * itself is not kept: 16 bytes tell a corrupt `.sig` from the right one, at a tenth of its memory.
   */
  signatureSha256: string | undefined;
}

/** Hex digits of a signature's SHA-256 that an index entry keeps ({@linkcode PackageEntry.signatureSha256}). */
export const SIGNATURE_DIGEST_HEX_DIGITS = 32;

/** The database could not be read: corrupt, truncated, in an unknown format, or its source failed. */
export class RepoDbError extends Error {
  /**
   * Creates the error.
   *
   * @param message What was wrong with the database.
   * @param options `cause`: the underlying error, if any.
   */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "RepoDbError";
  }
}

/**
 * The database may be perfectly valid, but flexo does not read it: it is in a compression flexo cannot read
 * (bzip2, lz4, lzip, lrzip, lzop, compress, or xz with a SHA-256 check), all of which repo-add or xz may write,
 * or it lists more packages than flexo holds in memory.
 */
export class UnsupportedDatabaseError extends RepoDbError {
  /**
   * Creates the error.
   *
   * @param message What the database's compression is and what to use instead.
   * @param options `cause`: the underlying error, if any.
   */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "UnsupportedDatabaseError";
  }
}

/** True for the archive path of a package's `desc` entry: `<name>-<version>/desc`, optionally below `./`. */
export function isDescPath(path: string): boolean {
  const parts = path.replace(/^\.\//, "").split("/").filter((part) => part !== "");
  return parts.length === 2 && parts[1] === "desc";
}

/**
 * Parses the `%FIELD%` sections of a `desc` entry.
 *
 * @returns The entry, or undefined when a needed field (file name, name, version, size, SHA-256) is missing:
 *   such a package is simply unknown.
 * @throws {RepoDbError} when the size or SHA-256 is present but malformed: the database is corrupt.
 */
export function parseDesc(text: string): PackageEntry | undefined {
  const fields = new Map<string, string>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const match = /^%([A-Z0-9]+)%$/.exec(lines[i]);
    if (match && i + 1 < lines.length) fields.set(match[1], lines[i + 1].trim());
  }
  const fileName = fields.get("FILENAME");
  const name = fields.get("NAME");
  const version = fields.get("VERSION");
  const csize = fields.get("CSIZE");
  const sha256 = fields.get("SHA256SUM");
  if (!fileName || !name || !version || csize === undefined || sha256 === undefined) return undefined;
  if (!/^\d+$/.test(csize) || !/^[0-9a-fA-F]{64}$/.test(sha256)) {
    throw new RepoDbError(
      `The repository database's entry for ${fileName} has a malformed size or SHA-256; it is corrupt, download it again.`,
    );
  }
  const signature = decodeSignature(fields.get("PGPSIG"));
  return {
    name: detached(name),
    version: detached(version),
    fileName: detached(fileName),
    compressedSize: Number(csize),
    sha256: detached(sha256.toLowerCase()),
    signatureSize: signature?.length,
    signatureSha256: signature && sha256Hex(signature, SIGNATURE_DIGEST_HEX_DIGITS),
  };
}

/**
 * The bytes of a `%PGPSIG%` field (base64, as repo-add writes it), or undefined when there is none or it is not
 * base64: such a package's `.sig` is then not checked, as without the field (pacman reports the bad field
 * itself when it reads the database).
 */
function decodeSignature(base64: string | undefined): Uint8Array | undefined {
  if (!base64) return undefined;
  try {
    const bytes = Uint8Array.fromBase64(base64);
    return bytes.length > 0 ? bytes : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A copy of `text` that shares no memory with the string it was cut from. V8 makes a substring of a longer
 * string (`split`, `slice`) a view that keeps the whole source alive: an index entry cut from its `desc` text would
 * keep all of it (about 1-2 KiB per package, over 20 MiB for the extra repository).
 */
function detached(text: string): string {
  return JSON.parse(JSON.stringify(text));
}
