/**
 * Read the package entries of a pacman sync database (`core.db`, `extra.files`, ...) from a stream.
 *
 * A database is a tar archive, compressed with gzip, zstd or xz or not at all; the compression is told by the
 * magic bytes, never by the file name. Every `<name>-<version>/desc` entry yields the package's file name,
 * compressed size and SHA-256, which the cache uses to verify downloads. The archive is parsed as it streams
 * in: only the current tar header and `desc` text are held, never the whole archive.
 *
 * The steps live in their own modules: `byte_reader.ts` (exact-size reads), `zstd_stream.ts` (zstd with its
 * checksums verified), `repo_db_tar.ts` (the tar walk) and `repo_db_desc.ts` (the `desc` fields). This module
 * tells the format and runs them.
 *
 * Decompression: gzip through the built-in `DecompressionStream`; zstd through `zstd_stream.ts`; xz through
 * the WebAssembly `xz-decompress` (xz-embedded), which checks CRC32 and CRC64 but cannot read SHA-256
 * checked files.
 *
 * @module
 */

import { ByteReader, startsWith } from "../byte_reader.ts";
import {
  isDescPath,
  type PackageEntry,
  parseDesc,
  RepoDbError,
  UnsupportedDatabaseError,
} from "./repo_db_desc.ts";
import { looksLikeTar, readTarTexts, TAR_BLOCK } from "./repo_db_tar.ts";
import { describeError } from "../logging.ts";

export { type PackageEntry, RepoDbError, UnsupportedDatabaseError } from "./repo_db_desc.ts";

/**
 * The most packages one database may list: about 30 MiB of entries. Arch's largest repository lists about
 * 15,000; a database listing more (a broken or hostile mirror: a few MiB of zstd can list millions) would fill
 * the memory of a small board.
 */
export const MAX_DATABASE_ENTRIES = 100_000;

/** Options of {@linkcode readRepoDb}. */
export interface ReadRepoDbOptions {
  /** The most packages held; default {@linkcode MAX_DATABASE_ENTRIES}. */
  maxEntries?: number;
}

/**
 * Read every package entry of a pacman sync database, keyed by package file name.
 *
 * Entries without a file name, name, version, size or SHA-256 are left out (such packages are simply
 * unknown). The whole stream is consumed, so the compression's own checksum is verified too, also when the
 * database lists more than `maxEntries` packages: it is then refused with an {@linkcode UnsupportedDatabaseError}
 * once it has been checked to its end, without holding more than `maxEntries`.
 *
 * @param stream The database file as it comes from disk or from a mirror.
 * @param options `maxEntries`: the most packages held.
 * @returns The entries by `fileName`.
 * @throws {RepoDbError} when the data is not a readable database; the message says what was wrong. It is an
 *   {@linkcode UnsupportedDatabaseError} when only the compression is one that cannot be read here.
 */
export async function readRepoDb(
  stream: ReadableStream<Uint8Array>,
  options: ReadRepoDbOptions = {},
): Promise<Map<string, PackageEntry>> {
  const maxEntries = options.maxEntries ?? MAX_DATABASE_ENTRIES;
  const input = new ByteReader(stream, sourceError);
  let archive: ByteReader | undefined;
  try {
    const format = detectFormat(await input.peek(TAR_BLOCK));
    archive = format === "tar"
      ? input
      : new ByteReader(await decompress(format, input), decoderError(format));
    const entries = new Map<string, PackageEntry>();
    let tooMany = false;
    await readTarTexts(archive, {
      wanted: isDescPath,
      onText(_path, text) {
        const entry = parseDesc(text);
        if (!entry) return;
        if (entries.size < maxEntries || entries.has(entry.fileName)) entries.set(entry.fileName, entry);
        else tooMany = true;
      },
    });
    if (tooMany) {
      entries.clear();
      throw new UnsupportedDatabaseError(
        `The repository database lists more than ${maxEntries} packages, more than any real repository; it is ` +
          "not read, and its packages are not verified. Check the mirror it came from.",
      );
    }
    return entries;
  } catch (error) {
    await archive?.cancel(error);
    await input.cancel(error);
    throw error instanceof RepoDbError ? error : sourceError(error);
  }
}

function sourceError(error: unknown): RepoDbError {
  return new RepoDbError(`Could not read the repository database: ${describeError(error)}`, { cause: error });
}

/** Wraps what a decompressor throws; errors of the source pass through it unchanged. */
function decoderError(format: Format): (error: unknown) => RepoDbError {
  return (error) => {
    if (error instanceof RepoDbError) return error;
    const details = describeDecoderError(format, error);
    if (format === "xz" && isUnsupportedXz(error)) {
      return new UnsupportedDatabaseError(
        `The repository database's xz data uses options that cannot be read here (${details}); compress it with ` +
          "xz's default CRC64 check, or with gzip or zstd.",
        { cause: error },
      );
    }
    return new RepoDbError(
      `The repository database's ${format} data is corrupt or truncated (${details}); download it again.`,
      { cause: error },
    );
  };
}

type Format = "gzip" | "zstd" | "xz" | "tar";

function detectFormat(head: Uint8Array): Format {
  if (head.length === 0) throw new RepoDbError("The repository database is empty; download it again.");
  if (startsWith(head, [0x1f, 0x8b])) return "gzip";
  if (startsWith(head, [0x28, 0xb5, 0x2f, 0xfd])) return "zstd";
  if (head.length >= 4 && (head[0] & 0xf0) === 0x50 && startsWith(head.subarray(1), [0x2a, 0x4d, 0x18])) {
    return "zstd"; // starts with a skippable frame
  }
  if (startsWith(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return "xz";
  if (startsWith(head, [0x42, 0x5a, 0x68])) throw unsupported("bzip2");
  if (startsWith(head, [0x04, 0x22, 0x4d, 0x18])) throw unsupported("lz4");
  if (startsWith(head, [0x4c, 0x5a, 0x49, 0x50])) throw unsupported("lzip");
  if (startsWith(head, [0x4c, 0x52, 0x5a, 0x49])) throw unsupported("lrzip");
  if (startsWith(head, [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a])) throw unsupported("lzop");
  if (startsWith(head, [0x1f, 0x9d])) throw unsupported("compress");
  if (looksLikeTar(head)) return "tar";
  throw new RepoDbError(
    "The repository database is neither a tar archive nor gzip, zstd or xz compressed; is it really a pacman database?",
  );
}

function unsupported(format: string): UnsupportedDatabaseError {
  return new UnsupportedDatabaseError(
    `The repository database is ${format} compressed, which is not supported; use gzip, zstd or xz (repo-add picks ` +
      "the compression from the database name, e.g. NAME.db.tar.zst).",
  );
}

async function decompress(format: Format, input: ByteReader): Promise<ReadableStream<Uint8Array>> {
  if (format === "gzip") {
    // The DOM typing of DecompressionStream's writable side (BufferSource) does not match Uint8Array streams.
    const gunzip = new DecompressionStream("gzip") as unknown as ReadableWritablePair<Uint8Array, Uint8Array>;
    return input.remaining().pipeThrough(gunzip);
  }
  if (format === "xz") {
    // Loaded when the first xz database is read: importing it takes about 50 ms of start-up and a few MiB,
    // which a proxy whose repositories use gzip or zstd (as Arch's do) never needs.
    const { default: xzDecompress } = await import("xz-decompress");
    return new xzDecompress.XzReadableStream(input.remaining());
  }
  // fzstd and xxhash-wasm are loaded by the first zstd database read, after the listener answers: nothing
  // before the first answer needs them, nor does a proxy with no synced database yet.
  const { zstdStream } = await import("./zstd_stream.ts");
  return await zstdStream(input);
}

/**
 * xz-embedded's XZ_UNSUPPORTED_CHECK (2) and XZ_OPTIONS_ERROR (6): valid xz that it cannot read (it has checked
 * the stream header's CRC32 before it says so), such as a stream with a SHA-256 check.
 */
function isUnsupportedXz(error: unknown): boolean {
  const code = /error code (\d+)/.exec(describeError(error))?.[1];
  return code === "2" || code === "6";
}

/** `xz-decompress` reports xz-embedded's status codes only; say what they mean. */
function describeDecoderError(format: Format, error: unknown): string {
  const message = describeError(error);
  const code = format === "xz" ? /error code (\d+)/.exec(message)?.[1] : undefined;
  const meanings: Record<string, string> = {
    "2": "unsupported integrity check",
    "5": "not xz data",
    "6": "unsupported xz options, such as a SHA-256 integrity check",
    "7": "corrupt xz data",
    "8": "xz data ends too early",
  };
  return code !== undefined && meanings[code] ? `${meanings[code]}: ${message}` : message;
}
