/**
 * Serving connections with a client timeout: silent and half-finished requests are closed, idle keep-alive
 * connections and clients that take none of their response too, while requests in progress and reused
 * connections are left alone; files go out with sendfile on kept-alive connections.
 */

import { join } from "node:path";
import { type ClientListener, listenForClients } from "../../src/server/client_connections.ts";
import { readFileRange } from "../../src/download/live_reader.ts";
import { FileResponse } from "../../src/http/file_body.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { fileSender } from "../helpers/sockets.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { withinMs } from "../helpers/proxy_server.ts";
import { waitFor } from "../helpers/wait.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A listener on 127.0.0.1 with `timeoutMs`, answering "hello" (or what `handler` answers). */
async function withListener(
  timeoutMs: number,
  fn: (listener: ClientListener) => Promise<void>,
  handler: (req: Request) => Response | Promise<Response> = () => new Response("hello"),
  clock?: FakeTimers,
): Promise<void> {
  const listener = listenForClients(handler, {
    hostname: "127.0.0.1",
    port: 0,
    timeoutMs,
    onError: () => new Response("error", { status: 500 }),
    clock: clock?.deps,
  });
  try {
    await withinMs(fn(listener), 10_000, "the test did not finish within 10 s");
  } finally {
    await listener.shutdown();
  }
}

function connect(listener: ClientListener): Promise<Deno.Conn> {
  return Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
}

/** Reads until the server closes the connection (a reset counts as closed); returns the text read. */
async function readUntilClosed(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  try {
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) return text;
      text += decoder.decode(buffer.subarray(0, n));
    }
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionReset) return text;
    throw error;
  } finally {
    conn.close();
  }
}

/** Reads one response with a `Content-Length` body from a keep-alive connection. */
async function readResponse(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  while (true) {
    const split = text.indexOf("\r\n\r\n");
    if (split >= 0) {
      const length = Number(/content-length: (\d+)/i.exec(text.slice(0, split))?.[1] ?? 0);
      if (text.length >= split + 4 + length) return text;
    }
    const n = await conn.read(buffer);
    if (n === null) throw new Error(`the connection closed after: ${text}`);
    text += decoder.decode(buffer.subarray(0, n));
  }
}

const GET = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

Deno.test("listenForClients() closes a connection that sends nothing, or half a request, after the timeout", async () => {
  const clock = new FakeTimers();
  await withListener(
    300,
    async (listener) => {
      const silent = await connect(listener);
      const half = await connect(listener);
      await half.write(encoder.encode("GET / HTTP/1.1\r\nHost: 12"));
      // Accepting happens in the kernel and Deno's loop: waited for, not timed.
      await waitFor("both connections to be accepted", () => listener.connections === 2);
      const reads = Promise.all([readUntilClosed(silent), readUntilClosed(half)]);
      clock.advance(299);
      // The sweep closes connections while the clock moves: what it did is known when advance() returns.
      assertEquals(listener.timedOut, 0, "closed before the timeout");
      assertEquals(listener.connections, 2);
      clock.advance(100);
      assertEquals(listener.timedOut, 2, "both closed once the timeout ran out");
      const [silentText, halfText] = await reads;
      assertEquals(silentText, "");
      assert(!halfText.includes("hello"), `the half request was answered: ${halfText}`);
      await waitFor("the listener to let the connections go", () => listener.connections === 0, 2_000);
    },
    undefined,
    clock,
  );
});

Deno.test("listenForClients() answers requests and lets a busy client reuse its connection", async () => {
  const clock = new FakeTimers();
  await withListener(
    400,
    async (listener) => {
      const conn = await connect(listener);
      try {
        for (let i = 0; i < 4; i++) {
          await conn.write(encoder.encode(GET));
          const answer = await readResponse(conn);
          assert(answer.startsWith("HTTP/1.1 200"), answer);
          assert(answer.endsWith("hello"), answer);
          // Less than the timeout between requests: the connection stays open.
          clock.advance(250);
        }
        assertEquals(listener.connections, 1);
      } finally {
        conn.close();
      }
    },
    undefined,
    clock,
  );
});

Deno.test("listenForClients() closes a keep-alive connection that stays idle after its response", async () => {
  const clock = new FakeTimers();
  await withListener(
    300,
    async (listener) => {
      const conn = await connect(listener);
      await waitFor("the connection to be accepted", () => listener.connections === 1);
      clock.advance(250);
      await conn.write(encoder.encode(GET));
      assert((await readResponse(conn)).endsWith("hello"));
      // The timeout counts from the end of the response (at 250 ms), not from the connection's start.
      const closed = readUntilClosed(conn);
      clock.advance(100);
      assertEquals(listener.timedOut, 0, "closed before the timeout counted from the response");
      clock.advance(300);
      assertEquals(listener.timedOut, 1, "closed once the timeout ran out");
      assertEquals(await closed, "");
    },
    undefined,
    clock,
  );
});

Deno.test("listenForClients() does not cut a response that takes longer than the timeout", async () => {
  const clock = new FakeTimers();
  // A connection's writingSince of 0 means "not writing": the clock starts past it.
  clock.advance(1);
  const chunks = 8;
  const pulled: PromiseWithResolvers<void>[] = Array.from(
    { length: chunks + 1 },
    () => Promise.withResolvers(),
  );
  const next: PromiseWithResolvers<void>[] = Array.from({ length: chunks }, () => Promise.withResolvers());
  let pulls = 0;
  // Each chunk comes when the test says, after the clock moved 100 ms: 800 ms in all, four times the timeout.
  const slow = () =>
    new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          const i = pulls++;
          pulled[i].resolve();
          if (i === chunks) return controller.close();
          await next[i].promise;
          controller.enqueue(encoder.encode(`chunk ${i}\n`));
        },
      }, { highWaterMark: 0 }),
    );
  await withListener(
    200,
    async (listener) => {
      const response = fetch(`http://127.0.0.1:${listener.addr.port}/`);
      for (let i = 0; i < chunks; i++) {
        await pulled[i].promise;
        clock.advance(100);
        next[i].resolve();
      }
      const text = await (await response).text();
      assertEquals(text.split("\n").filter(Boolean).length, chunks);
      assertEquals(listener.timedOut, 0, "the sweep closed nothing");
      assert(clock.now() > 4 * 200, "the response took longer than the timeout");
    },
    slow,
    clock,
  );
});

Deno.test("listenForClients() passes the client's address to the handler", async () => {
  let seen: Deno.NetAddr | undefined;
  await withListener(1_000, async (listener) => {
    const response = await fetch(`http://127.0.0.1:${listener.addr.port}/`);
    await response.body?.cancel();
    assertEquals(seen?.hostname, "127.0.0.1");
  }, (_req: Request, info?: Deno.ServeHandlerInfo<Deno.NetAddr>) => {
    seen = info?.remoteAddr;
    return new Response("hello");
  });
});

Deno.test("shutdown() of listenForClients() closes idle connections, waits for running responses and stops accepting", async () => {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => release = resolve);
  const listener = listenForClients(async () => {
    await gate;
    return new Response("late");
  }, { hostname: "127.0.0.1", port: 0, timeoutMs: 60_000, onError: () => new Response("", { status: 500 }) });
  const port = listener.addr.port;
  const idle = await Deno.connect({ hostname: "127.0.0.1", port });
  const running = fetch(`http://127.0.0.1:${port}/`).then((r) => r.text());
  await waitFor("both connections", () => listener.connections === 2, 2_000);
  const stopped = listener.shutdown();
  assertEquals(await withinMs(readUntilClosed(idle), 2_000, "the idle connection stayed open"), "");
  release();
  assertEquals(await running, "late");
  await withinMs(stopped, 2_000, "shutdown() did not finish");
  await withinMs(listener.finished, 1_000, "finished did not resolve");
  const refused = await Deno.connect({ hostname: "127.0.0.1", port }).then(
    (conn) => (conn.close(), false),
    () => true,
  );
  assert(refused, "the listener still accepts connections after shutdown()");
});

Deno.test("listenForClients() with a sender sends a marked file with sendfile and keeps the connection", async () => {
  const bytes = randomBytes(2 * 1024 * 1024 + 7);
  await withTempDir(async (dir) => {
    const path = join(dir, "large.pkg.tar.zst");
    await Deno.writeFile(path, bytes);
    const listener = listenForClients((req) => {
      if (!req.url.endsWith("/large")) return new Response("hello");
      const body = readFileRange(path, { start: 0, end: bytes.length - 1, size: bytes.length });
      const headers = { "content-length": String(bytes.length), "x-kind": "package" };
      return new FileResponse(body, { headers }, {
        path,
        start: 0,
        length: bytes.length,
        size: bytes.length,
      });
    }, {
      hostname: "127.0.0.1",
      port: 0,
      timeoutMs: 10_000,
      onError: () => new Response("error", { status: 500 }),
      sender: fileSender(),
    });
    const conn = await connect(listener);
    try {
      await conn.write(encoder.encode(GET));
      assert(
        (await readResponse(conn)).endsWith("hello"),
        "a small answer first, on a kept-alive connection",
      );
      await conn.write(encoder.encode("GET /large HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
      const { head, body } = await withinMs(readBytesResponse(conn), 10_000, "the large answer never ended");
      assert(head.startsWith("HTTP/1.1 200 OK\r\n"), head);
      assert(!/\r\nconnection: close\r\n/.test(head + "\r\n"), head);
      assert(head.includes(`content-length: ${bytes.length}`) && head.includes("x-kind: package"), head);
      assertEquals(body, bytes);
      await conn.write(encoder.encode(GET));
      assert((await readResponse(conn)).endsWith("hello"), "the same connection answers again");
    } finally {
      conn.close();
      await listener.shutdown();
    }
  });
});

Deno.test("listenForClients() closes a connection whose client takes nothing of its response for the timeout", async () => {
  const chunk = new Uint8Array(1024 * 1024);
  await withListener(300, async (listener) => {
    const conn = await connect(listener);
    await conn.write(encoder.encode(GET));
    await waitFor("the response to fill the connection", () => listener.connections === 1, 2_000);
    const started = performance.now();
    await waitFor("the stalled connection to be closed", () => listener.connections === 0, 5_000);
    const ms = performance.now() - started;
    assert(ms < 4_000, `closed after ${Math.round(ms)} ms with a 300 ms timeout`);
    conn.close();
  }, () => {
    // An endless body, written through JavaScript: the client never reads it.
    const body = new ReadableStream<Uint8Array>({ pull: (controller) => controller.enqueue(chunk) });
    return new Response(body);
  });
});

/** Reads one response (head and a `Content-Length` body) as bytes from a kept-alive connection. */
async function readBytesResponse(conn: Deno.Conn): Promise<{ head: string; body: Uint8Array }> {
  let received = new Uint8Array(0);
  const buffer = new Uint8Array(256 * 1024);
  while (true) {
    const text = decoder.decode(received.subarray(0, Math.min(received.length, 8192)));
    const split = text.indexOf("\r\n\r\n");
    if (split >= 0) {
      const head = text.slice(0, split);
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (received.length >= split + 4 + length) {
        return { head, body: received.slice(split + 4, split + 4 + length) };
      }
    }
    const n = await conn.read(buffer);
    if (n === null) throw new Error("the connection closed before the whole response");
    const more = new Uint8Array(received.length + n);
    more.set(received);
    more.set(buffer.subarray(0, n), received.length);
    received = more;
  }
}
