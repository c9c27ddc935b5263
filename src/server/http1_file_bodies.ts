/**
 * File bodies on one client connection: sent with sendfile (see sendfile.ts) on the connection's socket, or
 * copied through JavaScript in large pieces when sendfile cannot be used (see file_copy.ts). Used by
 * {@linkcode ./http1_connection.ts}.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { CopyBuffers, copyFileRange } from "./file_copy.ts";
import type { QuickFile } from "./quick_answer.ts";
import { type Framing, responseHead } from "./http1_response.ts";
import { type FileBody, fileBodyOf } from "../http/file_body.ts";
import type { ResponseSent } from "../http/client_request.ts";
import type { FileSender } from "./sendfile.ts";
import type { ClientSocket } from "./socket_finder.ts";

const log = getLogger(["flexo", "server"]);

/**
 * Sends the file bodies of one connection. Each method says how the body went out (when not whole, it broke off
 * after its head and the connection must end), or undefined when it was not sent this way (nothing was written;
 * the caller answers as usual).
 */
export class FileBodies {
  #conn: Deno.Conn;
  #sender: FileSender | undefined;
  #buffers: CopyBuffers;
  #write: (bytes: Uint8Array) => Promise<boolean>;
  #writeSome: (bytes: Uint8Array) => Promise<number>;
  /** The connection's socket for sendfile: unknown until first needed, null when it could not be found. */
  #socket: ClientSocket | null | undefined;

  /**
   * For `conn`: `write` writes all of its bytes (false when the client is gone), `writeSome` as much as the
   * client takes now, waiting while it takes nothing (how many; 0 when the connection is closed).
   */
  constructor(
    conn: Deno.Conn,
    options: {
      sender?: FileSender;
      /** Buffers for copies (shared by a listener's connections); by default this connection's own. */
      buffers?: CopyBuffers;
      write: (bytes: Uint8Array) => Promise<boolean>;
      writeSome: (bytes: Uint8Array) => Promise<number>;
    },
  ) {
    this.#conn = conn;
    this.#sender = options.sender;
    this.#buffers = options.buffers ?? new CopyBuffers();
    this.#write = options.write;
    this.#writeSome = options.writeSome;
  }

  /** Whether file bodies may go out with sendfile on this connection (as far as is known before trying). */
  canSend(): boolean {
    return this.#sender !== undefined && !this.#sender.disabled && this.#socket !== null;
  }

  /** Whether {@linkcode findSocket} has something to do: sendfile is on and the socket not looked up yet. */
  get socketToFind(): boolean {
    return this.#socket === undefined && this.#sender?.disabled === false;
  }

  /**
   * Looks up this connection's socket for sendfile now, if that is still to do: called while the app is waiting
   * (for a mirror's answer, say), so that the search is not on the way from a download's first bytes to the
   * client (about 0.3 ms for a new connection, in code that runs too rarely to be compiled).
   */
  findSocket(): void {
    if (this.#sender?.disabled === false) this.#socketFor(this.#sender);
  }

  /** The connection's socket, looked up at the first call. */
  #socketFor(sender: FileSender): ClientSocket | null {
    if (this.#socket === undefined) this.#socket = sender.findSocket(this.#conn) ?? null;
    return this.#socket;
  }

  /** Sends a quick file answer with sendfile, and tells it how that went (undefined: not sent this way). */
  async sendQuick(answer: QuickFile): Promise<ResponseSent | undefined> {
    let sent: ResponseSent | undefined;
    try {
      sent = await this.#sendfile(answer.head, answer.file);
      return sent;
    } finally {
      answer.done(sent);
    }
  }

  /** Sends a prepared `head` and `file` with sendfile (undefined: not sent this way, nothing was written). */
  sendPrepared(head: Uint8Array, file: FileBody): Promise<ResponseSent | undefined> {
    return this.#sendfile(head, file);
  }

  /** Sends a marked file body (a `FileResponse`) of a 200 or 206 answer with sendfile, after its head. */
  async send(response: Response, framing: Framing): Promise<ResponseSent | undefined> {
    const range = this.#rangeOf(response, framing);
    if (range === undefined || !this.canSend()) return undefined;
    const head = responseHead(
      { code: response.status, text: response.statusText },
      response.headers,
      framing,
    );
    // Once the first byte is out, the app's body (its open file, or its follower of a download) is not needed.
    return await this.#sendfile(head, range, () => void response.body?.cancel().catch(() => {}));
  }

  /** Copies a marked body of a complete file through JavaScript in large pieces, after its head. */
  async copy(response: Response, framing: Framing): Promise<ResponseSent | undefined> {
    const range = this.#rangeOf(response, framing);
    if (range === undefined || range.growing !== undefined) return undefined;
    const head = responseHead(
      { code: response.status, text: response.statusText },
      response.headers,
      framing,
    );
    // Once the head goes out, the app's body (its open file) is not needed.
    const release = () => void response.body?.cancel().catch(() => {});
    let written = 0;
    const write = (bytes: Uint8Array) =>
      this.#write(bytes).then((ok) => {
        if (ok) written += bytes.length;
        return ok;
      });
    const outcome = await copyFileRange(range, { head, write, onCommitted: release, buffers: this.#buffers });
    if (outcome === "not_started") return undefined;
    return { whole: outcome === "sent", bytes: Math.max(0, written - head.length) };
  }

  /** The file range of a 200 or 206 answer whose marked body is the whole declared length (not empty). */
  #rangeOf(response: Response, framing: Framing): FileBody | undefined {
    if (response.status !== 200 && response.status !== 206) return undefined;
    const range = fileBodyOf(response);
    if (range === undefined || range.length === 0 || range.length !== framing.length) return undefined;
    return range;
  }

  /** Sends `head` and `range` with sendfile on this connection's socket, found at its first use. */
  async #sendfile(
    head: Uint8Array,
    range: FileBody,
    onCommitted?: () => void,
  ): Promise<ResponseSent | undefined> {
    const sender = this.#sender;
    if (sender === undefined) return undefined;
    const socket = this.#socketFor(sender);
    if (socket === null) return undefined;
    const result = await sender.send(socket, head, { range, write: this.#writeSome, onCommitted });
    if (result.outcome === "sent") return { whole: true, bytes: range.length };
    if (result.outcome === "failed") {
      log.info("Sending {path} to a client stopped: {reason}", { path: range.path, reason: result.reason });
      return { whole: false, bytes: result.bytes };
    }
    log.debug("Streaming {path} instead: {reason}", { path: range.path, reason: result.reason });
    return undefined;
  }
}
