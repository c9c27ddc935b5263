/**
 * The client side of the tests of flexo's HTTP/1.1 connection layer: a client that reads responses one at a
 * time, a connection served with chosen options, and bodies that come slowly.
 *
 * @module
 */

import { ClientConnection, type ConnectionOptions } from "../../src/server/http1_connection.ts";
import { latin1 } from "../../src/server/http1_head.ts";
import { assertEquals } from "./assert.ts";
import { withinMs } from "./proxy_server.ts";
import { readAll, withConnection } from "./sockets.ts";
import { concat } from "../../src/byte_reader.ts";
import { writeAll } from "../../src/write_all.ts";

/** One encoder. */
export const encoder = new TextEncoder();
/** One decoder. */
export const decoder = new TextDecoder();

/** The client's end of a connection: reads responses one at a time from what has arrived. */
export class Client {
  #data: Uint8Array = new Uint8Array(0);
  constructor(readonly conn: Deno.Conn) {}

  async send(text: string): Promise<void> {
    await writeAll(this.conn, encoder.encode(text));
  }

  /**
   * The next response (`bodiless`: an answer to HEAD, or a 204 or 304): its head, header values by name (in lower
   * case, as Headers gives them and as these tests write them), body, and body as sent (`wire`: chunks framed).
   */
  async response(options: { bodiless?: boolean } = {}) {
    const head = latin1(await this.through("\r\n\r\n")).slice(0, -4);
    const lines = head.split("\r\n");
    const headers = new Map(
      lines.slice(1).map((line) => /^(.*?): *(.*)$/.exec(line)!.slice(1, 3) as [string, string]),
    );
    let body: Uint8Array = new Uint8Array(0);
    let wire: string | undefined;
    if (options.bodiless) wire = "";
    else if (headers.has("content-length")) body = await this.#take(Number(headers.get("content-length")));
    else if (headers.get("transfer-encoding") === "chunked") {
      wire = "";
      for (let size = -1; size !== 0;) {
        const line = latin1(await this.through("\r\n"));
        size = parseInt(line, 16);
        const chunk = await this.#take(size + 2);
        wire += line + latin1(chunk);
        body = concat([body, chunk.subarray(0, size)]);
      }
    } else {
      body = await this.rest();
    }
    return { status: Number(lines[0].split(" ")[1]), head, headers, body, wire: wire ?? latin1(body) };
  }

  /** Everything still to come, up to the end of the connection. */
  async rest(): Promise<Uint8Array> {
    return concat([await this.#take(this.#data.length), await readAll(this.conn)]);
  }

  /** The bytes up to the end of the first `text`. */
  async through(text: string): Promise<Uint8Array> {
    let at: number;
    while ((at = latin1(this.#data).indexOf(text)) < 0) await this.#fill(this.#data.length + 1);
    return await this.#take(at + text.length);
  }

  async #take(length: number): Promise<Uint8Array> {
    await this.#fill(length);
    const taken = this.#data.slice(0, length);
    this.#data = this.#data.slice(length);
    return taken;
  }

  async #fill(length: number): Promise<void> {
    const buffer = new Uint8Array(256 * 1024);
    while (this.#data.length < length) {
      const n = await this.conn.read(buffer);
      if (n === null) throw new Error(`the connection ended; left: ${JSON.stringify(latin1(this.#data))}`);
      this.#data = concat([this.#data, buffer.subarray(0, n)]);
    }
  }
}

/** Answers with the method and path. */
export function echo(req: Request): Response {
  return new Response(`${req.method} ${new URL(req.url).pathname}`);
}

/** The onError of the tests: a plain 500. */
export const FAILED = () => new Response("error", { status: 500 });

/** Serves one accepted connection with `options` (echo() by default) while `fn` talks to it. */
export async function withServed(
  options: Partial<ConnectionOptions>,
  fn: (s: { client: Client; connection: ClientConnection; served: Promise<void> }) => Promise<void>,
): Promise<void> {
  await withConnection(async ({ server, client }) => {
    const connection = new ClientConnection(server, { handler: echo, onError: FAILED, ...options });
    const served = connection.serve();
    try {
      await withinMs(fn({ client: new Client(client), connection, served }), 10_000, "over 10 s");
    } finally {
      connection.close();
      await withinMs(served, 2_000, "serve() did not end after close()");
    }
  });
}

/** A GET request head for `path`, with `more` header lines. */
export const get = (path = "/", more = "") => `GET ${path} HTTP/1.1\r\nHost: flexo.test\r\n${more}\r\n`;

/** A body that gives each piece when asked, after `wait()` (a timer by default: so it is never in memory). */
export function slowBody(pieces: string[], wait = () => new Promise((resolve) => setTimeout(resolve, 5))) {
  let next = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      await wait();
      if (next < pieces.length) controller.enqueue(encoder.encode(pieces[next++]));
      else controller.close();
    },
  }, { highWaterMark: 0 });
}

/** Asserts that the connection ends with nothing more from the server. */
export async function assertEnds(client: Client): Promise<void> {
  assertEquals(latin1(await withinMs(client.rest(), 5_000, "the connection stayed open")), "");
}
