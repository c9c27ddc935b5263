/**
 * Writing one response on an HTTP/1.1 connection: its head, with the framing chosen here (a length, chunked, or
 * to the end of the connection), and its body -- a file body (sendfile or copied, see http1_file_bodies.ts), a
 * stream of known length, or a body of unknown length (measured when it is already in memory, else chunked). A
 * head always goes out in one write with the start of its body: written alone it would be a packet of its own,
 * and a client that delays its acknowledgement would hold up the next one (~40 ms per response).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { concat } from "../byte_reader.ts";
import type { ResponseSent } from "../http/client_request.ts";
import { describeError } from "../logging.ts";
import { chunked, collect, LAST_CHUNK } from "./http1_body.ts";
import { parseContentLength } from "../http/content_length.ts";
import type { FileBodies } from "./http1_file_bodies.ts";
import { type Framing, type HttpDates, isBodiless, responseHead } from "./http1_response.ts";

const log = getLogger(["flexo", "server"]);

/** How a response went out, and whether the connection must end after it. */
export interface Written extends ResponseSent {
  /** The response was framed to the end of the connection (an HTTP/1.0 body of unknown length). */
  close: boolean;
}

/** Writes the responses of one connection, through its `write` (all bytes; false when the client is gone). */
export class ResponseWriter {
  #write: (bytes: Uint8Array) => Promise<boolean>;
  #files: FileBodies;
  #dates: HttpDates;

  /**
   * A writer for one connection: `write` writes all of its bytes, `files` sends its file bodies, `dates` gives
   * the `Date` header.
   */
  constructor(write: (bytes: Uint8Array) => Promise<boolean>, files: FileBodies, dates: HttpDates) {
    this.#write = write;
    this.#files = files;
    this.#dates = dates;
  }

  /**
   * Sends `response` to an HTTP/1.`minorVersion` client (for a HEAD request when `isHead`), saying
   * `Connection: close` when `close`: how its body went out. A body cut short means the connection must end.
   */
  async respond(
    isHead: boolean,
    head: { minorVersion: number },
    response: Response,
    close: boolean,
  ): Promise<Written> {
    const status = { code: response.status, text: response.statusText };
    const framing: Framing = {
      close,
      keepAlive: head.minorVersion === 0 && !close,
      date: this.#dates.text(),
    };
    const body = response.body;
    const bodiless = (whole: boolean): Written => ({ whole, bytes: 0, close: framing.close });
    if (isBodiless(response.status)) {
      body?.cancel().catch(() => {});
      return bodiless(await this.#write(responseHead(status, response.headers, framing)));
    }
    const declared = parseContentLength(response.headers.get("content-length"));
    if (isHead || body === null) {
      // A HEAD answer says the length the GET answer would have; one whose body is in memory is measured.
      framing.length = isHead ? declared : 0;
      if (body !== null) {
        const reader = body.getReader();
        if (framing.length === undefined) {
          const collected = await collect(reader);
          if (collected.ended) framing.length = collected.size;
        }
        reader.cancel().catch(() => {});
      }
      // (A HEAD answer without a body or a declared length says no length: it is not known to be 0.)
      return bodiless(await this.#write(responseHead(status, response.headers, framing)));
    }
    if (declared !== undefined) {
      framing.length = declared;
      const sent = await this.#files.send(response, framing) ?? await this.#files.copy(response, framing);
      if (sent !== undefined) return { ...sent, close: framing.close };
      // The head waits for the body's first piece and goes out with it (see #pump).
      const headBytes = responseHead(status, response.headers, framing);
      return {
        ...await this.#pump(body.getReader(), { exactly: declared, head: headBytes }),
        close: framing.close,
      };
    }
    const reader = body.getReader();
    const collected = await collect(reader);
    if (collected.ended) {
      framing.length = collected.size;
      const whole = await this.#write(
        concat([responseHead(status, response.headers, framing), ...collected.chunks]),
      );
      return { whole, bytes: whole ? collected.size : 0, close: framing.close };
    }
    // A longer or slower body of unknown length: chunked, or to the end of the connection for HTTP/1.0.
    framing.chunked = head.minorVersion === 1;
    if (!framing.chunked) framing.close = true;
    // The head and what was collected go out in one write.
    const headBytes = responseHead(status, response.headers, framing);
    const start = concat([
      headBytes,
      ...collected.chunks.map((chunk) => framing.chunked ? chunked(chunk) : chunk),
    ]);
    if (!await this.#write(start)) {
      reader.cancel().catch(() => {});
      return { whole: false, bytes: 0, close: true };
    }
    const rest = await this.#pump(reader, { chunked: framing.chunked, pending: collected.pending });
    return { whole: rest.whole, bytes: collected.size + rest.bytes, close: framing.close };
  }

  /**
   * Writes what `reader` gives: `exactly` that many bytes (more or fewer is a broken response), chunked, or as it
   * comes. A `head` goes out in one write with the body's first piece.
   */
  async #pump(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    options: {
      exactly?: number;
      chunked?: boolean;
      pending?: Promise<ReadableStreamReadResult<Uint8Array>>;
      head?: Uint8Array;
    },
  ): Promise<ResponseSent> {
    let sent = 0;
    let next = options.pending ?? reader.read();
    let head = options.head;
    const write = (bytes: Uint8Array): Promise<boolean> => {
      if (head === undefined) return this.#write(bytes);
      const joined = bytes.length === 0 ? head : concat([head, bytes]);
      head = undefined;
      return this.#write(joined);
    };
    try {
      while (true) {
        const { done, value } = await next;
        if (done) break;
        if (value.length === 0) {
          next = reader.read();
          continue;
        }
        if (options.exactly !== undefined && sent + value.length > options.exactly) {
          if (await write(value.subarray(0, options.exactly - sent))) sent = options.exactly;
          log.warn("A response body was longer than its Content-Length; the connection is closed");
          return { whole: false, bytes: sent };
        }
        if (!await write(options.chunked ? chunked(value) : value)) return { whole: false, bytes: sent };
        sent += value.length;
        next = reader.read();
      }
    } catch (error) {
      log.info("A response body failed while it was sent: {error}", { error: describeError(error) });
      // The client learns of the failure as a body shorter than its head says (the connection ends).
      if (head !== undefined) await write(new Uint8Array(0));
      return { whole: false, bytes: sent };
    } finally {
      reader.cancel().catch(() => {});
    }
    if (options.chunked) return { whole: await write(LAST_CHUNK), bytes: sent };
    if (head !== undefined && !await write(new Uint8Array(0))) return { whole: false, bytes: 0 };
    return { whole: options.exactly === undefined || sent === options.exactly, bytes: sent };
  }
}
