/**
 * Copying a range of a complete cached file to a client through JavaScript, for when sendfile cannot be used
 * (`sendfile = false`, no glibc, no ffi permission): large reads into reused buffers. Streaming the file's own
 * `ReadableStream` instead costs a read operation and a new 64 KiB buffer per chunk, about four times the CPU.
 *
 * @module
 */

import type { FileBody } from "../http/file_body.ts";

/** Bytes read and written at a time. */
export const COPY_BUFFER_BYTES = 256 * 1024;

/** At most this many copy buffers are kept for the next copies. */
const MAX_SPARE_BUFFERS = 16;

/** Copy buffers kept for the next copies: one pool per listener, shared by its connections. */
export class CopyBuffers {
  #spare: Uint8Array[] = [];

  /** A buffer of {@linkcode COPY_BUFFER_BYTES}: a spare one, or a new one. */
  take(): Uint8Array {
    return this.#spare.pop() ?? new Uint8Array(COPY_BUFFER_BYTES);
  }

  /** Gives `buffer` back once nothing refers to it any more (its last write has ended). */
  give(buffer: Uint8Array): void {
    if (this.#spare.length < MAX_SPARE_BUFFERS) this.#spare.push(buffer);
  }
}

/** How a copy went: nothing written (the caller answers as usual), all written, or broken off after the head. */
export type CopyOutcome = "not_started" | "sent" | "failed";

/**
 * Writes `head` and then `range` of the complete file at `range.path` with `write` (which resolves false when the
 * client is gone). Nothing is written when the file cannot be opened or has another size than `range.size`;
 * `onCommitted` is called once the head is being written.
 */
export async function copyFileRange(
  range: FileBody,
  options: {
    head: Uint8Array;
    write: (bytes: Uint8Array) => Promise<boolean>;
    onCommitted?: () => void;
    /** Where the copy buffer comes from and goes back to; without it, a new buffer per copy. */
    buffers?: CopyBuffers;
  },
): Promise<CopyOutcome> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(range.path, { read: true });
  } catch {
    return "not_started";
  }
  let buffer: Uint8Array | undefined;
  try {
    if ((await file.stat()).size !== range.size) return "not_started";
    options.onCommitted?.();
    if (range.start > 0) await file.seek(range.start, Deno.SeekMode.Start);
    buffer = options.buffers?.take() ?? new Uint8Array(COPY_BUFFER_BYTES);
    // The head goes out in one write with the file's first piece: written alone, it would be a packet of its own.
    const { head } = options;
    let headBytes = 0;
    if (head.length < buffer.length) {
      buffer.set(head);
      headBytes = head.length;
    } else if (!await options.write(head)) {
      return "failed";
    }
    let left = range.length;
    while (left > 0) {
      const room = buffer.subarray(headBytes, headBytes + Math.min(left, buffer.length - headBytes));
      const read = await file.read(room);
      if (read === null) return "failed";
      // The write has ended when it resolves: Deno holds no reference to the buffer any more.
      if (!await options.write(buffer.subarray(0, headBytes + read))) return "failed";
      left -= read;
      headBytes = 0;
    }
    if (headBytes > 0 && !await options.write(buffer.subarray(0, headBytes))) return "failed";
    return "sent";
  } catch {
    return "failed";
  } finally {
    file.close();
    if (buffer !== undefined) options.buffers?.give(buffer);
  }
}
