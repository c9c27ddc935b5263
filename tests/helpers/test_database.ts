/**
 * Small valid pacman sync databases made in memory, for tests that serve databases from fake mirrors: since
 * issue 15 a database must parse before the proxy releases and commits it.
 *
 * @module
 */

import { concat } from "../../src/byte_reader.ts";
import { testBytes } from "./fake_fetch.ts";

const BLOCK = 512;
const encoder = new TextEncoder();

/**
 * An uncompressed tar database of exactly `blocks` × 512 bytes (at least 5) whose content depends on `seed`: one
 * package's `desc` entry, a filler entry of pseudo-random bytes, and the end-of-archive marker.
 */
export function testDatabase(seed = 1, blocks = 10): Uint8Array {
  if (blocks < 5) throw new Error("testDatabase: a database with one desc entry needs at least 5 blocks");
  const name = `pkg${seed}-1-1`;
  const desc = encoder.encode(
    `%FILENAME%\n${name}-x86_64.pkg.tar.zst\n\n%NAME%\npkg${seed}\n\n%VERSION%\n1-1\n\n` +
      `%CSIZE%\n${1000 + seed}\n\n%SHA256SUM%\n${"0".repeat(64)}\n`,
  );
  const fillerBlocks = blocks - 5;
  return concat([
    tarEntry(`${name}/desc`, desc),
    tarHeader(`${name}/filler`, fillerBlocks * BLOCK),
    testBytes(fillerBlocks * BLOCK, seed),
    new Uint8Array(2 * BLOCK),
  ]);
}

/** A ustar header block for a regular file `name` of `size` bytes. */
export function tarHeader(name: string, size: number): Uint8Array {
  const block = new Uint8Array(BLOCK);
  const put = (offset: number, text: string) => block.set(encoder.encode(text), offset);
  put(0, name);
  put(100, "0000644\0");
  put(124, size.toString(8).padStart(11, "0") + "\0");
  put(136, "00000000000\0");
  put(156, "0");
  put(257, "ustar\0");
  put(263, "00");
  block.fill(0x20, 148, 156);
  put(148, block.reduce((total, byte) => total + byte, 0).toString(8).padStart(6, "0") + "\0 ");
  return block;
}

/** A regular file `name` holding `data` as a tar entry: its header, then `data` padded to whole blocks. */
export function tarEntry(name: string, data: Uint8Array): Uint8Array {
  return concat([tarHeader(name, data.length), concat([data], Math.ceil(data.length / BLOCK) * BLOCK)]);
}
