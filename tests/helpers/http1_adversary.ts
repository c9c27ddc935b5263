/**
 * Clients and servers for the tests of flexo's HTTP/1.1 layer under attack: a strict response parser, a reader
 * of pipelined answers, writes in chosen TCP pieces, and an echoing connection or listener to talk to.
 *
 * @module
 */

import {
  type ClientListener,
  type ConnectionClock,
  listenForClients,
} from "../../src/server/client_connections.ts";
import { ClientConnection, type ConnectionOptions } from "../../src/server/http1_connection.ts";
import { latin1 } from "../../src/server/http1_head.ts";
import { rawTargetOf } from "../../src/http/client_request.ts";
import { encodeLatin1 } from "../../src/server/http1_response.ts";
import { assert, assertEquals } from "./assert.ts";
import { withinMs } from "./proxy_server.ts";
import { withConnection } from "./sockets.ts";
import { writeAll } from "../../src/write_all.ts";

/** One parsed response. */
export type Answer = { status: number; headers: Map<string, string>; body: string };

/** A real pause, for pacing a client's writes (never to wait for the server). */
export const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** The statuses of a refused head. */
export const REFUSALS = new Set([400, 414, 431, 505]);

/** The response at `at` in `text`, checked strictly; undefined while incomplete. HEAD answers say `x-method`. */
export function parseOne(
  text: string,
  at: number,
  ended: boolean,
): { answer: Answer; end: number } | undefined {
  const headEnd = text.indexOf("\r\n\r\n", at);
  if (headEnd < 0) return undefined;
  const [statusLine, ...lines] = text.slice(at, headEnd).split("\r\n");
  const status = /^HTTP\/1\.1 ([1-5]\d\d) [\x20-\x7e]*$/.exec(statusLine);
  assert(status, `not an HTTP/1.1 status line: ${JSON.stringify(text.slice(at, at + 120))}`);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const header = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+): ([^\r\n]*)$/.exec(line);
    assert(header, `a malformed header line: ${JSON.stringify(line)}`);
    const name = header[1].toLowerCase();
    assert(!headers.has(name), `two ${name} headers`);
    headers.set(name, header[2]);
  }
  const code = Number(status[1]);
  const length = headers.get("content-length");
  const coding = headers.get("transfer-encoding");
  assert(length === undefined || coding === undefined, "Content-Length beside Transfer-Encoding");
  let end = headEnd + 4;
  let body = "";
  const bodiless = code === 204 || code === 304 || headers.get("x-method") === "HEAD";
  if (bodiless) return { answer: { status: code, headers, body }, end };
  if (coding !== undefined) {
    assertEquals(coding, "chunked");
    for (let size = -1; size !== 0;) {
      const lineEnd = text.indexOf("\r\n", end);
      if (lineEnd < 0) return undefined;
      assert(/^[0-9a-f]+$/.test(text.slice(end, lineEnd)), `a bad chunk size: ${text.slice(end, lineEnd)}`);
      size = parseInt(text.slice(end, lineEnd), 16);
      if (text.length < lineEnd + size + 4) return undefined;
      assertEquals(text.slice(lineEnd + 2 + size, lineEnd + 4 + size), "\r\n", "a chunk without CRLF");
      body += text.slice(lineEnd + 2, lineEnd + 2 + size);
      end = lineEnd + 4 + size;
    }
  } else if (length !== undefined) {
    assert(/^\d+$/.test(length), `Content-Length ${length}`);
    if (text.length < end + Number(length)) return undefined;
    body = text.slice(end, end + Number(length));
    end += Number(length);
  } else {
    assertEquals(headers.get("connection"), "close", "a body to the end of a connection that stays open");
    if (!ended) return undefined;
    body = text.slice(end);
    end = text.length;
  }
  return { answer: { status: code, headers, body }, end };
}

/** Reads responses one at a time from a connection (a reset counts as its end). */
export class Reader {
  #text = "";
  #at = 0;
  ended = false;
  constructor(readonly conn: Deno.Conn) {}

  async next(): Promise<Answer> {
    while (true) {
      const parsed = parseOne(this.#text, this.#at, this.ended);
      if (parsed !== undefined) {
        this.#at = parsed.end;
        if (this.#at > 65_536) [this.#text, this.#at] = [this.#text.slice(this.#at), 0];
        return parsed.answer;
      }
      assert(!this.ended, `the connection ended within a response: ${this.#text.slice(this.#at, 200)}`);
      await this.#fill();
    }
  }

  /** Every response up to the end of the connection; nothing may follow one that says `connection: close`. */
  async all(): Promise<Answer[]> {
    while (!this.ended) await this.#fill();
    const answers: Answer[] = [];
    while (this.#at < this.#text.length) {
      answers.push(await this.next());
      if (answers.at(-1)!.headers.get("connection") === "close") {
        assertEquals(this.#text.slice(this.#at), "", "bytes after a response that closes the connection");
      }
    }
    return answers;
  }

  async #fill(): Promise<void> {
    const buffer = new Uint8Array(65_536);
    try {
      const n = await this.conn.read(buffer);
      if (n === null) this.ended = true;
      else this.#text += latin1(buffer, 0, n);
    } catch (error) {
      if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
      this.ended = true;
    }
  }
}

/** Writes `bytes` in pieces of these lengths (the rest last), then closes its side; stops if the server left. */
export async function writeInPieces(
  conn: Deno.Conn,
  bytes: Uint8Array,
  lengths: number[] = [],
): Promise<void> {
  let offset = 0;
  try {
    for (const length of [...lengths, bytes.length]) {
      const piece = bytes.subarray(offset, Math.min(bytes.length, offset + length));
      await writeAll(conn, piece);
      offset += piece.length;
      if (offset >= bytes.length) break;
      await delay(1);
    }
    await conn.closeWrite();
  } catch {
    // the server closed the connection (after refusing a head, or a request with a body)
  }
}

/** Answers with the method and the target as sent, also in headers (HEAD answers have no body). */
export function echo(req: Request): Response {
  const text = `${req.method} ${rawTargetOf(req)}`;
  return new Response(text, { headers: { "x-method": req.method, "x-echo": text } });
}

/** The onError of the tests: a plain 500. */
export const FAILED = () => new Response("error", { status: 500 });
/** A new connection to 127.0.0.1:`port`. */
export const connect = (port: number) => Deno.connect({ hostname: "127.0.0.1", port });
/** A GET request head for `target`, with `more` header lines. */
export const get = (target: string, more = "") => `GET ${target} HTTP/1.1\r\nHost: a\r\n${more}\r\n`;
/** The quick answer that {@linkcode quickAnswer} gives for `/quick`. */
export const QUICK = encodeLatin1("HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-method: GET\r\n\r\nquick");
/** A quick path that answers `/quick` only. */
export const quickAnswer = (head: { target: string }) => head.target === "/quick" ? QUICK : undefined;

/** Serves one accepted connection with `options` (echo by default) while `fn` talks to it. */
export async function withServed(
  options: Partial<ConnectionOptions>,
  fn: (client: Deno.Conn, reader: Reader) => Promise<void>,
): Promise<void> {
  await withConnection(async ({ server, client }) => {
    (client as Deno.TcpConn).setNoDelay(true);
    const connection = new ClientConnection(server, { handler: echo, onError: FAILED, ...options });
    // serve() must never reject: listenForClients() would leave the rejection unhandled, and Deno exits.
    const served = connection.serve().then(() => "resolved", (error) => error);
    try {
      await withinMs(fn(client, new Reader(client)), 4_000, "the test took over 4 s");
    } finally {
      connection.close();
      const outcome = await withinMs(served, 2_000, "serve() did not end after close()");
      assert(outcome === "resolved", `serve() rejected: ${(outcome as Error)?.stack ?? outcome}`);
    }
  });
}

/** Listens on 127.0.0.1 with `options` (echo by default) while `fn` talks to it, then shuts down. */
export async function withListener(
  options: Partial<ConnectionOptions> & { timeoutMs: number; clock?: ConnectionClock },
  fn: (listener: ClientListener) => Promise<void>,
): Promise<void> {
  const { handler = echo, ...rest } = options;
  const listener = listenForClients(handler, { hostname: "127.0.0.1", port: 0, onError: FAILED, ...rest });
  try {
    await withinMs(fn(listener), 4_500, "the test took over 4.5 s");
  } finally {
    await listener.shutdown();
  }
}

/** Sends `text` on a new connection (in pieces of `lengths`, then its side closed) and parses every answer. */
export async function exchange(port: number, text: string, lengths?: number[]): Promise<Answer[]> {
  const conn = await connect(port);
  try {
    await writeInPieces(conn, encodeLatin1(text), lengths);
    return await new Reader(conn).all();
  } finally {
    conn.close();
  }
}
