/**
 * A mirror's response body as a byte stream read straight from the connection: a BYOB reader's buffer is read
 * into by the socket itself (no copy, no chunk per read), the framing (length, chunks, until close) is taken off
 * on the way, and the connection is handed back for the next request once the body has been read whole.
 *
 * @module
 */

import { withDirectBody } from "../http/direct_body.ts";
import { latin1 } from "../http/head_bytes.ts";
import type { SocketReadNow } from "../http/socket_read_now.ts";
import type { BodyFraming } from "./_response_head.ts";

/** The longest chunk-size or trailer line read in a chunked body. */
const MAX_LINE_BYTES = 8 * 1024;

/** Bytes a default (non-BYOB) reader gets at most per read. */
const CHUNK_BYTES = 64 * 1024;

/** A connection's bytes: the ones already read past the head first, then the socket's. */
export class ConnectionReader {
  #conn: Deno.Conn;
  #buffer: Uint8Array;
  #start: number;
  #end: number;
  #now: SocketReadNow | undefined;

  /**
   * `buffer[start, end)` are bytes read from `conn` and not used yet; `now`, when given, reads what the
   * socket holds already without a turn of the event loop (the connection's read is for waiting).
   */
  constructor(conn: Deno.Conn, buffer: Uint8Array, start: number, end: number, now?: SocketReadNow) {
    this.#conn = conn;
    this.#buffer = buffer;
    this.#start = start;
    this.#end = end;
    this.#now = now;
  }

  /** Bytes read from the connection and not used yet. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Drops the bytes read and not used yet (the request was aborted: none is given after it). */
  discard(): void {
    this.#start = this.#end;
    // Aborted: the connection is being closed, and its descriptor's number may soon be another socket's.
    this.#now = undefined;
  }

  /** Reads at most `view.length` bytes into `view`; null at the end of the connection. */
  async readInto(view: Uint8Array): Promise<number | null> {
    if (this.#start < this.#end) {
      const count = Math.min(view.length, this.#end - this.#start);
      view.set(this.#buffer.subarray(this.#start, this.#start + count));
      this.#start += count;
      return count;
    }
    // Bytes that came while the last turn ran (a mirror's body just behind its head) are taken now: the runtime's
    // read would hand them over only after this turn, and its event loop's next one (0.15 ms of a cold miss).
    const now = view.length > 0 ? this.#now?.readNow(view) : undefined;
    if (now !== undefined) return now === 0 ? null : now;
    return await this.#conn.read(view);
  }

  /** Reads one line (without its LF or CRLF); throws at the end of the connection or past `MAX_LINE_BYTES`. */
  async readLine(): Promise<string> {
    let from = this.#start;
    while (true) {
      const lf = this.#buffer.subarray(from, this.#end).indexOf(0x0a);
      if (lf >= 0) {
        const end = from + lf;
        const line = latin1(this.#buffer, this.#start, end);
        this.#start = end + 1;
        return line.endsWith("\r") ? line.slice(0, -1) : line;
      }
      if (this.#end - this.#start >= MAX_LINE_BYTES) {
        throw new TypeError(`sent a line of more than ${MAX_LINE_BYTES} bytes in a chunked body`);
      }
      from = this.#end;
      if (this.#buffer.length - this.#end < 512) {
        // Move what is left to the front of a buffer with room for a line.
        const next = new Uint8Array(Math.max(this.#buffer.length, MAX_LINE_BYTES + 512));
        next.set(this.#buffer.subarray(this.#start, this.#end));
        from -= this.#start;
        this.#end -= this.#start;
        this.#start = 0;
        this.#buffer = next;
      }
      const read = await this.#conn.read(this.#buffer.subarray(this.#end));
      if (read === null) throw new TypeError("closed the connection in the middle of a chunked body");
      this.#end += read;
    }
  }
}

/** What the body stream tells its connection's owner. */
export interface BodyEnd {
  /** The body was read whole; `reusable` when the connection may carry the next request. */
  done(reusable: boolean): void;
  /** The body broke off, was cancelled or failed: the connection is closed. */
  broken(): void;
  /** The error the stream fails with for one a read threw (the abort's reason once the request was aborted). */
  failure(error: unknown): unknown;
}

/**
 * The body of a response with `framing` (not `none`), read from `reader`; `keepAlive` says whether the mirror
 * allows another request on the connection after it.
 */
export function bodyStream(
  reader: ConnectionReader,
  framing: BodyFraming,
  keepAlive: boolean,
  end: BodyEnd,
): ReadableStream<Uint8Array> {
  let left = framing.type === "length" ? framing.length : 0;
  // Chunked: bytes left in the current chunk; whether a chunk came before (its CRLF is still to be read).
  let chunkLeft = 0;
  let chunks = 0;
  let finished = false;
  const finish = (reusable: boolean) => {
    if (finished) return;
    finished = true;
    end.done(reusable && keepAlive && reader.buffered === 0);
  };
  const fail = () => {
    if (finished) return;
    finished = true;
    end.broken();
  };
  /** The next bytes of the body into `view`: their count, or null at its end. */
  const next = async (view: Uint8Array): Promise<number | null> => {
    switch (framing.type) {
      case "length": {
        if (left === 0) return null;
        const read = await reader.readInto(view.length > left ? view.subarray(0, left) : view);
        if (read === null) {
          throw new TypeError(
            `closed the connection ${left} bytes before the end of the body (Content-Length: ${framing.length})`,
          );
        }
        left -= read;
        return read;
      }
      case "chunked": {
        if (chunkLeft === 0) {
          if (chunks > 0 && (await reader.readLine()) !== "") {
            throw new TypeError("sent a chunk longer than its size");
          }
          const line = await reader.readLine();
          const size = /^([0-9a-fA-F]{1,12})[ \t]*(?:;.*)?$/.exec(line);
          if (size === null) {
            throw new TypeError(`sent an invalid chunk size: ${JSON.stringify(line.slice(0, 40))}`);
          }
          chunkLeft = parseInt(size[1], 16);
          chunks++;
          if (chunkLeft === 0) {
            // Trailer fields, up to the empty line, are read and dropped.
            while ((await reader.readLine()) !== "");
            return null;
          }
        }
        const read = await reader.readInto(view.length > chunkLeft ? view.subarray(0, chunkLeft) : view);
        if (read === null) throw new TypeError("closed the connection in the middle of a chunk");
        chunkLeft -= read;
        return read;
      }
      default:
        return await reader.readInto(view);
    }
  };
  // The buffer a default (non-BYOB) reader's next chunk is read into; kept while its chunks are copies.
  let spare: Uint8Array | undefined;
  // A body that has ended is closed at once, not at the next read: the reader's owner learns it without one.
  const atEnd = () => framing.type === "length" && left === 0;
  /** Reads the next bytes into `view` for either reader: their count, or null at the body's end. */
  const readInto = async (view: Uint8Array): Promise<number | null> => {
    let read: number | null;
    try {
      read = await next(view);
    } catch (error) {
      fail();
      throw end.failure(error);
    }
    if (read === null) finish(framing.type !== "close");
    else if (atEnd()) finish(true);
    return read;
  };
  const source: UnderlyingByteSource = {
    type: "bytes",
    start(controller) {
      if (atEnd()) {
        controller.close();
        finish(true);
      }
    },
    async pull(controller) {
      const request = controller.byobRequest;
      let view: Uint8Array;
      if (request?.view) {
        view = new Uint8Array(request.view.buffer, request.view.byteOffset, request.view.byteLength);
      } else {
        // A length body's buffer is never smaller than what is left of it: `left` only shrinks.
        const size = framing.type === "length" ? Math.min(left, CHUNK_BYTES) : CHUNK_BYTES;
        spare ??= new Uint8Array(size);
        view = spare.subarray(0, size);
      }
      const read = await readInto(view);
      if (read === null) {
        controller.close();
        request?.respond(0);
        return;
      }
      if (request) request.respond(read);
      else if (read * 2 >= spare!.length) {
        // Mostly filled: the chunk is the buffer itself, and the next read gets a new one.
        controller.enqueue(view.subarray(0, read));
        spare = undefined;
      } else {
        // A few bytes (a mirror that drips them) are copied out, and the buffer is read into again: a chunk
        // holding a 64 KiB buffer for each byte made the 16 MiB a mirror status may have hold 1 TiB.
        controller.enqueue(view.slice(0, read));
      }
      if (atEnd()) controller.close();
    },
    cancel() {
      fail();
    },
  };
  const stream = new ReadableStream(source) as ReadableStream<Uint8Array>;
  // Read without the stream by a download (see direct_body.ts); the stream is not read then.
  return withDirectBody(stream, { readInto, cancel: fail });
}
