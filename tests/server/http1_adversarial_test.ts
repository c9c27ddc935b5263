/**
 * flexo's own HTTP/1.1 layer under attack: random bytes in random TCP pieces, smuggling, head limits, failing and
 * empty body pieces, pipelined floods, slowloris, clients that never read or leave, and hostile targets and Hosts.
 */

import fc from "fast-check";
import { dirname, join } from "node:path";
import { pathOf } from "../../src/app/app.ts";
import {
  type ClientListener,
  type ConnectionClock,
  listenForClients,
} from "../../src/server/client_connections.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { ClientConnection, type ConnectionOptions } from "../../src/server/http1_connection.ts";
import { isHeadProblem, latin1, MAX_HEAD_BYTES, parseRequestHead } from "../../src/server/http1_head.ts";
import { requestFromHead } from "../../src/server/http1_request.ts";
import { rawTargetOf } from "../../src/http/client_request.ts";
import { encodeLatin1 } from "../../src/server/http1_response.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startTestProxy, withinMs } from "../helpers/proxy_server.ts";
import { readAll, withConnection } from "../helpers/sockets.ts";
import { waitFor } from "../helpers/wait.ts";

type Answer = { status: number; headers: Map<string, string>; body: string };

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const REFUSALS = new Set([400, 414, 431, 505]);

/** The response at `at` in `text`, checked strictly; undefined while incomplete. HEAD answers say `x-method`. */
function parseOne(text: string, at: number, ended: boolean): { answer: Answer; end: number } | undefined {
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
class Reader {
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
async function writeInPieces(conn: Deno.Conn, bytes: Uint8Array, lengths: number[] = []): Promise<void> {
  let offset = 0;
  try {
    for (const length of [...lengths, bytes.length]) {
      const piece = bytes.subarray(offset, Math.min(bytes.length, offset + length));
      for (let done = 0; done < piece.length;) done += await conn.write(piece.subarray(done));
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
function echo(req: Request): Response {
  const text = `${req.method} ${rawTargetOf(req)}`;
  return new Response(text, { headers: { "x-method": req.method, "x-echo": text } });
}

const FAILED = () => new Response("error", { status: 500 });
const connect = (port: number) => Deno.connect({ hostname: "127.0.0.1", port });
const get = (target: string, more = "") => `GET ${target} HTTP/1.1\r\nHost: a\r\n${more}\r\n`;
const QUICK = encodeLatin1("HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-method: GET\r\n\r\nquick");
const quickAnswer = (head: { target: string }) => head.target === "/quick" ? QUICK : undefined;

/** Serves one accepted connection with `options` (echo by default) while `fn` talks to it. */
async function withServed(
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

async function withListener(
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
async function exchange(port: number, text: string, lengths?: number[]): Promise<Answer[]> {
  const conn = await connect(port);
  try {
    await writeInPieces(conn, encodeLatin1(text), lengths);
    return await new Reader(conn).all();
  } finally {
    conn.close();
  }
}

const FRAGMENTS = [
  ..."GET /a HTTP/1.1|HEAD /h HTTP/1.1|GET /z HTTP/1.0|POST /p HTTP/1.1|get /l HTTP/1.1|GET http://a/abs HTTP/1.1"
    .split("|"),
  ..."GET /v HTTP/2.0|CONNECT a:1 HTTP/1.1|Host: a|Host: a@b|Content-Length: 3|Content-Length: 0".split("|"),
  ..."Content-Length: 1, 2|Transfer-Encoding: chunked|Connection: close|Connection: keep-alive|X: t\xe9xt"
    .split("|"),
  ..." folded|0|abc|:|".split("|"),
].map((line) => `${line}\r\n`).concat(["\r", "\n", "\0", " ", "\t", `X: ${"a".repeat(9_000)}\r\n`])
  .concat([get("/a"), get("/quick")]);

Deno.test("ClientConnection.serve() answers any bytes, in any TCP pieces, only with well-formed HTTP/1.1 responses and keeps serving", async () => {
  const seen: string[] = [];
  const handler = (req: Request) => (seen.push(`${req.method} ${rawTargetOf(req)}`), echo(req));
  await withListener({ timeoutMs: 2_000, handler, quickAnswer }, async (listener) => {
    const bytes = fc.uint8Array({ maxLength: 24 }).map((b) => latin1(b));
    const piece = fc.oneof(fc.constantFrom(...FRAGMENTS), bytes);
    const input = fc.array(piece, { maxLength: 16 }).map((parts) => parts.join(""));
    const cuts = fc.array(fc.integer({ min: 1, max: 48 }), { maxLength: 8 });
    await fc.assert(
      fc.asyncProperty(input, cuts, async (text, cuts) => {
        seen.length = 0;
        const answers = await exchange(listener.addr.port, text, cuts);
        // Every request the app saw was answered once, in order, and no answer was made up.
        assertEquals(
          answers.filter((a) => a.headers.has("x-echo")).map((a) => a.headers.get("x-echo")),
          seen,
        );
        for (const [i, answer] of answers.entries()) {
          assert(answer.headers.has("content-length"), "every answer here has a length");
          if (!REFUSALS.has(answer.status)) continue;
          assertEquals(answer.headers.get("connection"), "close", "a refusal closes the connection");
          assertEquals(i, answers.length - 1, "nothing is answered after a refusal");
        }
      }),
      { numRuns: 150 },
    );
    const [after] = await exchange(listener.addr.port, get("/after", "Connection: close\r\n"));
    assertEquals(after?.body, "GET /after");
    await waitFor("every connection to end", () => listener.connections === 0, 2_000);
  });
});

const HOW: Record<string, [string, string, boolean]> = {
  "keep": ["1.1", "", false],
  "1.0": ["1.0", "", true],
  "1.0 keep-alive": ["1.0", "Connection: keep-alive\r\n", false],
  "close": ["1.1", "Connection: close\r\n", true],
  "length 0": ["1.1", "Content-Length: 0\r\n", false],
  "body": ["1.1", "Content-Length: 5\r\n", true],
};

Deno.test("ClientConnection.serve() answers valid pipelined requests split anywhere exactly once each, in order, up to the first that ends the connection", async () => {
  const request = fc.record({
    method: fc.constantFrom("GET", "HEAD"),
    target: fc.constantFrom(
      ..."/ /a /core/os/x86_64/x-1-1-any.pkg.tar.zst /a?b=c /%41/../b /a//b".split(" "),
    ),
    how: fc.constantFrom("keep", "keep", ...Object.keys(HOW)),
    blank: fc.boolean(),
  });
  await withListener({ timeoutMs: 2_000 }, async (listener) => {
    const property = fc.asyncProperty(
      fc.array(request, { minLength: 1, maxLength: 8 }),
      fc.array(fc.nat(60)),
      async (list, cuts) => {
        let text = "";
        let ended = false;
        const expected: typeof list = [];
        for (const request of list) {
          const [version, more, closes] = HOW[request.how];
          text += `${request.blank ? "\r\n" : ""}${request.method} ${request.target} HTTP/${version}\r\n` +
            `Host: a\r\n${more}\r\n${request.how === "body" ? "GET /" : ""}`;
          if (!ended) expected.push(request);
          ended ||= closes;
        }
        const answers = await exchange(listener.addr.port, text, cuts.map((cut) => cut + 1));
        assertEquals(
          answers.map((a) => a.headers.get("x-echo")),
          expected.map((r) => `${r.method} ${r.target}`),
        );
        for (const [i, { method, target, how }] of expected.entries()) {
          assertEquals(answers[i].body, method === "GET" ? `GET ${target}` : "");
          if (how === "1.0 keep-alive") assertEquals(answers[i].headers.get("connection"), "keep-alive");
        }
      },
    );
    await fc.assert(property, { numRuns: 120 });
  });
});

Deno.test("ClientConnection.serve() reads a head split into two TCP writes at every byte boundary", async () => {
  await withServed({}, async (client, reader) => {
    const bytes = encodeLatin1("\r\n\r\nGET /split?x=1 HTTP/1.1\r\nHost: a\r\nX-E:\r\nX-Tab:\tv\t\r\n\r\n");
    for (let cut = 1; cut < bytes.length; cut++) {
      await client.write(bytes.subarray(0, cut));
      await delay(1);
      await client.write(bytes.subarray(cut));
      assertEquals((await reader.next()).body, "GET /split?x=1", `split at ${cut}`);
    }
  });
});

Deno.test("ClientConnection.serve() never lets a pipelined request hide behind a refused head or a request body", async () => {
  const seen: string[] = [];
  const handler = (req: Request) => (seen.push(rawTargetOf(req)!), echo(req));
  const smuggled = get("/smuggled");
  const cases: Record<string, [string, number]> = {
    "Content-Length and Transfer-Encoding": ["Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", 400],
    "two different lengths": ["Content-Length: 4\r\nContent-Length: 40\r\n", 400],
    "a signed length": ["Content-Length: +4\r\n", 400],
    "space before the colon": ["Content-Length : 4\r\n", 400],
    "an obs-folded line": ["X: a\r\n b\r\n", 400],
    "a bare CR": ["X: a\rb\r\n", 400],
    "a bare LF": ["X: a\nContent-Length: 4\r\n", 400],
    "a NUL byte": ["X: a\0b\r\n", 400],
    "a vertical tab": ["Content-Length:\x0b4\r\n", 400],
    "two Host headers": ["Host: b\r\n", 400],
    "a chunked body": ["Transfer-Encoding: chunked\r\n", 200],
    "a gzip, chunked body": ["Transfer-Encoding: gzip, chunked\r\n", 200],
    "a length": ["Content-Length: 4\r\n", 200],
    "a length list": ["Content-Length: 4, 4\r\n", 200],
  };
  await withListener({ timeoutMs: 2_000, handler }, async (listener) => {
    for (const [name, [more, status]] of Object.entries(cases)) {
      seen.length = 0;
      // Read as a body, "4\r\nabcd\r\n0\r\n\r\n" is 4 bytes or one chunk: the smuggled request follows either way.
      const text =
        `POST /first HTTP/1.1\r\nHost: a\r\n${more}\r\n4\r\nabcd\r\n0\r\n\r\n${smuggled}${smuggled}`;
      const answers = await exchange(listener.addr.port, text);
      assertEquals(answers.map((a) => [a.status, a.headers.get("connection")]), [[status, "close"]], name);
      assert(!seen.includes("/smuggled"), `${name}: the app saw ${seen}`);
    }
    const refused = await exchange(listener.addr.port, `GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n${smuggled}`);
    assertEquals(refused.map((a) => a.status), [400]);
  });
});

Deno.test("ClientConnection.serve() enforces the head limits at their exact sizes, whatever the TCP pieces", async () => {
  await withListener({ timeoutMs: 2_000 }, async (listener) => {
    const answered = async (text: string) =>
      (await exchange(listener.addr.port, text, [1, 4095, 1, 4096, 3, 5000])).map((a) =>
        a.headers.get("x-echo") ?? a.status
      );
    const headOf = (size: number) => get("/limit", `X: ${"v".repeat(size - get("/limit").length - 5)}\r\n`);
    assertEquals(headOf(MAX_HEAD_BYTES).length, MAX_HEAD_BYTES);
    assertEquals(await answered(headOf(MAX_HEAD_BYTES)), ["GET /limit"]);
    assertEquals(await answered(headOf(MAX_HEAD_BYTES + 1)), [431]);
    assertEquals(await answered(`GET /${"l".repeat(8_200)} HTTP/1.1\r\nHost: a\r\n\r\n`), [414]);
    assertEquals(await answered(get("/many", "X: 1\r\n".repeat(100))), [431]);
    assertEquals(await answered("\r\n".repeat(20_000) + get("/after-blank-lines")), [
      "GET /after-blank-lines",
    ]);
  });
});

/** A body that gives each piece in turn after a timer (so it is never in memory), then `end()`s. */
function slowBody(pieces: string[], end = (c: ReadableStreamDefaultController) => c.close()) {
  let next = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      await delay(5);
      if (next < pieces.length) controller.enqueue(encodeLatin1(pieces[next++]));
      else end(controller);
    },
  }, { highWaterMark: 0 });
}

Deno.test("ClientConnection.serve() closes instead of answering the next request when a body fails midway", async () => {
  const fail = (controller: ReadableStreamDefaultController) =>
    controller.error(new Error("upstream failed"));
  for (const headers of [{}, { "content-length": "100" }] as Record<string, string>[]) {
    await withServed(
      { handler: () => new Response(slowBody(["part"], fail), { headers }) },
      async (client, reader) => {
        await writeInPieces(client, encodeLatin1(get("/fails") + get("/next")));
        const error = await reader.next().then(() => undefined, String);
        assert(error?.includes("ended within a response"), `the failed body looked complete: ${error}`);
      },
    );
  }
});

Deno.test("ClientConnection.serve() answers thousands of tiny pipelined requests from one write in order", async () => {
  await withServed({ quickAnswer }, async (client, reader) => {
    const count = 3_000;
    const target = (i: number) => i % 3 === 0 ? "/quick" : `/${i}`;
    const text = Array.from({ length: count }, (_, i) => get(target(i))).join("");
    const writing = writeInPieces(client, encodeLatin1(text));
    for (let i = 0; i < count; i++) {
      assertEquals((await reader.next()).body, i % 3 === 0 ? "quick" : `GET /${i}`);
    }
    await writing;
  });
});

Deno.test("ClientConnection.serve() never rejects, whatever the handler, onError or a body throws", async () => {
  const fails = () => {
    throw new Error("handler failed");
  };
  await withServed({ handler: fails, onError: fails }, async (client, reader) => {
    await writeInPieces(client, encodeLatin1(get("/") + get("/")));
    assertEquals(await reader.all(), []);
  });
  // A body that fails with a reason String() cannot convert: the catch in serve() throws while logging it.
  const body = () => new ReadableStream({ pull: (controller) => controller.error(Object.create(null)) });
  await withServed({ handler: () => new Response(body()) }, async (client, reader) => {
    await writeInPieces(client, encodeLatin1(get("/")));
    assertEquals(await reader.all(), []);
  });
});

Deno.test("ClientConnection.serve() does not end a chunked body early when the app's stream gives an empty chunk", async () => {
  const handler = (req: Request) =>
    rawTargetOf(req) === "/next" ? echo(req) : new Response(slowBody(["abc", "", "def"]));
  await withServed({ handler }, async (client, reader) => {
    await writeInPieces(client, encodeLatin1(get("/streamed") + get("/next")));
    // chunked() of an empty piece is "0\r\n\r\n", the last chunk: the body looks complete after "abc", and
    // "3\r\ndef\r\n0\r\n\r\n" comes where the answer to /next belongs.
    assertEquals((await reader.next()).body, "abcdef");
    assertEquals((await reader.next()).body, "GET /next");
  });
});

Deno.test("ClientConnection.serve() raises no unhandled rejection when a body of unknown length fails while its first piece is written", async () => {
  const rejections: unknown[] = [];
  const onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    rejections.push(event.reason);
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  try {
    let pulls = 0;
    // Like followDownload() of a download of unknown length: a first piece above COLLECT_LIMIT, then the
    // download fails while the (slow) client has not taken that piece yet.
    const body = () =>
      new ReadableStream<Uint8Array>({
        type: "bytes",
        async pull(controller) {
          if (pulls++ === 0) return controller.enqueue(new Uint8Array(32 * 1024 * 1024));
          await delay(20);
          controller.error(new Error("download failed"));
        },
      });
    await withServed({ handler: () => new Response(body()) }, async (client) => {
      await client.write(encodeLatin1(get("/")));
      await delay(150);
      await readAll(client);
    });
    // flexo has no such listener: Deno ends the whole process at this rejection.
    assertEquals(rejections.map(String), []);
  } finally {
    globalThis.removeEventListener("unhandledrejection", onRejection);
  }
});

Deno.test("listenForClients() closes a slowloris, silent connections and a client that never reads its pipelined answers after the timeout", async () => {
  const body = new Uint8Array(64 * 1024);
  const clock = new FakeTimers();
  // A connection's writingSince of 0 means "not writing": the clock starts past it.
  clock.advance(1);
  await withListener(
    { timeoutMs: 300, handler: () => new Response(body), clock: clock.deps },
    async (listener) => {
      const silent = await Promise.all(Array.from({ length: 50 }, () => connect(listener.addr.port)));
      const [slow, deaf] = [await connect(listener.addr.port), await connect(listener.addr.port)];
      await waitFor("every connection to be accepted", () => listener.connections === 52);
      const flood = writeInPieces(deaf, encodeLatin1(get("/").repeat(5_000)));
      // The slowloris sends a byte for every 40 ms of the clock: never a whole head.
      const bytes = encodeLatin1(`GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ${"s".repeat(100)}`);
      const slowAnswers = new Reader(slow).all();
      for (let i = 0; i < 7; i++) {
        await slow.write(bytes.subarray(i, i + 1));
        clock.advance(40);
      }
      // The sweep closes connections while the clock moves: what it did is known when advance() returns.
      assertEquals(listener.timedOut, 0, "the slowloris was closed before the timeout");
      clock.advance(300);
      assertEquals(await withinMs(slowAnswers, 2_000, "the slowloris was not closed"), []);
      for (const conn of silent) assertEquals(await new Reader(conn).all(), []);
      // The deaf client's answers fill its socket on their own time: the clock moves on until it is cut off too.
      await waitFor("the sweep to close every connection", () => {
        clock.advance(100);
        return listener.connections === 0;
      }, 4_000);
      for (const conn of [slow, deaf, ...silent]) conn.close();
      await flood.catch(() => {});
    },
  );
});

Deno.test("listenForClients() keeps a busy connection whose client left until its handler answers, then lets it go", async () => {
  const gate = Promise.withResolvers<void>();
  const asked = Promise.withResolvers<void>();
  const handler = async () => (asked.resolve(), await gate.promise, new Response("late"));
  const clock = new FakeTimers();
  await withListener({ timeoutMs: 100, handler, clock: clock.deps }, async (listener) => {
    const conn = await connect(listener.addr.port);
    await conn.write(encodeLatin1(get("/waits-for-upstream")));
    await asked.promise;
    conn.close();
    // Busy and not writing: the sweep leaves it (a slow upstream is never cut), even with its client gone.
    clock.advance(400);
    assertEquals(listener.connections, 1);
    gate.resolve();
    await waitFor("the connection to end once answered", () => listener.connections === 0, 1_000);
  });
});

const PKG = "/core/os/x86_64/tiny-1-1-x86_64.pkg.tar.zst";

/** The proxy (its only mirror refuses connections) with PKG in its cache. */
async function proxyWithPackage() {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  closed.close();
  const proxy = await startTestProxy({
    mirrors: [`http://127.0.0.1:${(closed.addr as Deno.NetAddr).port}/`],
  });
  await Deno.mkdir(dirname(join(proxy.dir, PKG)), { recursive: true });
  await Deno.writeFile(join(proxy.dir, PKG), encodeLatin1("PACKAGE-BYTES"));
  return proxy;
}

const closing = (target: string, host = "127.0.0.1") =>
  `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;

Deno.test("startServer() serves the path the client sent, not one found after a :// in its target", async () => {
  const head = parseRequestHead(encodeLatin1(get(`/nothing?u=http://h${PKG}`)));
  const req = isHeadProblem(head) ? head : requestFromHead(head, { localHost: "127.0.0.1:1" });
  assert(!isHeadProblem(req));
  await using proxy = await proxyWithPackage();
  const served: string[] = [];
  for (const target of [`/nothing?u=http://h${PKG}`, `/x://h${PKG}`]) {
    if ((await exchange(proxy.port, closing(target)))[0]?.body === "PACKAGE-BYTES") served.push(target);
  }
  // pathOf() reads an origin-form target as a path, not as a URL: a "://" in its query starts no path.
  assertEquals({ pathOf: pathOf(req), served }, { pathOf: "/nothing", served: [] });
});

Deno.test("startServer() refuses traversal forms of a cached file's path also once the file is in memory", async () => {
  await using proxy = await proxyWithPackage();
  const forms = [
    "/core/os/x86_64/../x86_64/tiny-1-1-x86_64.pkg.tar.zst",
    "/core/os/x86_64/%2e%2e/x86_64/tiny-1-1-x86_64.pkg.tar.zst",
    "/core\\os\\x86_64\\tiny-1-1-x86_64.pkg.tar.zst",
    `http://127.0.0.1/a/..${PKG}`,
  ];
  const statuses = async () => {
    const found: number[] = [];
    for (const form of forms) found.push((await exchange(proxy.port, closing(form)))[0].status);
    return found;
  };
  assertEquals(await statuses(), [400, 400, 400, 400]);
  assertEquals((await exchange(proxy.port, closing(PKG)))[0].body, "PACKAGE-BYTES");
  // A hit in memory now: the quick path sees the same raw target, and the same checks run before it.
  assertEquals(await statuses(), [400, 400, 400, 400]);
});

Deno.test("startServer() refuses bad Host headers and absolute-form targets naming another host, also for a hit", async () => {
  await using proxy = await proxyWithPackage();
  assertEquals((await exchange(proxy.port, closing(PKG)))[0].body, "PACKAGE-BYTES");
  const hosts = ["evil@127.0.0.1", "127.0.0.1/x", "127.0.0.1\\x", "", "127.0.0.1\r\nHost: 127.0.0.1"];
  const targets = ["http://evil.example", "http://127.0.0.1@evil.example", "http://evil.example#@127.0.0.1"];
  const bad = [...hosts.map((host) => closing(PKG, host)), ...targets.map((origin) => closing(origin + PKG))];
  for (const text of bad) {
    assertEquals((await exchange(proxy.port, text)).map((a) => a.status), [400], JSON.stringify(text));
  }
  assertEquals((await exchange(proxy.port, closing(PKG)))[0].body, "PACKAGE-BYTES");
});
