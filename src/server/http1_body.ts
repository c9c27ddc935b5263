/**
 * The body side of an HTTP/1.1 response: its declared length, chunked framing, and telling a body that is
 * already in memory (sent with its length) from one that waits for I/O (sent chunked).
 *
 * @module
 */

import { concat } from "../byte_reader.ts";

const ENCODER = new TextEncoder();
const CRLF = ENCODER.encode("\r\n");
const TICK = Symbol("tick");

/** A body of unknown length that ends within this many bytes (and at once) is sent with its length. */
export const COLLECT_LIMIT = 64 * 1024;

/** The end of a chunked body. */
export const LAST_CHUNK: Uint8Array = ENCODER.encode("0\r\n\r\n");

/**
 * One chunk of a chunked body: its length in hex, the bytes, CRLF. Empty bytes give nothing at all: a chunk of
 * length 0 is the end of the body.
 */
export function chunked(bytes: Uint8Array): Uint8Array {
  if (bytes.length === 0) return bytes;
  return concat([ENCODER.encode(`${bytes.length.toString(16)}\r\n`), bytes, CRLF]);
}

/** What {@linkcode collect} read, and the read still running when it stopped before the end. */
export interface Collected {
  chunks: Uint8Array[];
  size: number;
  ended: boolean;
  pending?: Promise<ReadableStreamReadResult<Uint8Array>>;
}

/**
 * Reads what `reader` has at once: a body already in memory ends before any timer fires, while a stream that
 * waits for I/O does not. Stops at {@linkcode COLLECT_LIMIT} bytes. Empty pieces are left out.
 */
export async function collect(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<Collected> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = new Promise<typeof TICK>((resolve) => timer = setTimeout(() => resolve(TICK), 0));
  try {
    let pending = reader.read();
    pending.catch(() => {});
    while (true) {
      const result = await Promise.race([pending, tick]);
      if (result === TICK) return { chunks, size, ended: false, pending };
      if (result.done) return { chunks, size, ended: true };
      if (result.value.length > 0) {
        chunks.push(result.value);
        size += result.value.length;
      }
      pending = reader.read();
      // Whoever takes the read over awaits it; until then a failed read must not count as unhandled.
      pending.catch(() => {});
      if (size > COLLECT_LIMIT) return { chunks, size, ended: false, pending };
    }
  } finally {
    clearTimeout(timer);
  }
}
