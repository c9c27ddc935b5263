/**
 * zstd decompression that verifies what it produced: the pure-JS `fzstd` decoder does the decoding, but it
 * skips the frames' content checksums, so the frame and block headers are walked here, each frame goes to its
 * own decoder, and its XXH64 (from `xxhash-wasm`) is compared with the checksum the frame carries. (The
 * `node:zlib` zstd of Deno neither reports truncation nor lets corrupt-data errors be caught.)
 *
 * @module
 */

import { Decompress as ZstdDecompress } from "fzstd";
import xxhash from "xxhash-wasm";
import { type ByteReader, concat } from "../byte_reader.ts";

type XxhashApi = Awaited<ReturnType<typeof xxhash>>;

const ZSTD_MAGIC = 0xfd2fb528;
/** zstd's own default limit for the decoder window (window log 27). */
const MAX_ZSTD_WINDOW = 2 ** 27;

/**
 * Decompresses the zstd frames (and skips the skippable frames) that `input` holds until its end.
 *
 * The stream errors with a plain `Error` saying what is wrong when the data is truncated, is not zstd after
 * the last frame, has a block of reserved type, asks for a window over 128 MiB (refused before fzstd would
 * allocate it), or a frame's content checksum does not match; errors of `input` itself pass through.
 *
 * @param input Positioned at the first frame; the stream reads it to its end and cancels it on cancel.
 */
export async function zstdStream(input: ByteReader): Promise<ReadableStream<Uint8Array>> {
  // An instance per stream, not one kept by the module: a database is read every few hours, and the
  // instance (a few KiB of WebAssembly and one 64 KiB page) costs well under a millisecond to make.
  return checkedFrames(input, await xxhash());
}

/**
 * Decompress zstd frame by frame: the frame and block headers are walked here so that each frame goes to its
 * own fzstd decoder and its content checksum can be compared with the XXH64 of what it produced.
 */
function checkedFrames(input: ByteReader, hashes: XxhashApi): ReadableStream<Uint8Array> {
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
