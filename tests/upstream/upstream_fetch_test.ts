/**
 * flexo's HTTP/1.1 client to mirrors against raw servers that script every byte: kept-alive connections, body
 * framing, connections the mirror closed, interim answers, redirects, credentials, aborts, and what goes to the
 * runtime's fetch instead.
 */

import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import { createUpstreamClient } from "../../src/upstream/upstream_fetch.ts";
import { takeDirectBody } from "../../src/http/direct_body.ts";
import { client, scripted } from "../helpers/scripted_upstream.ts";

const encoder = new TextEncoder();

Deno.test("createUpstreamClient().fetch() keeps one connection alive for requests one after another", async () => {
  const server = await scripted((_, i) => `HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nbody${i}`);
  const upstream = client();
  try {
    for (let i = 0; i < 3; i++) {
      const response = await upstream.fetch(`${server.url}/core/os/x86_64/a-${i}.pkg.tar.zst`);
      assertEquals([response.status, await response.text()], [200, `body${i}`]);
    }
    assertEquals(server.connections(), 1);
    assertEquals(upstream.idleConnections, 1);
    assert(server.heads[2].startsWith("GET /core/os/x86_64/a-2.pkg.tar.zst HTTP/1.1\r\n"), server.heads[2]);
    assert(server.heads[2].includes(`host: 127.0.0.1:${server.port}\r\n`), server.heads[2]);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() reads a chunked body with extensions and trailers into a BYOB reader's buffer", async () => {
  const server = await scripted(() =>
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
    "5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
  );
  const upstream = client();
  try {
    const response = await upstream.fetch(`${server.url}/file`);
    const reader = response.body!.getReader({ mode: "byob" });
    let text = "";
    let buffer = new ArrayBuffer(4);
    while (true) {
      const { done, value } = await reader.read(new Uint8Array(buffer));
      if (done) break;
      text += new TextDecoder().decode(value);
      buffer = value.buffer as ArrayBuffer;
    }
    assertEquals(text, "hello world");
    // Read whole, the connection carries the next request.
    assertEquals(await (await upstream.fetch(`${server.url}/again`)).text(), "hello world");
    assertEquals(server.connections(), 1);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() gives its bodies a direct reader that reads them whole without the stream, and keeps the connection", async () => {
  const server = await scripted((_, i) =>
    i === 0
      ? "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"
      : "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
  );
  const upstream = client();
  try {
    for (let i = 0; i < 2; i++) {
      const response = await upstream.fetch(`${server.url}/file-${i}`);
      const direct = takeDirectBody(response.body!);
      assert(direct !== undefined, "a direct reader");
      assertEquals(takeDirectBody(response.body!), undefined, "taken once");
      const buffer = new Uint8Array(4);
      let text = "";
      for (let read; (read = await direct.readInto(buffer)) !== null;) {
        text += new TextDecoder().decode(buffer.subarray(0, read));
      }
      assertEquals(text, "hello world");
      assertEquals(response.body!.locked, false, "the stream was not read");
      direct.cancel();
      assertEquals(upstream.idleConnections, 1, "read whole, the connection carries the next request");
    }
    assertEquals(server.connections(), 1);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() has no direct reader for a body whose stream is being read; a cancelled direct reader closes the connection", async () => {
  const server = await scripted(() => "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world");
  const upstream = client();
  try {
    const read = await upstream.fetch(`${server.url}/a`);
    const reader = read.body!.getReader();
    assertEquals(takeDirectBody(read.body!), undefined);
    await reader.cancel();
    const cancelled = await upstream.fetch(`${server.url}/b`);
    const direct = takeDirectBody(cancelled.body!)!;
    assertEquals(await direct.readInto(new Uint8Array(5)), 5);
    direct.cancel();
    assertEquals(upstream.idleConnections, 0, "a body left unread: its connection is not reused");
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() reads a body with socketReads when its bytes are there, and with the connection's read when not; one lookup per plain connection", async () => {
  const server = await scripted(async (_, i, conn) => {
    await conn.write(encoder.encode(`HTTP/1.1 200 OK\r\nContent-Length: ${i === 0 ? 10 : 5}\r\n\r\n`));
    await new Promise((resolve) => setTimeout(resolve, 20));
    return "world";
  });
  const lookups: Deno.Conn[] = [];
  const taken: string[] = [];
  const upstream = client({
    socketReads: (conn) => {
      lookups.push(conn);
      let first = true;
      return {
        // Bytes "already there" (made up here, so that the test sees where they came from), then nothing.
        readNow: (view) => {
          if (!first) return taken.push("nothing"), undefined;
          first = false;
          view.set(encoder.encode("hello"));
          taken.push("hello");
          return 5;
        },
      };
    },
  });
  try {
    for (let i = 0; i < 2; i++) {
      const response = await upstream.fetch(`${server.url}/file-${i}`);
      assertEquals(await response.text(), i === 0 ? "helloworld" : "world");
    }
    assertEquals(lookups.length, 1, "looked up once for the connection");
    assertEquals(taken.slice(0, 2), ["hello", "nothing"]);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() fails a body that ends before its Content-Length, and does not keep the connection", async () => {
  const server = await scripted(() => "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", {
    closeAfter: 1,
  });
  const upstream = client();
  try {
    const response = await upstream.fetch(`${server.url}/file`);
    const error = await assertRejects(() => response.arrayBuffer(), TypeError);
    assert(/91 bytes before the end of the body/.test(error.message), error.message);
    assertEquals(upstream.idleConnections, 0);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() asks again on a new connection when the mirror closed the kept one", async () => {
  // Each connection answers one request and closes without saying so (as a mirror's keep-alive timeout does).
  const server = await scripted((_, i) => `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr${i}`, {
    closeAfter: 1,
  });
  const upstream = client();
  try {
    assertEquals(await (await upstream.fetch(`${server.url}/one`)).text(), "r0");
    assertEquals(upstream.idleConnections, 1);
    // Give the close time to arrive, as it would between two downloads.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assertEquals(await (await upstream.fetch(`${server.url}/two`)).text(), "r1");
    assertEquals(server.connections(), 2);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() asks again on a new connection when a kept one answers 408", async () => {
  // The mirror's idle timeout wrote 408 on the kept connection just as the next request went out.
  const answers = [
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr0",
    "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr2",
    "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n",
  ];
  const server = await scripted((_, i) => answers[i], { closeAfter: 2 });
  const upstream = client();
  try {
    assertEquals(await (await upstream.fetch(`${server.url}/one`)).text(), "r0");
    assertEquals(await (await upstream.fetch(`${server.url}/two`)).text(), "r2");
    assertEquals(server.connections(), 2);
    upstream.close();
    // On a new connection a 408 is the answer.
    assertEquals((await upstream.fetch(`${server.url}/three`)).status, 408);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() passes over 100 Continue and 103 Early Hints to the answer", async () => {
  const server = await scripted(() =>
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" +
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
  );
  const upstream = client();
  try {
    const response = await upstream.fetch(`${server.url}/file`);
    assertEquals([response.status, response.headers.get("link"), await response.text()], [200, null, "ok"]);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() follows redirects, and sends credentials only to their origin", async () => {
  const target = await scripted((head) => {
    const auth = /authorization: (.*)\r\n/.exec(head)?.[1] ?? "none";
    return `HTTP/1.1 200 OK\r\nContent-Length: ${auth.length}\r\n\r\n${auth}`;
  });
  const first = await scripted((head) => {
    if (head.startsWith("GET /start ")) {
      return "HTTP/1.1 301 Moved\r\nLocation: /next?x=1\r\nContent-Length: 0\r\n\r\n";
    }
    if (head.startsWith("GET /next?x=1 ")) {
      return `HTTP/1.1 302 Found\r\nLocation: ${target.url}/there\r\nContent-Length: 3\r\n\r\nabc`;
    }
    return "HTTP/1.1 500 Wrong\r\nContent-Length: 0\r\n\r\n";
  });
  const upstream = client();
  try {
    const url = first.url.replace("http://", "http://user:p%40ss@");
    const response = await upstream.fetch(`${url}/start`);
    assertEquals([response.status, await response.text()], [200, "none"]);
    const basic = `Basic ${btoa("user:p@ss")}`;
    assertEquals(first.heads.map((head) => /authorization: (.*)\r\n/.exec(head)?.[1]), [basic, basic]);
    assertEquals(target.heads.length, 1);
  } finally {
    upstream.close();
    await first.close();
    await target.close();
  }
});

Deno.test("createUpstreamClient().fetch() rejects with the abort's reason before the head, and fails the body with it after", async () => {
  const release = Promise.withResolvers<void>();
  const server = await scripted(async (head) => {
    if (head.startsWith("GET /slow ")) await release.promise;
    return "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst bytes";
  });
  const upstream = client();
  try {
    const early = new AbortController();
    const waiting = upstream.fetch(`${server.url}/slow`, { signal: early.signal });
    early.abort(new Error("connect_timeout"));
    assertEquals((await assertRejects(() => waiting)).message, "connect_timeout");
    release.resolve();

    const late = new AbortController();
    const response = await upstream.fetch(`${server.url}/body`, { signal: late.signal });
    const reader = response.body!.getReader();
    assertEquals(new TextDecoder().decode((await reader.read()).value), "first bytes");
    late.abort(new Error("too slow"));
    assertEquals((await assertRejects(() => reader.read())).message, "too slow");
    assertEquals(upstream.idleConnections, 0);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() answers HEAD without a body and keeps the connection", async () => {
  const server = await scripted(() => "HTTP/1.1 200 OK\r\nContent-Length: 123456\r\n\r\n");
  const upstream = client();
  try {
    const response = await upstream.fetch(`${server.url}/file`, { method: "HEAD" });
    assertEquals([response.status, response.body, response.headers.get("content-length")], [
      200,
      null,
      "123456",
    ]);
    assertEquals(upstream.idleConnections, 1);
    assertEquals((await upstream.fetch(`${server.url}/file`, { method: "HEAD" })).status, 200);
    assertEquals(server.connections(), 1);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() keeps no connection after Connection: close, a body until the close, or a cancel", async () => {
  const answers = [
    "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.0 200 OK\r\n\r\nuntil the end",
    "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
  ];
  const server = await scripted((_, i) => answers[i], { closeAfter: 1 });
  const upstream = client();
  try {
    assertEquals(await (await upstream.fetch(`${server.url}/a`)).text(), "ok");
    assertEquals(upstream.idleConnections, 0);
    assertEquals(await (await upstream.fetch(`${server.url}/b`)).text(), "until the end");
    assertEquals(upstream.idleConnections, 0);
    await (await upstream.fetch(`${server.url}/c`)).body!.cancel();
    assertEquals([upstream.idleConnections, server.connections()], [0, 3]);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() rejects answers that are not HTTP/1.x or leave the body's end unclear", async () => {
  const answers: Record<string, string> = {
    "/garbage": "SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "/lengths": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "/negative": "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "/folded": "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "/huge": `HTTP/1.1 200 OK\r\n${"X-Filler: " + "a".repeat(1000) + "\r\n"}`.repeat(70),
  };
  const server = await scripted((head) => answers[head.split(" ")[1]], { closeAfter: 1 });
  const upstream = client();
  try {
    for (
      const [path, expected] of Object.entries({
        "/garbage": /not HTTP\/1.x/,
        "/lengths": /invalid Content-Length/,
        "/negative": /invalid Content-Length/,
        "/folded": /malformed header line/,
        "/huge": /larger than 65536 bytes/,
      })
    ) {
      const error = await assertRejects(() => upstream.fetch(server.url + path), TypeError);
      assert(expected.test(error.message), `${path}: ${error.message}`);
    }
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() hands other methods, bodies, redirect modes and proxied setups to its fallback", async () => {
  const calls: string[] = [];
  const fallback = (input: RequestInfo | URL, init?: RequestInit) => {
    calls.push(`${init?.method ?? "GET"} ${String(input)} ${init?.redirect ?? "follow"}`);
    return Promise.resolve(new Response("from the fallback"));
  };
  const direct = createUpstreamClient({ proxied: false, fallback });
  const proxied = createUpstreamClient({ proxied: true, fallback });
  try {
    await direct.fetch("http://127.0.0.1:9/a", { method: "POST", body: "x" });
    await direct.fetch("http://127.0.0.1:9/b", { redirect: "manual" });
    await direct.fetch("ftp://127.0.0.1:9/c");
    await proxied.fetch("http://127.0.0.1:9/d");
    assertEquals(calls, [
      "POST http://127.0.0.1:9/a follow",
      "GET http://127.0.0.1:9/b manual",
      "GET ftp://127.0.0.1:9/c follow",
      "GET http://127.0.0.1:9/d follow",
    ]);
  } finally {
    direct.close();
    proxied.close();
  }
});

Deno.test("createUpstreamClient().fetch() does not use a connection idle longer than idleMs", async () => {
  let now = 0;
  const server = await scripted(() => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  const upstream = client({ idleMs: 1000, now: () => now });
  try {
    await (await upstream.fetch(`${server.url}/a`)).text();
    now = 999;
    await (await upstream.fetch(`${server.url}/b`)).text();
    assertEquals(server.connections(), 1);
    now = 2000;
    await (await upstream.fetch(`${server.url}/c`)).text();
    assertEquals([server.connections(), upstream.idleConnections], [2, 1]);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() reports a refused connection as a TypeError naming the host", async () => {
  const upstream = client();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const error = await assertRejects(() => upstream.fetch(`http://127.0.0.1:${port}/x`), TypeError);
  assertEquals(error.message, `connecting to 127.0.0.1:${port} failed`);
  assert(error.cause instanceof Deno.errors.ConnectionRefused, String(error.cause));
  upstream.close();
});

Deno.test("createUpstreamClient().fetch() keeps the other idle connections to an origin when it takes one", async () => {
  // Three requests at once: the mirror answers when all three have come, so each has a connection of its own.
  const allAsked = Promise.withResolvers<void>();
  let asked = 0;
  const server = await scripted(async () => {
    if (++asked === 3) allAsked.resolve();
    await allAsked.promise;
    return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  });
  const upstream = client();
  const three = () =>
    Promise.all([0, 1, 2].map(async (i) => await (await upstream.fetch(`${server.url}/${i}`)).text()));
  try {
    assertEquals(await three(), ["ok", "ok", "ok"]);
    assertEquals(upstream.idleConnections, 3);
    assertEquals(await (await upstream.fetch(`${server.url}/one`)).text(), "ok");
    assertEquals(upstream.idleConnections, 3);
    assertEquals(await three(), ["ok", "ok", "ok"]);
    assertEquals([server.connections(), upstream.idleConnections], [3, 3]);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() rejects with the abort's reason when the abort comes as its new connection opens", async () => {
  const server = await scripted(() => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  try {
    for (let ticks = 0; ticks < 16; ticks++) {
      const abort = new AbortController();
      const upstream = client({
        connect: async (target) => {
          const conn = await Deno.connect({ hostname: target.hostname, port: target.port });
          // The abort comes `ticks` microtasks later, as a hedged race's winner cancels the others from its
          // promise's callback.
          let later = Promise.resolve();
          for (let i = 0; i < ticks; i++) later = later.then(() => {});
          later.then(() => abort.abort(new Error("another mirror answered first")));
          return conn;
        },
      });
      try {
        const answer = await upstream.fetch(`${server.url}/x`, { signal: abort.signal }).then(
          async (response) => `answered ${response.status} ${await response.text()}`,
          (error: Error) => error.message,
        );
        assertEquals(answer, "another mirror answered first", `aborted ${ticks} microtasks after connecting`);
        assertEquals(upstream.idleConnections, 0);
      } finally {
        upstream.close();
      }
    }
  } finally {
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() keeps no closed connection when the answer's status cannot make a Response", async () => {
  const server = await scripted((head) =>
    head.includes(" /odd ")
      ? "HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n"
      : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
  );
  const upstream = client();
  try {
    for (const method of ["GET", "HEAD"]) {
      const error = await assertRejects(() => upstream.fetch(`${server.url}/odd`, { method }), TypeError);
      assert(/cannot be used/.test(error.message), error.message);
      // The answer was read whole: its connection, clean and open, carries the next request.
      assertEquals(await (await upstream.fetch(`${server.url}/ok`)).text(), "ok");
    }
    assertEquals([server.connections(), upstream.idleConnections], [1, 1]);
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() fails the body with the abort's reason also for bytes it read already", async () => {
  const server = await scripted(() => "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234");
  const upstream = client();
  try {
    const abort = new AbortController();
    const response = await upstream.fetch(`${server.url}/x`, { signal: abort.signal });
    const reader = response.body!.getReader({ mode: "byob" });
    assertEquals(new TextDecoder().decode((await reader.read(new Uint8Array(2))).value), "01");
    abort.abort(new Error("too slow"));
    assertEquals((await assertRejects(() => reader.read(new Uint8Array(2)))).message, "too slow");
  } finally {
    upstream.close();
    await server.close();
  }
});
