/**
 * One client connection, served by flexo's own HTTP/1.1 layer: read a request head, answer it, and keep the
 * connection for the next request.
 *
 * flexo serves connections itself instead of through `Deno.serve` for three reasons: Deno's server has no time
 * limit for a request head (a silent client would keep its connection for ever), it cannot be told that a body
 * was sent below it (so a file sent with sendfile(2) would cost the client its connection), and its request and
 * response objects cost more per request than a cache hit needs. flexo answers GET and HEAD of files, so the
 * subset of HTTP/1.1 here is small: no request bodies are read (a request announcing one is answered, then the
 * connection is closed), requests are answered one after the other (pipelined ones in order), and anything
 * ambiguous in a head is refused (see http1_head.ts).
 *
 * A response goes out in one of four ways: the prepared bytes of a small cached file (`quickAnswer`), a file
 * body with sendfile (`sender`, see sendfile.ts), a body of known length streamed as it comes, or a body of
 * unknown length with chunked encoding (or, for a body that is already in memory, with its length).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  findHeadEnd,
  type HeadProblem,
  isHeadProblem,
  MAX_HEAD_BYTES,
  parseRequestHead,
  releaseHead,
  type RequestHead,
  unfinishedHeadProblem,
} from "./http1_head.ts";
import { concat } from "../byte_reader.ts";
import { FileBodies } from "./http1_file_bodies.ts";
import { describeError } from "../logging.ts";
import { requestFromHead } from "./http1_request.ts";
import {
  checkAuthority,
  type RequestHandler,
  type ResponseSent,
  type ServeInfo,
} from "../http/client_request.ts";
import { HttpDates, responseHead } from "./http1_response.ts";
import type { CopyBuffers } from "./file_copy.ts";
import { ResponseWriter } from "./http1_response_writer.ts";
import type {
  LaterAnswer,
  QuickAnswer,
  QuickFile,
  QuickLater,
  QuickOptions,
  Refusal,
} from "./quick_answer.ts";
import type { FileSender } from "./sendfile.ts";
import { closeQuietly } from "../close_quietly.ts";
import { NOT_STORED } from "../http/http_error.ts";

const log = getLogger(["flexo", "server"]);
const ENCODER = new TextEncoder();
const CR = 0x0d;
const LF = 0x0a;

/** A request handler (see src/http/client_request.ts). */
export type ConnectionHandler = RequestHandler;

/** What a {@linkcode ClientConnection} answers with. */
export interface ConnectionOptions {
  /** Answers a request. */
  handler: ConnectionHandler;
  /** The response when the handler throws. */
  onError: (error: unknown) => Response | Promise<Response>;
  /** The answer to a request that can be answered at once without a `Request` (`files`: it may be a file). */
  quickAnswer?: (head: RequestHead, options: QuickOptions) => QuickAnswer | undefined;
  /** Sends file bodies with sendfile(2); without it they are streamed through JavaScript. */
  sender?: FileSender;
  /**
   * Why this connection's requests are refused, decided when it was accepted (a client not in
   * `allowed_clients`): each request gets this answer, and the connection ends.
   */
  refusal?: Refusal;
  /** The clock of the client timeout (milliseconds, monotonic); default `performance.now`. */
  now?: () => number;
  /** The `Date` header's values, shared by a listener's connections; by default the connection's own. */
  dates?: HttpDates;
  /** Buffers for copying files, shared by a listener's connections; by default the connection's own. */
  buffers?: CopyBuffers;
  /**
   * Called with the status of each request this layer refuses itself, which the handler never sees (a head it
   * cannot read, a method it does not serve, a client outside `allowed_clients`): counted for /status and
   * /metrics, as the request log has no line for them.
   */
  onRefusedRequest?: (status: number) => void;
}

/** The read buffer a connection starts with; it grows up to {@linkcode MAX_HEAD_BYTES} for a larger head. */
const FIRST_BUFFER_BYTES = 4 * 1024;

/** How long a connection ended after a request body or a refused head drops what the client still sends. */
const LINGER_MS = 2_000;

/** At most this many bytes are dropped so. */
const LINGER_MAX_BYTES = 1024 * 1024;

const RESOLVED_FALSE = Promise.resolve(false);
/** Errors of a connection that the client ended or broke. */
const CONNECTION_ERRORS = [
  Deno.errors.BadResource,
  Deno.errors.BrokenPipe,
  Deno.errors.ConnectionAborted,
  Deno.errors.ConnectionReset,
  Deno.errors.Interrupted,
  Deno.errors.NotConnected,
];

/** One client connection and its state, which the listener's sweep reads (see client_connections.ts). */
export class ClientConnection {
  /** The connection. */
  readonly conn: Deno.Conn;
  /** The client's address. */
  readonly remoteAddr: Deno.NetAddr;
  /** Whether a request is being answered. */
  busy = false;
  /** When the last response ended, or the connection opened (on the connection's clock). */
  idleSince: number;
  /** When the write now waiting for the client began (on the connection's clock), or 0. */
  writingSince = 0;
  #options: ConnectionOptions;
  #localHost: string;
  #local: Deno.NetAddr;
  /** The last `Host` found valid on this connection (see checkAuthority). */
  #validHost: { host?: string } = {};
  #closed = false;
  #finishing = false;
  #files: FileBodies;
  #writer: ResponseWriter;
  #now: () => number;
  #dates: HttpDates;
  /** Whether the client may still be sending a body when the connection ends (see #lingeringClose). */
  #linger = false;
  /** The options of a quick answer with and without sendfile: made once per connection, not per request. */
  #quickFiles: QuickOptions;
  #quickNoFiles: QuickOptions;

  /** Wraps an accepted connection; nothing happens until {@linkcode ClientConnection.serve}. */
  constructor(conn: Deno.Conn, options: ConnectionOptions) {
    this.conn = conn;
    this.remoteAddr = conn.remoteAddr as Deno.NetAddr;
    this.#quickFiles = Object.freeze({ files: true, remote: this.remoteAddr.hostname });
    this.#quickNoFiles = Object.freeze({ files: false, remote: this.remoteAddr.hostname });
    const local = conn.localAddr as Deno.NetAddr;
    this.#local = local;
    this.#localHost = local.hostname.includes(":")
      ? `[${local.hostname}]:${local.port}`
      : `${local.hostname}:${local.port}`;
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
    this.idleSince = this.#now();
    this.#files = new FileBodies(conn, {
      sender: options.sender,
      buffers: options.buffers,
      write: (bytes) => this.#write(bytes),
      writeSome: this.#writeSome,
    });
    this.#dates = options.dates ?? new HttpDates();
    this.#writer = new ResponseWriter((bytes) => this.#write(bytes), this.#files, this.#dates);
  }

  /** Whether the connection has been closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Ends the connection now; a read or write in progress fails. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.conn);
  }

  /** Ends the connection after the response in progress (at once when there is none). */
  finish(): void {
    this.#finishing = true;
    if (!this.busy) this.close();
  }

  /** Serves requests until the client leaves or asks to close, an error ends the connection, or it is closed. */
  async serve(): Promise<void> {
    let buffer = new Uint8Array(FIRST_BUFFER_BYTES);
    let filled = 0;
    let scanned = 0;
    // One options object for every search of the buffer, instead of one per request.
    const scan = { from: 0, length: 0 };
    const parseOptions: { previous?: RequestHead } = {};
    try {
      while (!this.#closed) {
        // Empty lines before a request line are skipped (RFC 9112, section 2.2).
        let skip = 0;
        while (skip + 1 < filled && buffer[skip] === CR && buffer[skip + 1] === LF) skip += 2;
        if (skip > 0) {
          buffer.copyWithin(0, skip, filled);
          filled -= skip;
          scanned = 0;
        }
        scan.from = scanned - 3;
        scan.length = filled;
        const end = findHeadEnd(buffer, scan);
        if (end < 0) {
          if (this.#finishing) break;
          if (filled >= MAX_HEAD_BYTES) {
            await this.#refuse(unfinishedHeadProblem(buffer, filled));
            break;
          }
          if (filled === buffer.length) {
            const larger = new Uint8Array(Math.min(buffer.length * 4, MAX_HEAD_BYTES));
            larger.set(buffer);
            buffer = larger;
          }
          scanned = filled;
          // Most reads start an empty buffer: no view of it is made for them.
          const read = await this.conn.read(filled === 0 ? buffer : buffer.subarray(filled));
          if (read === null) break;
          filled += read;
          continue;
        }
        const parsed = parseRequestHead(buffer, end, parseOptions);
        if (!isHeadProblem(parsed)) parseOptions.previous = parsed;
        this.busy = true;
        let keepOpen = false;
        try {
          // One check of every request, before any answer is chosen: the quick path and the full path alike.
          const problem = isHeadProblem(parsed)
            ? parsed
            : this.#options.refusal ?? checkAuthority(parsed, this.#local, this.#validHost);
          if (problem !== undefined || isHeadProblem(parsed)) {
            keepOpen = await this.#refuse(problem ?? parsed as HeadProblem);
          } else {
            // A cache hit answered from memory needs no more than this (most requests of a busy proxy).
            const quick = this.#quickAnswer(parsed);
            keepOpen = quick instanceof Uint8Array
              ? await this.#write(quick)
              : quick !== undefined && "later" in quick
              ? await this.#answerLater(parsed, quick)
              : await this.#answer(parsed, quick);
          }
        } finally {
          this.busy = false;
          this.idleSince = this.#now();
          if (!isHeadProblem(parsed)) releaseHead(parsed);
        }
        // The head is answered; bytes after it (a pipelined request) move to the front.
        buffer.copyWithin(0, end, filled);
        filled -= end;
        scanned = 0;
        if (!keepOpen || this.#finishing) break;
      }
    } catch (error) {
      // A client that goes away is ordinary; anything else (a response body that failed before its head, say) is
      // worth a line in the log.
      if (this.#closed || CONNECTION_ERRORS.some((kind) => error instanceof kind)) {
        log.debug("A client connection ended: {error}", { error: describeError(error) });
      } else {
        log.warn("A client connection ended on an error: {error}", {
          error: describeError(error, { stack: true }),
        });
      }
    } finally {
      if (this.#linger && !this.#closed) await this.#lingeringClose();
      this.close();
    }
  }

  /** The quick answer to `head`, if the app has one (see {@linkcode ConnectionOptions.quickAnswer}). */
  #quickAnswer(head: RequestHead): QuickAnswer | undefined {
    const quick = this.#options.quickAnswer;
    // Prepared answers are HTTP/1.1 keep-alive answers: other requests take the full path.
    if (quick === undefined || head.minorVersion !== 1 || head.close || head.hasBody || this.#finishing) {
      return undefined;
    }
    try {
      return quick(head, this.#files.canSend() ? this.#quickFiles : this.#quickNoFiles);
    } catch (error) {
      // A fault in the shortcut must not cost the client its answer: the full path answers (or reports) it.
      log.error("Answering {target} from the quick path failed: {error}", {
        target: head.target,
        error: describeError(error, { stack: true }),
      });
      return undefined;
    }
  }

  /** Answers one request (with its quick answer, if it is a file); whether the connection may carry the next. */
  async #answer(head: RequestHead, quick: QuickFile | undefined): Promise<boolean> {
    if (quick !== undefined) {
      const sent = await this.#files.sendQuick(quick);
      if (sent !== undefined) return sent.whole;
    }
    const req = requestFromHead(head, { localHost: this.#localHost });
    if (isHeadProblem(req)) {
      await this.#refuse(req);
      return false;
    }
    const completion = Promise.withResolvers<ResponseSent>();
    const info: ServeInfo = {
      remoteAddr: this.remoteAddr,
      localAddr: this.#local,
      completed: completion.promise,
    };
    let sent: ResponseSent = { whole: false, bytes: 0 };
    try {
      let response: Response;
      try {
        const pending = this.#options.handler(req, info);
        // While the app waits (a miss waits for a mirror), the socket for sendfile is looked up; once the
        // microtasks that send the upstream request have run, not before them. Once per connection: a timer
        // set and cleared for nothing cost each later miss 45 us (BENCHMARKS.md, session eight).
        const lookup = pending instanceof Promise && req.method === "GET" && this.#files.socketToFind
          ? setTimeout(this.#findSocket, 0)
          : undefined;
        try {
          response = await pending;
        } finally {
          clearTimeout(lookup);
        }
      } catch (error) {
        response = await this.#options.onError(error);
      }
      const close = head.close || head.hasBody || this.#finishing;
      if (head.hasBody) this.#linger = true;
      const written = await this.#writer.respond(req.method === "HEAD", head, response, close);
      sent = { whole: written.whole, bytes: written.bytes };
      return written.whole && !close && !written.close;
    } finally {
      completion.resolve(sent);
    }
  }

  /** Answers one request with the app's answer from its head, once it is ready; whether the connection goes on. */
  async #answerLater(head: RequestHead, quick: QuickLater): Promise<boolean> {
    // As in #answer: the socket for sendfile is looked up while the app waits (once per connection).
    const lookup = this.#files.socketToFind ? setTimeout(this.#findSocket, 0) : undefined;
    let answer: LaterAnswer;
    try {
      answer = await quick.later;
    } finally {
      clearTimeout(lookup);
    }
    let sent: ResponseSent = { whole: false, bytes: 0 };
    try {
      // Prepared for a connection that stays open: one asked to end meanwhile is answered as the full path does.
      if (answer.head !== undefined && answer.file !== undefined && !this.#finishing) {
        const prepared = await this.#files.sendPrepared(answer.head, answer.file);
        if (prepared !== undefined) {
          sent = prepared;
          return prepared.whole;
        }
      }
      const written = await this.#writer.respond(false, head, answer.response(), this.#finishing);
      sent = { whole: written.whole, bytes: written.bytes };
      return written.whole && !this.#finishing && !written.close;
    } finally {
      answer.done(sent);
    }
  }

  #findSocket = (): void => {
    if (!this.#closed) this.#files.findSocket();
  };

  /** Writes some of `bytes` (waiting for the client, which the sweep may cut off): how many, 0 when closed. */
  #writeSome = async (bytes: Uint8Array): Promise<number> => {
    if (this.#closed) return 0;
    this.writingSince = this.#now();
    try {
      return await this.conn.write(bytes);
    } finally {
      this.writingSince = 0;
    }
  };

  /** Answers a head that was refused, and says the connection ends. Always false. */
  async #refuse(problem: HeadProblem | Refusal | { status: 400; message: string }): Promise<boolean> {
    this.#options.onRefusedRequest?.(problem.status);
    log.debug("Refused a request from {client}: {status} {message}", {
      client: this.remoteAddr.hostname,
      status: problem.status,
      message: problem.message,
    });
    const body = ENCODER.encode(`${problem.message}\n`);
    const head = responseHead(
      { code: problem.status },
      [
        ["content-type", "text/plain; charset=utf-8"],
        ["cache-control", NOT_STORED],
        ...("headers" in problem ? problem.headers ?? [] : []),
      ],
      { length: body.length, close: true, date: this.#dates.text() },
    );
    this.#linger = true;
    await this.#write(concat([head, body]));
    return false;
  }

  /**
   * Before closing after a request with a body or a refused head: ends the sending side, then reads and drops
   * what the client still sends (for {@linkcode LINGER_MS} and {@linkcode LINGER_MAX_BYTES} at most). Closing
   * with unread bytes would make the kernel reset the connection, and a reset can cost the client the answer it
   * has not read yet.
   */
  async #lingeringClose(): Promise<void> {
    try {
      await this.conn.closeWrite();
    } catch {
      return;
    }
    const timer = setTimeout(() => this.close(), LINGER_MS);
    try {
      const scrap = new Uint8Array(4096);
      for (let dropped = 0; dropped < LINGER_MAX_BYTES;) {
        const read = await this.conn.read(scrap);
        if (read === null) break;
        dropped += read;
      }
    } catch {
      // closed by the timer, or reset by the client
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Writes all of `bytes`; false when the connection failed (or was closed) first. Not an async function: a
   * whole write (almost every one) then costs one promise, not the frame of an async function (see BENCHMARKS.md).
   */
  #write(bytes: Uint8Array): Promise<boolean> {
    if (this.#closed) return RESOLVED_FALSE;
    this.writingSince = this.#now();
    this.#writing = bytes;
    return this.conn.write(bytes).then(this.#written, this.#writeFailed);
  }

  /** The bytes of the write in progress. */
  #writing: Uint8Array | undefined;

  #written = (count: number): boolean | Promise<boolean> => {
    const bytes = this.#writing!;
    if (count < bytes.length) return this.#writeRest(bytes, count);
    this.#writing = undefined;
    this.writingSince = 0;
    return true;
  };

  #writeFailed = (error: unknown): boolean => {
    this.#writing = undefined;
    this.writingSince = 0;
    if (!this.#closed) log.debug("Writing to a client failed: {error}", { error: describeError(error) });
    return false;
  };

  /** Writes the rest of `bytes` from `offset`, after a write that took part of them. */
  async #writeRest(bytes: Uint8Array, offset: number): Promise<boolean> {
    try {
      while (offset < bytes.length) {
        this.writingSince = this.#now();
        offset += await this.conn.write(bytes.subarray(offset));
      }
      this.#writing = undefined;
      this.writingSince = 0;
      return true;
    } catch (error) {
      return this.#writeFailed(error);
    }
  }
}
