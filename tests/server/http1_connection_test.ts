/**
 * flexo's own HTTP/1.1 connection layer over real TCP on 127.0.0.1: keep-alive and pipelining, refused heads,
 * the framing of each kind of body, and errors of the handler. Quick answers are in http1_quick_answers_test.ts,
 * what the handler and the listener's sweep learn of a connection in http1_connection_state_test.ts.
 */

import { latin1 } from "../../src/server/http1_head.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { withinMs } from "../helpers/proxy_server.ts";
import { assertEnds, decoder, echo, encoder, get, slowBody, withServed } from "../helpers/http1_client.ts";

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
  // The first answer waits a turn of the event loop, which the others (answered in microtasks) do not: a server
  // that ran pipelined requests side by side would send them first.
  const handler = async (req: Request) => {
    if (req.url.endsWith("/slow")) await new Promise((resolve) => setTimeout(resolve, 0));
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

Deno.test("ClientConnection.serve() refuses malformed heads with their status and a text body no cache may store, and closes", async () => {
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
      // A refused request may be sent again right: no cache in front may keep the refusal (a 414 is cacheable).
      assertEquals(reply.headers.get("cache-control"), "no-store");
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
