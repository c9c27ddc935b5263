/**
 * Read the package entries of a pacman sync database (`core.db`, `extra.files`, ...) from a stream.
 *
 * A database is a tar archive, compressed with gzip, zstd or xz or not at all; the compression is told by the
 * magic bytes, never by the file name. Every `<name>-<version>/desc` entry yields the package's file name,
 * compressed size and SHA-256, which the cache uses to verify downloads. The archive is parsed as it streams
 * in: only the current tar header and `desc` text are held, never the whole archive.
 *
 * Decompression: gzip through the built-in `DecompressionStream`; zstd through the pure-JS `fzstd` frame
 * decoder, with each frame's content checksum verified here with `xxhash-wasm` (fzstd skips it, and the
 * `node:zlib` zstd of Deno neither reports truncation nor lets corrupt-data errors be caught); xz through
 * the WebAssembly `xz-decompress` (xz-embedded), which checks CRC32 and CRC64 but cannot read SHA-256
 * checked files.
 *
 * @module
 */

import { Decompress as ZstdDecompress } from "fzstd";
import xxhash from "xxhash-wasm";
import xzDecompress from "xz-decompress";

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
}

/** The database could not be read: corrupt, truncated, in an unknown format, or its source failed. */
export class RepoDbError extends Error {
  /**
   * @param message What was wrong with the database.
   * @param options `cause`: the underlying error, if any.
   */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "RepoDbError";
  }
}

/**
 * Read every package entry of a pacman sync database, keyed by package file name.
 *
 * Entries without a file name, name, version, size or SHA-256 are left out (such packages are simply
 * unknown). The whole stream is consumed, so the compression's own checksum is verified too.
 *
 * @param stream The database file as it comes from disk or from a mirror.
 * @returns The entries by `fileName`.
 * @throws {RepoDbError} when the data is not a readable database; the message says what was wrong.
 */
export async function readRepoDb(stream: ReadableStream<Uint8Array>): Promise<Map<string, PackageEntry>> {
  const input = new ByteReader(stream, sourceError);
  let archive: ByteReader | undefined;
  try {
    const format = detectFormat(await input.peek(TAR_BLOCK));
    archive = format === "tar"
      ? input
      : new ByteReader(await decompress(format, input), decoderError(format));
    return await readTarEntries(archive);
  } catch (error) {
    await archive?.cancel(error);
    await input.cancel(error);
    throw error instanceof RepoDbError ? error : sourceError(error);
  }
}

function sourceError(error: unknown): RepoDbError {
  return new RepoDbError(`Could not read the repository database: ${messageOf(error)}`, { cause: error });
}

/** Wraps what a decompressor throws; errors of the source pass through it unchanged. */
function decoderError(format: Format): (error: unknown) => RepoDbError {
  return (error) => {
    if (error instanceof RepoDbError) return error;
    const details = describeDecoderError(format, error);
    return new RepoDbError(
      `The repository database's ${format} data is corrupt or truncated (${details}); download it again.`,
      { cause: error },
    );
  };
}

type Format = "gzip" | "zstd" | "xz" | "tar";

const TAR_BLOCK = 512;
/** Largest `desc` or pax header accepted; real ones are a few hundred bytes. */
const MAX_TEXT_ENTRY = 1024 * 1024;

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
  if (head.length === TAR_BLOCK && (isZeroBlock(head) || startsWith(head.subarray(257), [...USTAR]))) {
    return "tar";
  }
  throw new RepoDbError(
    "The repository database is neither a tar archive nor gzip, zstd or xz compressed; is it really a pacman database?",
  );
}

function unsupported(format: string): RepoDbError {
  return new RepoDbError(
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
  if (format === "xz") return new xzDecompress.XzReadableStream(input.remaining());
  return zstdStream(input, await xxhashApi());
}

/** `xz-decompress` reports xz-embedded's status codes only; say what they mean. */
function describeDecoderError(format: Format, error: unknown): string {
  const message = messageOf(error);
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

// --- tar -------------------------------------------------------------------------------------------------

const USTAR = new TextEncoder().encode("ustar");
const decoder = new TextDecoder();

async function readTarEntries(archive: ByteReader): Promise<Map<string, PackageEntry>> {
  const entries = new Map<string, PackageEntry>();
  let paxPath: string | undefined;
  let paxSize: number | undefined;
  let longName: string | undefined;
  for (let index = 0;; index++) {
    const header = await archive.read(TAR_BLOCK);
    if (header.length > 0 && header.length < TAR_BLOCK) throw truncatedTar();
    if (header.length === 0) {
      throw new RepoDbError(
        "The repository database's tar archive ends without its end-of-archive marker (truncated?); download it again.",
      );
    }
    if (isZeroBlock(header)) break;
    checkHeaderChecksum(header, index);
    const type = String.fromCharCode(header[156]);
    if (type === "x" || type === "L") {
      const data = await readEntryData(archive, parseSize(header));
      if (type === "L") longName = cString(data);
      else ({ path: paxPath, size: paxSize } = parsePax(data));
      continue;
    }
    const size = paxSize ?? parseSize(header);
    const padded = size + ((TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK);
    if (type === "g" || type === "K") {
      // Global pax headers and GNU long link names do not concern the next entry's path or size.
      await skipExactly(archive, padded);
      continue;
    }
    const path = paxPath ?? longName ?? headerPath(header);
    paxPath = paxSize = longName = undefined;
    if ((type === "0" || type === "\0") && isDescPath(path)) {
      const entry = parseDesc(decoder.decode(await readEntryData(archive, size)));
      if (entry) entries.set(entry.fileName, entry);
    } else {
      await skipExactly(archive, padded);
    }
  }
  // Read to the end so that the decompressor verifies its checksum of the whole stream.
  await archive.skip(Infinity);
  return entries;
}

/** The data of a small entry (a `desc` or an extended header) and the padding after it. */
async function readEntryData(archive: ByteReader, size: number): Promise<Uint8Array> {
  if (size > MAX_TEXT_ENTRY) {
    throw new RepoDbError(
      `The repository database has a ${size} byte metadata entry; it is corrupt, download it again.`,
    );
  }
  const padded = size + ((TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK);
  const data = await archive.read(padded);
  if (data.length < padded) throw truncatedTar();
  return data.subarray(0, size);
}

async function skipExactly(archive: ByteReader, count: number): Promise<void> {
  if (await archive.skip(count) < count) throw truncatedTar();
}

function truncatedTar(): RepoDbError {
  return new RepoDbError(
    "The repository database's tar archive ends in the middle of an entry; download it again.",
  );
}

function checkHeaderChecksum(header: Uint8Array, index: number): void {
  const stored = parseOctal(header.subarray(148, 156));
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < TAR_BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : header[i];
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  if (stored !== unsigned && stored !== signed) {
    throw new RepoDbError(
      index === 0
        ? "The repository database is not a tar archive; is it really a pacman database?"
        : `The repository database's tar header #${
          index + 1
        } has a bad checksum; it is corrupt, download it again.`,
    );
  }
}

function parseSize(header: Uint8Array): number {
  const field = header.subarray(124, 136);
  if (field[0] & 0x80) {
    // GNU base-256 encoding for sizes of 8 GiB and more.
    let size = field[0] & 0x7f;
    for (let i = 1; i < field.length; i++) size = size * 256 + field[i];
    return size;
  }
  const size = parseOctal(field);
  if (size === undefined) {
    throw new RepoDbError(
      "The repository database has a tar header with an unreadable size; download it again.",
    );
  }
  return size;
}

function parseOctal(field: Uint8Array): number | undefined {
  const text = decoder.decode(field).replace(/[\0 ]+$/, "").replace(/^[ ]+/, "");
  if (!/^[0-7]+$/.test(text)) return undefined;
  return parseInt(text, 8);
}

function headerPath(header: Uint8Array): string {
  const name = cString(header.subarray(0, 100));
  const isPosixUstar = startsWith(header.subarray(257), [...USTAR, 0]);
  const prefix = isPosixUstar ? cString(header.subarray(345, 500)) : "";
  return prefix ? `${prefix}/${name}` : name;
}

function cString(field: Uint8Array): string {
  const end = field.indexOf(0);
  return decoder.decode(end === -1 ? field : field.subarray(0, end));
}

/** Parse pax extended header records (`"<length> <key>=<value>\n"`), keeping `path` and `size`. */
function parsePax(bytes: Uint8Array): { path?: string; size?: number } {
  const result: { path?: string; size?: number } = {};
  let offset = 0;
  while (offset < bytes.length) {
    const space = bytes.indexOf(0x20, offset);
    const length = space === -1 ? NaN : Number(decoder.decode(bytes.subarray(offset, space)));
    if (!Number.isInteger(length) || length <= space - offset || offset + length > bytes.length) {
      throw new RepoDbError("The repository database has a malformed pax header; download it again.");
    }
    const record = decoder.decode(bytes.subarray(space + 1, offset + length - 1));
    const equals = record.indexOf("=");
    const key = record.slice(0, equals);
    const value = record.slice(equals + 1);
    if (key === "path") result.path = value;
    if (key === "size" && /^\d+$/.test(value)) result.size = Number(value);
    offset += length;
  }
  return result;
}

function isDescPath(path: string): boolean {
  const parts = path.replace(/^\.\//, "").split("/").filter((part) => part !== "");
  return parts.length === 2 && parts[1] === "desc";
}

// --- desc ------------------------------------------------------------------------------------------------

/** Parse the `%FIELD%` sections of a `desc` entry; undefined when a needed field is missing. */
function parseDesc(text: string): PackageEntry | undefined {
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
  return { name, version, fileName, compressedSize: Number(csize), sha256: sha256.toLowerCase() };
}

// --- zstd ------------------------------------------------------------------------------------------------

type XxhashApi = Awaited<ReturnType<typeof xxhash>>;
let xxhashPromise: Promise<XxhashApi> | undefined;

function xxhashApi(): Promise<XxhashApi> {
  xxhashPromise ??= xxhash();
  return xxhashPromise;
}

const ZSTD_MAGIC = 0xfd2fb528;
/** zstd's own default limit for the decoder window (window log 27). */
const MAX_ZSTD_WINDOW = 2 ** 27;

/**
 * Decompress zstd frame by frame: the frame and block headers are walked here so that each frame goes to its
 * own fzstd decoder and its content checksum can be compared with the XXH64 of what it produced.
 */
function zstdStream(input: ByteReader, hashes: XxhashApi): ReadableStream<Uint8Array> {
  let frame:
    | { decoder: ZstdDecompress; hash: ReturnType<XxhashApi["create64"]>; checksum: boolean }
    | undefined;
  let output: Uint8Array[] = [];
  const need = async (count: number, what: string): Promise<Uint8Array> => {
    const bytes = await input.read(count);
    if (bytes.length < count) throw new Error(`zstd data ends in the middle of ${what}`);
    return bytes;
  };
  const startFrame = async (magicBytes: Uint8Array): Promise<void> => {
    const magic = readUint32LE(magicBytes, 0);
    if ((magic & 0xfffffff0) >>> 0 === 0x184d2a50) {
      const size = readUint32LE(await need(4, "a skippable frame"), 0);
      if (await input.skip(size) < size) throw new Error("zstd data ends in the middle of a skippable frame");
      return;
    }
    if (magic !== ZSTD_MAGIC) throw new Error("data after the last zstd frame is not a zstd frame");
    const descriptor = (await need(1, "a frame header"))[0];
    const singleSegment = (descriptor >> 5) & 1;
    const contentSizeBytes = [singleSegment, 2, 4, 8][descriptor >> 6];
    const dictionaryBytes = [0, 1, 2, 4][descriptor & 3];
    const rest = await need(1 - singleSegment + dictionaryBytes + contentSizeBytes, "a frame header");
    if (windowSize(rest, singleSegment === 1, contentSizeBytes) > MAX_ZSTD_WINDOW) {
      throw new Error("zstd frame needs a window of more than 128 MiB, which is refused");
    }
    const hash = hashes.create64();
    const decoder = new ZstdDecompress((chunk) => {
      if (chunk.length === 0) return;
      hash.update(chunk);
      output.push(chunk);
    });
    frame = { decoder, hash, checksum: ((descriptor >> 2) & 1) === 1 };
    decoder.push(concat([magicBytes, Uint8Array.of(descriptor), rest]));
  };
  const nextBlock = async (current: NonNullable<typeof frame>): Promise<void> => {
    const header = await need(3, "a block");
    const last = (header[0] & 1) === 1;
    const type = (header[0] >> 1) & 3;
    const size = (header[0] >> 3) | (header[1] << 5) | (header[2] << 13);
    if (type === 3) throw new Error("zstd block of reserved type");
    current.decoder.push(concat([header, await need(type === 1 ? 1 : size, "a block")]));
    if (!last) return;
    frame = undefined;
    if (!current.checksum) {
      current.decoder.push(new Uint8Array(0), true);
      return;
    }
    const checksum = await need(4, "a frame checksum");
    current.decoder.push(checksum, true);
    const actual = Number(current.hash.digest() & 0xffffffffn);
    if (actual !== readUint32LE(checksum, 0)) throw new Error("zstd frame content checksum does not match");
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (output.length === 0) {
        if (frame) {
          await nextBlock(frame);
          continue;
        }
        const magic = await input.read(4);
        if (magic.length === 0) {
          controller.close();
          return;
        }
        if (magic.length < 4) throw new Error("zstd data ends in the middle of a frame header");
        await startFrame(magic);
      }
      for (const chunk of output) controller.enqueue(chunk);
      output = [];
    },
    cancel(reason) {
      return input.cancel(reason);
    },
  });
}

/** The decoder's buffer size that a frame header asks for (fzstd allocates it at once). */
function windowSize(header: Uint8Array, singleSegment: boolean, contentSizeBytes: number): number {
  if (!singleSegment) {
    const exponent = header[0] >> 3;
    const base = 2 ** (10 + exponent);
    return base + (base / 8) * (header[0] & 7);
  }
  // A single-segment frame's window is its content size, stored little-endian after the dictionary id.
  const field = header.subarray(header.length - contentSizeBytes);
  let size = 0;
  for (let i = field.length - 1; i >= 0; i--) size = size * 256 + field[i];
  return contentSizeBytes === 2 ? size + 256 : size;
}

function readUint32LE(bytes: Uint8Array, offset: number): number {
  return (bytes[offset] | (bytes[offset + 1] << 8) | (bytes[offset + 2] << 16) |
    (bytes[offset + 3] << 24)) >>> 0;
}

// --- bytes -----------------------------------------------------------------------------------------------

/** Reads exact byte counts from a stream, holding only what has been read ahead of the caller. */
class ByteReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #wrapError: (error: unknown) => Error;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #done = false;

  constructor(stream: ReadableStream<Uint8Array>, wrapError: (error: unknown) => Error) {
    this.#reader = stream.getReader();
    this.#wrapError = wrapError;
  }

  /** Up to `count` bytes without consuming them (fewer only at the end of the stream). */
  async peek(count: number): Promise<Uint8Array> {
    await this.#fill(count);
    return this.#take(Math.min(count, this.#buffered), false);
  }

  /** Exactly `count` bytes, or fewer only at the end of the stream. */
  async read(count: number): Promise<Uint8Array> {
    await this.#fill(count);
    return this.#take(Math.min(count, this.#buffered), true);
  }

  /** Discard up to `count` bytes; returns how many there were. */
  async skip(count: number): Promise<number> {
    let skipped = 0;
    while (skipped < count) {
      if (this.#buffered === 0 && !(await this.#pullChunk())) break;
      const first = this.#chunks[0];
      const step = Math.min(first.length, count - skipped);
      this.#chunks[0] = first.subarray(step);
      if (this.#chunks[0].length === 0) this.#chunks.shift();
      this.#buffered -= step;
      skipped += step;
    }
    return skipped;
  }

  /** The unread rest as a stream (buffered bytes first); the reader must not be used after this. */
  remaining(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (this.#buffered === 0 && !(await this.#pullChunk())) {
          controller.close();
          return;
        }
        const chunk = this.#chunks.shift()!;
        this.#buffered -= chunk.length;
        controller.enqueue(chunk);
      },
      cancel: (reason) => this.cancel(reason),
    });
  }

  /** Stop reading and release the source. */
  async cancel(reason?: unknown): Promise<void> {
    this.#done = true;
    this.#chunks = [];
    this.#buffered = 0;
    await this.#reader.cancel(reason).catch(() => {});
  }

  async #fill(count: number): Promise<void> {
    while (this.#buffered < count && await this.#pullChunk());
  }

  /** Read the next non-empty chunk into the buffer; false at the end of the stream. */
  async #pullChunk(): Promise<boolean> {
    while (!this.#done) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await this.#reader.read();
      } catch (error) {
        this.#done = true;
        throw this.#wrapError(error);
      }
      if (result.done) {
        this.#done = true;
      } else if (result.value.length > 0) {
        this.#chunks.push(result.value);
        this.#buffered += result.value.length;
        return true;
      }
    }
    return false;
  }

  #take(count: number, consume: boolean): Uint8Array {
    if (count === 0) return new Uint8Array(0);
    const first = this.#chunks[0];
    const bytes = first.length >= count ? first.subarray(0, count) : concat(this.#chunks, count);
    if (!consume) return bytes;
    let left = count;
    while (left > 0) {
      const chunk = this.#chunks[0];
      if (chunk.length > left) {
        this.#chunks[0] = chunk.subarray(left);
        left = 0;
      } else {
        this.#chunks.shift();
        left -= chunk.length;
      }
    }
    this.#buffered -= count;
    return bytes;
  }
}

/** The first `length` bytes (all by default) of the chunks, joined. */
function concat(
  chunks: Uint8Array[],
  length = chunks.reduce((sum, chunk) => sum + chunk.length, 0),
): Uint8Array {
  const result = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    if (offset >= length) break;
    const part = chunk.subarray(0, length - offset);
    result.set(part, offset);
    offset += part.length;
  }
  return result;
}

function startsWith(bytes: Uint8Array, prefix: number[] | Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

function isZeroBlock(block: Uint8Array): boolean {
  for (const byte of block) if (byte !== 0) return false;
  return true;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
