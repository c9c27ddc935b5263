/**
 * flexo's own HTTP/1.1 connection layer over real TCP on 127.0.0.1: keep-alive and pipelining, refused heads,
 * the framing of each kind of body, quick answers (bytes, and files with sendfile), and the state that the
 * listener's sweep reads.
 */

import { join } from "node:path";
import {
  ClientConnection,
  type ConnectionOptions,
  type QuickAnswer,
} from "../../src/server/http1_connection.ts";
import { latin1 } from "../../src/server/http1_head.ts";
import { readFileRange } from "../../src/download/live_reader.ts";
import type { ResponseSent, ServeInfo } from "../../src/http/client_request.ts";
import { FileResponse } from "../../src/http/file_body.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { withinMs } from "../helpers/proxy_server.ts";
import { fileSender, readAll, withConnection } from "../helpers/sockets.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { settledNow, waitFor } from "../helpers/wait.ts";
import { concat } from "../../src/byte_reader.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The client's end of a connection: reads responses one at a time from what has arrived. */
class Client {
  #data: Uint8Array = new Uint8Array(0);
  constructor(readonly conn: Deno.Conn) {}

  async send(text: string): Promise<void> {
    const bytes = encoder.encode(text);
    for (let offset = 0; offset < bytes.length;) offset += await this.conn.write(bytes.subarray(offset));
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
function echo(req: Request): Response {
  return new Response(`${req.method} ${new URL(req.url).pathname}`);
}

const FAILED = () => new Response("error", { status: 500 });

/** Serves one accepted connection with `options` (echo() by default) while `fn` talks to it. */
async function withServed(
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

const get = (path = "/", more = "") => `GET ${path} HTTP/1.1\r\nHost: flexo.test\r\n${more}\r\n`;

/** A body that gives each piece when asked, after `wait()` (a timer by default: so it is never in memory). */
function slowBody(pieces: string[], wait = () => new Promise((resolve) => setTimeout(resolve, 5))) {
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
async function assertEnds(client: Client): Promise<void> {
  assertEquals(latin1(await withinMs(client.rest(), 5_000, "the connection stayed open")), "");
}

Deno.test("ClientConnection.serve() answers several requests on one kept-alive connection, bodies in memory with their length", async () => {
  const bytes = randomBytes(10_000) as Uint8Array<ArrayBuffer>;
  const handler = (req: Request) => req.url.endsWith("/bytes") ? new Response(bytes) : echo(req);
  await withServed({ handler }, async ({ client, connection }) => {
    for (const path of ["/a", "/bytes", "/c"]) {
      await client.send(get(path));
      const reply = await client.response();
      assert(reply.head.startsWith("HTTP/1.1 200 OK\r\n") && reply.headers.has("date"), reply.head);
      assert(!reply.headers.has("connection") && !reply.headers.has("transfer-encoding"), reply.head);
      const expected = path === "/bytes" ? bytes : encoder.encode(`GET ${path}`);
      assertEquals([reply.headers.get("content-length"), reply.body], [String(expected.length), expected]);
    }
    assert(!connection.closed);
  });
});

Deno.test("ClientConnection.serve() answers pipelined requests in order, skipping empty lines before them", async () => {
  const handler = async (req: Request) => {
    if (req.url.endsWith("/slow")) await new Promise((resolve) => setTimeout(resolve, 50));
    return echo(req);
  };
  await withServed({ handler }, async ({ client }) => {
    await client.send(`\r\n\r\n${get("/slow")}\r\n${get("/fast")}${get("/last")}`);
    for (const path of ["/slow", "/fast", "/last"]) {
      assertEquals(decoder.decode((await client.response()).body), `GET ${path}`);
    }
  });
});

Deno.test("ClientConnection.serve() ends the connection after answering Connection: close or HTTP/1.0", async () => {
  for (const request of [get("/a", "Connection: close\r\n"), "GET /a HTTP/1.0\r\n\r\n"]) {
    await withServed({}, async ({ client, served }) => {
      await client.send(request + get("/b"));
      const reply = await client.response();
      assertEquals([reply.headers.get("connection"), decoder.decode(reply.body)], ["close", "GET /a"]);
      await assertEnds(client);
      await withinMs(served, 1_000, "serve() did not end");
    });
  }
});

Deno.test("ClientConnection.serve() keeps an HTTP/1.0 connection that asks for keep-alive and says so", async () => {
  await withServed({ handler: (req) => new Response(req.url) }, async ({ client, connection }) => {
    const port = (connection.conn.localAddr as Deno.NetAddr).port;
    for (let i = 0; i < 2; i++) {
      await client.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
      const reply = await client.response();
      assertEquals(reply.headers.get("connection"), "keep-alive");
      // No Host: the URL names the address the client connected to.
      assertEquals(decoder.decode(reply.body), `http://127.0.0.1:${port}/a`);
    }
  });
});

Deno.test("ClientConnection.serve() answers a request announcing a body, then closes the connection", async () => {
  const bodies = [
    "Content-Length: 5\r\n\r\nhello",
    "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
  ];
  for (const announced of bodies) {
    let asked = 0;
    const quickAnswer = () => (asked++, encoder.encode("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
    await withServed({ quickAnswer }, async ({ client }) => {
      await client.send(`GET /a HTTP/1.1\r\nHost: flexo.test\r\n${announced}`);
      const reply = await client.response();
      assertEquals([reply.status, reply.headers.get("connection")], [200, "close"]);
      assertEquals(decoder.decode(reply.body), "GET /a");
      await assertEnds(client);
      assertEquals(asked, 0, "quickAnswer is not asked for a request with a body");
    });
  }
});

Deno.test("ClientConnection.serve() refuses malformed heads with their status and a text body, and closes", async () => {
  const cases: [string, number][] = [
    ["GET / HTTP/1.1\nHost: flexo.test\n\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400],
    ["GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505],
    [`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"a".repeat(20 * 1024)}\r\n\r\n`, 431],
  ];
  for (const [request, status] of cases) {
    let calls = 0;
    await withServed({ handler: (req) => (calls++, echo(req)) }, async ({ client }) => {
      await client.send(request);
      const reply = await client.response();
      assertEquals(reply.status, status, request.slice(0, 40));
      assertEquals(reply.headers.get("content-type"), "text/plain; charset=utf-8");
      assertEquals(reply.headers.get("connection"), "close");
      assert(/^[^\n]+\n$/.test(decoder.decode(reply.body)), decoder.decode(reply.body));
      await assertEnds(client);
    });
    assertEquals(calls, 0);
  }
});

Deno.test("ClientConnection.serve() answers HEAD with the length a GET would have and no body, 204 and 304 with neither", async () => {
  const handler = (req: Request) => {
    const path = new URL(req.url).pathname;
    if (path === "/declared") return new Response(null, { headers: { "content-length": "1234" } });
    if (path === "/204") return new Response(null, { status: 204 });
    if (path === "/304") return new Response(null, { status: 304, headers: { etag: '"e"' } });
    return new Response("hello there");
  };
  await withServed({ handler }, async ({ client }) => {
    const head = (path: string) => `HEAD ${path} HTTP/1.1\r\nHost: a\r\n\r\n`;
    await client.send(head("/declared") + head("/memory") + get("/204") + get("/304") + get("/memory"));
    assertEquals((await client.response({ bodiless: true })).headers.get("content-length"), "1234");
    assertEquals((await client.response({ bodiless: true })).headers.get("content-length"), "11");
    for (const status of [204, 304]) {
      const reply = await client.response({ bodiless: true });
      assertEquals(reply.status, status);
      assert(!reply.headers.has("content-length") && !reply.headers.has("transfer-encoding"), reply.head);
    }
    // The GET answer follows the heads directly: no body bytes went out with them.
    const reply = await client.response();
    assert(reply.head.startsWith("HTTP/1.1 200 OK\r\n"), reply.head);
    assertEquals(decoder.decode(reply.body), "hello there");
  });
});

Deno.test("ClientConnection.serve() sends a stream body that waits chunked to HTTP/1.1, to the end of the connection to HTTP/1.0", async () => {
  const handler = (req: Request) =>
    req.url.endsWith("/slow") ? new Response(slowBody(["hello", " world"])) : echo(req);
  await withServed({ handler }, async ({ client }) => {
    await client.send(get("/slow") + get("/after"));
    const reply = await client.response();
    assertEquals(reply.headers.get("transfer-encoding"), "chunked");
    assert(!reply.headers.has("content-length") && !reply.headers.has("connection"), reply.head);
    assertEquals(reply.wire, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    assertEquals(decoder.decode((await client.response()).body), "GET /after");
  });
  await withServed({ handler }, async ({ client }) => {
    await client.send("GET /slow HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    const reply = await client.response();
    assertEquals(reply.headers.get("connection"), "close");
    assert(!reply.headers.has("content-length") && !reply.headers.has("transfer-encoding"), reply.head);
    assertEquals(decoder.decode(reply.body), "hello world");
  });
});

Deno.test("ClientConnection.serve() closes the connection when a body is shorter or longer than its Content-Length", async () => {
  const cases: [ReadableStream<Uint8Array> | string, string, string][] = [
    [slowBody(["hello"]), "10", "hello"],
    ["hello world", "5", "hello"],
    [slowBody(["hel", "lo world"]), "5", "hello"],
  ];
  for (const [body, length, sent] of cases) {
    const handler = () => new Response(body, { headers: { "content-length": length } });
    await withServed({ handler }, async ({ client }) => {
      await client.send(get() + get("/next"));
      const received = latin1(await withinMs(client.rest(), 5_000, "the connection stayed open"));
      const [head, rest] = received.split("\r\n\r\n");
      assert(head.includes(`\r\ncontent-length: ${length}\r\n`), head);
      assertEquals(rest, sent, "the body as sent, and no answer to the next request");
    });
  }
});

Deno.test("ClientConnection.serve() answers with onError's response when the handler throws", async () => {
  const errors: unknown[] = [];
  const handler = (req: Request) => {
    if (req.url.endsWith("/sync")) throw new Error("sync");
    return Promise.reject(new Error("async"));
  };
  const onError = (error: unknown) => (errors.push(error), new Response("sorry", { status: 500 }));
  await withServed({ handler, onError }, async ({ client }) => {
    await client.send(get("/sync") + get("/async"));
    for (let i = 0; i < 2; i++) {
      const reply = await client.response();
      assertEquals([reply.status, decoder.decode(reply.body)], [500, "sorry"]);
      assert(reply.head.startsWith("HTTP/1.1 500 Internal Server Error\r\n"), reply.head);
    }
    assertEquals(errors.map((error) => (error as Error).message), ["sync", "async"]);
  });
});

Deno.test("ClientConnection.serve() gives the handler the client's address and a completed promise that resolves after the response with the bytes sent", async () => {
  const infos: ServeInfo[] = [];
  let completed: Promise<ResponseSent> | undefined;
  const gate = Promise.withResolvers<void>();
  const pulled = Promise.withResolvers<void>();
  const handler = (_req: Request, info: ServeInfo) => {
    // The first is asked for while the handler runs (as the app does), the second only after its response.
    if (infos.push(info) === 1) completed = info.completed;
    return new Response(slowBody(["done"], () => (pulled.resolve(), gate.promise)));
  };
  await withServed({ handler }, async ({ client, connection }) => {
    await client.send(get());
    await waitFor("the handler", () => completed !== undefined, 2_000);
    const own = client.conn.localAddr as Deno.NetAddr;
    assertEquals([infos[0].remoteAddr.hostname, infos[0].remoteAddr.port], ["127.0.0.1", own.port]);
    // The server is reading the body now: everything before it (the handler, the head) is done.
    await withinMs(pulled.promise, 2_000, "the server never asked for the body");
    assertEquals(await settledNow(completed!), false, "completed resolved while the body was still coming");
    gate.resolve();
    assertEquals(decoder.decode((await client.response()).body), "done");
    assertEquals(
      await withinMs(completed!, 1_000, "completed did not resolve after the response"),
      { whole: true, bytes: 4 },
    );
    await client.send(get());
    assertEquals(decoder.decode((await client.response()).body), "done");
    await waitFor("the response to end", () => !connection.busy, 2_000);
    await withinMs(
      infos[1].completed,
      1_000,
      "completed, first asked for after the response, never resolved",
    );
  });
});

Deno.test("ClientConnection.serve() writes quickAnswer's bytes as they are, and asks only for requests it may answer so", async () => {
  const quick = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-quick: 1\r\n\r\nquick";
  const asked: [string, boolean][] = [];
  const quickAnswer = (head: { target: string }, options: { files: boolean }) => {
    asked.push([head.target, options.files]);
    return head.target === "/quick" ? encoder.encode(quick) : undefined;
  };
  let calls = 0;
  const handler = (req: Request) => (calls++, echo(req));
  await withServed({ quickAnswer, handler }, async ({ client }) => {
    await client.send(get("/quick") + get("/other") + get("/quick", "Connection: close\r\n"));
    const first = await client.response();
    assertEquals(`${first.head}\r\n\r\n${decoder.decode(first.body)}`, quick);
    assertEquals(decoder.decode((await client.response()).body), "GET /other");
    const last = await client.response();
    assertEquals([decoder.decode(last.body), last.headers.get("connection")], ["GET /quick", "close"]);
    await assertEnds(client);
    assertEquals(asked, [["/quick", false], ["/other", false]], "no sender: no files; close: not asked");
    assertEquals(calls, 2);
  });
});

Deno.test("ClientConnection.serve() answers through the handler when quickAnswer throws", async () => {
  const quickAnswer = () => {
    throw new Error("a bug in the shortcut");
  };
  await withServed({ quickAnswer }, async ({ client }) => {
    await client.send(get("/x") + get("/y"));
    assertEquals(decoder.decode((await client.response()).body), "GET /x");
    assertEquals(decoder.decode((await client.response()).body), "GET /y", "and the connection goes on");
  });
});

Deno.test("ClientConnection.serve() sends a quick file answer with sendfile, or answers through the handler when it cannot", async () => {
  const bytes = randomBytes(300 * 1024 + 5);
  const size = bytes.length;
  await withTempDir(async (dir) => {
    const path = join(dir, "file.pkg.tar.zst");
    await Deno.writeFile(path, bytes);
    const outcomes: string[] = [];
    const offered: boolean[] = [];
    const quickAnswer = (head: { target: string }, options: { files: boolean }): QuickAnswer | undefined => {
      offered.push(options.files);
      if (head.target === "/after") return undefined;
      return {
        head: encoder.encode(`HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\nx-quick: file\r\n\r\n`),
        file: { path: head.target === "/file" ? path : join(dir, "missing"), start: 0, length: size, size },
        done: (sent) => outcomes.push(sent === undefined ? "not_started" : sent.whole ? "sent" : "failed"),
      };
    };
    const sender = fileSender();
    await withServed({ quickAnswer, sender }, async ({ client }) => {
      await client.send(get("/file"));
      const reply = await client.response();
      assertEquals(reply.headers.get("x-quick"), "file");
      assertEquals(reply.body, bytes);
      assertEquals([outcomes, sender.sent], [["sent"], 1]);
      await client.send(get("/missing"));
      const fallback = await client.response();
      assert(!fallback.headers.has("x-quick"), fallback.head);
      assertEquals(decoder.decode(fallback.body), "GET /missing");
      assertEquals(outcomes, ["sent", "not_started"]);
      await client.send(get("/after"));
      assertEquals(decoder.decode((await client.response()).body), "GET /after");
      assertEquals(offered, [true, true, true]);
    });
  });
});

Deno.test("ClientConnection.serve() sends a marked file response whole with sendfile and keeps the connection", async () => {
  const bytes = randomBytes(1024 * 1024 + 3);
  await withTempDir(async (dir) => {
    const path = join(dir, "large.pkg.tar.zst");
    await Deno.writeFile(path, bytes);
    const range = { path, start: 0, length: bytes.length, size: bytes.length };
    const handler = async (req: Request) => {
      if (!req.url.endsWith("/large")) return echo(req);
      const body = await readFileRange(path, { start: 0, end: bytes.length - 1, size: bytes.length });
      const headers = { "content-length": String(bytes.length), "x-kind": "package" };
      return new FileResponse(body, { headers }, range);
    };
    const sender = fileSender();
    await withServed({ handler, sender }, async ({ client }) => {
      await client.send(get("/large"));
      const reply = await client.response();
      assert(reply.head.startsWith("HTTP/1.1 200 OK\r\n") && reply.headers.get("x-kind") === "package");
      assertEquals(reply.body, bytes);
      assertEquals(sender.sent, 1, "sent with sendfile");
      await client.send(get("/after"));
      assertEquals(decoder.decode((await client.response()).body), "GET /after");
    });
  });
});

Deno.test("ClientConnection.busy and idleSince follow the response in progress", async () => {
  const gate = Promise.withResolvers<void>();
  const handler = async (req: Request) => (await gate.promise, echo(req));
  await withServed({ handler }, async ({ client, connection }) => {
    const idleSince = connection.idleSince;
    assert(!connection.busy && idleSince > 0 && idleSince <= performance.now());
    await client.send(get());
    await waitFor("the request to be taken", () => connection.busy, 2_000);
    assertEquals(connection.idleSince, idleSince);
    gate.resolve();
    assertEquals(decoder.decode((await client.response()).body), "GET /");
    await waitFor("the response to end", () => !connection.busy, 2_000);
    assert(connection.idleSince > idleSince, "idleSince moves to the end of the response");
  });
});

Deno.test("ClientConnection.writingSince is set while a write waits for the client, and close() ends it", async () => {
  const chunk = new Uint8Array(1024 * 1024);
  const handler = () => new Response(new ReadableStream({ pull: (controller) => controller.enqueue(chunk) }));
  await withServed({ handler }, async ({ client, connection, served }) => {
    assertEquals(connection.writingSince, 0);
    // The client reads nothing: a write soon waits, and goes on waiting.
    await client.send(get());
    const since = () => connection.writingSince;
    await waitFor("a write that waits", () => since() > 0 && performance.now() - since() > 100, 5_000);
    connection.close();
    await withinMs(served, 2_000, "serve() did not end after close()");
    assertEquals(connection.writingSince, 0);
  });
});

Deno.test("ClientConnection.close() and finish() end an idle connection and serve() at once", async () => {
  for (const end of ["close", "finish"] as const) {
    await withServed({}, async ({ client, connection, served }) => {
      await client.send(get());
      await client.response();
      connection[end]();
      assert(connection.closed, end);
      await withinMs(served, 1_000, `serve() did not end after ${end}()`);
      await assertEnds(client);
    });
  }
});

Deno.test("ClientConnection.finish() during a response lets it complete, then closes", async () => {
  // While the handler runs, the head says the connection closes; once the head is out, the connection just ends.
  for (const during of ["handler", "body"] as const) {
    const gate = Promise.withResolvers<void>();
    let calls = 0;
    const handler = async () => {
      calls++;
      if (during === "handler") return (await gate.promise, new Response("done"));
      return new Response(slowBody(["first", "second"], () => gate.promise));
    };
    await withServed({ handler }, async ({ client, connection, served }) => {
      // A second request waits behind the first: it is not answered after finish().
      await client.send(get("/a") + get("/b"));
      await waitFor("the response to begin", () => connection.busy, 2_000);
      if (during === "body") assertEquals(latin1(await client.through("\r\n\r\n")).includes("chunked"), true);
      connection.finish();
      assert(!connection.closed, "the running response is not cut");
      gate.resolve();
      if (during === "handler") {
        const reply = await client.response();
        assertEquals([decoder.decode(reply.body), reply.headers.get("connection")], ["done", "close"]);
      } else {
        assertEquals(latin1(await client.rest()), "5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n");
      }
      await assertEnds(client);
      await withinMs(served, 1_000, "serve() did not end");
      assertEquals(calls, 1);
    });
  }
});
