/**
 * Walks the tar archive inside a pacman sync database as it streams in, holding only the current header and
 * the small text entries the caller wants (ustar, pax extended headers and GNU long names are understood).
 * Every header checksum is verified, and a truncated archive is an error, never a short list.
 *
 * @module
 */

import { type ByteReader, startsWith } from "../byte_reader.ts";
import { RepoDbError } from "./repo_db_desc.ts";

/** Size of a tar header and the unit that entry data is padded to. */
export const TAR_BLOCK = 512;
/** Largest `desc` or pax header accepted; real ones are a few hundred bytes. */
const MAX_TEXT_ENTRY = 1024 * 1024;

const USTAR = new TextEncoder().encode("ustar");
const decoder = new TextDecoder();

/** Options for {@linkcode readTarTexts}. */
export interface ReadTarTextsOptions {
  /** Whether the regular file at `path` is to be read; every other entry is skipped unread. */
  wanted(path: string): boolean;
  /** Receives each wanted entry's data, decoded as UTF-8. */
  onText(path: string, text: string): void;
}

/** True when a first block of {@linkcode TAR_BLOCK} bytes looks like a tar archive (ustar or empty). */
export function looksLikeTar(head: Uint8Array): boolean {
  return head.length === TAR_BLOCK && (isZeroBlock(head) || startsWith(head.subarray(257), [...USTAR]));
}

/**
 * Reads the archive to its end-of-archive marker, handing the wanted entries to `options.onText`, then reads
 * the stream to its end so that a decompressor underneath verifies its checksum of the whole stream.
 *
 * @throws {RepoDbError} when the archive is truncated, a header is corrupt, or a wanted entry is over 1 MiB.
 */
export async function readTarTexts(archive: ByteReader, options: ReadTarTextsOptions): Promise<void> {
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
    if ((type === "0" || type === "\0") && options.wanted(path)) {
      options.onText(path, decoder.decode(await readEntryData(archive, size)));
    } else {
      await skipExactly(archive, padded);
    }
  }
  // Read to the end so that the decompressor verifies its checksum of the whole stream.
  await archive.skip(Infinity);
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

function isZeroBlock(block: Uint8Array): boolean {
  for (const byte of block) if (byte !== 0) return false;
  return true;
}
