/**
 * The bytes of HTTP/1.x heads, for both directions: where a head ends, and its bytes as text. The server reads
 * clients' request heads with them (`src/server/http1_head.ts`), the upstream client mirrors' response heads
 * (`src/upstream/_response_head.ts`).
 *
 * @module
 */

const CR = 0x0d;
const LF = 0x0a;

/**
 * Where the head in `bytes` ends: the index just past its empty line, looking at the first `length` bytes from
 * `from` on (pass where the previous search stopped, minus 3, to scan each byte once). A head that ends its
 * lines with a bare LF ends at its first empty line too (the server refuses such a request at once; the upstream
 * client reads such a response). -1 while the head is incomplete.
 */
export function findHeadEnd(bytes: Uint8Array, options: { from: number; length: number }): number {
  for (let i = Math.max(options.from, 0) + 1; i < options.length; i++) {
    if (bytes[i] !== LF) continue;
    if (bytes[i - 1] === LF || (bytes[i - 1] === CR && bytes[i - 2] === LF)) return i + 1;
  }
  return -1;
}

/** The bytes from `start` to `end` as a string of the same code units (ISO-8859-1), as HTTP reads them. */
export function latin1(bytes: Uint8Array, start = 0, end = bytes.length): string {
  let text = "";
  // Pieces keep the argument count of fromCharCode small.
  for (let from = start; from < end; from += 4096) {
    text += String.fromCharCode.apply(
      null,
      bytes.subarray(from, Math.min(end, from + 4096)) as unknown as number[],
    );
  }
  return text;
}
