/**
 * The checks every request passes once, before any answer is chosen (the quick path and the full path alike):
 * the client's address (`allowed_clients`, decided when the connection is accepted), the `Host` header, an
 * absolute-form target (flexo is not a forward proxy), and routes matched on the target as sent.
 */

import { dirname, join } from "node:path";
import { isHeadProblem, parseRequestHead } from "../../src/server/http1_head.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startTestProxy, withinMs } from "../helpers/proxy_server.ts";
import { Client } from "../helpers/http1_client.ts";

const PKG = "/core/os/x86_64/tiny-1-1-x86_64.pkg.tar.zst";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A proxy whose only mirror refuses connections, with PKG in its cache. */
async function proxyWithPackage(config: Record<string, unknown> = {}) {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  closed.close();
  const proxy = await startTestProxy({
    mirrors: [`http://127.0.0.1:${(closed.addr as Deno.NetAddr).port}/`],
    config,
  });
  await Deno.mkdir(dirname(join(proxy.dir, PKG)), { recursive: true });
  await Deno.writeFile(join(proxy.dir, PKG), encoder.encode("PACKAGE-BYTES"));
  return proxy;
}

/** Sends `text` on a new connection and reads until the server closes it: the status line and the body. */
async function exchange(port: number, text: string): Promise<{ status: number; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(encoder.encode(text));
    let all = "";
    const buffer = new Uint8Array(64 * 1024);
    while (true) {
      const n = await withinMs(conn.read(buffer), 10_000, "no answer");
      if (n === null) break;
      all += decoder.decode(buffer.subarray(0, n));
    }
    const status = Number(all.slice(9, 12));
    return { status, body: all.slice(all.indexOf("\r\n\r\n") + 4) };
  } finally {
    conn.close();
  }
}

const closing = (target: string, host: string | undefined = "127.0.0.1", version = "1.1") =>
  `GET ${target} HTTP/${version}\r\n${
    host === undefined ? "" : `Host: ${host}\r\n`
  }Connection: close\r\n\r\n`;

Deno.test("startServer() answers each request of a client outside allowed_clients with 403, status page included", async () => {
  await using proxy = await proxyWithPackage({ allowed_clients: ["10.0.0.0/8"] });
  for (const path of [PKG, "/status", "/metrics", "/"]) {
    const answer = await exchange(proxy.port, closing(path));
    assertEquals(answer.status, 403, path);
    assert(answer.body.includes("allowed_clients"), answer.body);
  }
  assertEquals(proxy.app.stats.requests.get("CACHE HIT") ?? 0, 0, "nothing of the app ran");
});

Deno.test("startServer() keeps the quick path for allowed clients when allowed_clients is set", async () => {
  await using proxy = await proxyWithPackage({ allowed_clients: ["127.0.0.0/8", "::1"] });
  for (let i = 0; i < 2; i++) assertEquals((await exchange(proxy.port, closing(PKG))).body, "PACKAGE-BYTES");
  const bytes = encoder.encode(`GET ${PKG} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  const head = parseRequestHead(bytes, bytes.length, {});
  assert(!isHeadProblem(head));
  assert(proxy.app.quickAnswer(head, { files: true }) !== undefined, "a repeated hit is answered quickly");
});

Deno.test("startServer() routes the status page and metrics on the target as sent, not a normalised one", async () => {
  await using proxy = await proxyWithPackage();
  assertEquals((await exchange(proxy.port, closing("/status"))).status, 200);
  for (const target of ["/x/%2e%2e/metrics", "/x/../status", "/%73tatus", "/x/%2E%2E/status"]) {
    const answer = await exchange(proxy.port, closing(target));
    assert(answer.status >= 400, `${target}: ${answer.status}`);
    assert(!answer.body.includes("flexo_"), `${target} answered metrics`);
    assert(!answer.body.startsWith("{"), `${target} answered the status`);
  }
});

Deno.test("startServer() refuses an invalid Host with 400 on the full path and the quick path alike", async () => {
  await using proxy = await proxyWithPackage();
  for (let round = 0; round < 3; round++) {
    // Round 0 meets the full path; after the good requests, the file is a quick hit.
    for (const host of ["x:99999", "999.999.999.999"]) {
      assertEquals((await exchange(proxy.port, closing(PKG, host))).status, 400, `${host}, round ${round}`);
    }
    assertEquals((await exchange(proxy.port, closing(PKG))).body, "PACKAGE-BYTES");
  }
});

Deno.test("startServer() refuses absolute-form targets for other hosts, as a forward proxy's (curl -x) or HTTP/1.0", async () => {
  await using proxy = await proxyWithPackage();
  for (let round = 0; round < 2; round++) {
    assertEquals((await exchange(proxy.port, closing(PKG))).body, "PACKAGE-BYTES");
    for (
      const text of [
        closing(`http://evil.example${PKG}`, "evil.example"),
        closing(`http://evil.example${PKG}`, undefined, "1.0"),
        closing(`http://127.0.0.1:1${PKG}`, "127.0.0.1:1"),
      ]
    ) {
      const answer = await exchange(proxy.port, text);
      assertEquals(answer.status, 400, text);
      assert(answer.body.includes("not a forward proxy"), answer.body);
    }
  }
  // Its own address in absolute form is served.
  const own = await exchange(
    proxy.port,
    closing(`http://127.0.0.1:${proxy.port}${PKG}`, `127.0.0.1:${proxy.port}`),
  );
  assertEquals(own.body, "PACKAGE-BYTES");
});

Deno.test("startServer() judges each request of a trusted proxy's connection on the full path, also a repeated hit without a forwarded address", async () => {
  // The proxy itself is not an allowed client: a request it sends without naming one is refused.
  await using proxy = await proxyWithPackage({
    allowed_clients: ["192.0.2.0/24"],
    trusted_proxies: ["127.0.0.1/32"],
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  const client = new Client(conn);
  try {
    const get = (more = "") => `GET ${PKG} HTTP/1.1\r\nHost: 127.0.0.1\r\n${more}\r\n`;
    for (let round = 0; round < 3; round++) {
      // An allowed client behind the proxy: served (and its path known to the quick path after the first).
      await client.send(get("X-Forwarded-For: 192.0.2.8\r\n"));
      assertEquals(decoder.decode((await client.response()).body), "PACKAGE-BYTES", `round ${round}`);
      await client.send(get("Forwarded: for=203.0.113.5\r\n"));
      assertEquals((await client.response()).status, 403, `a forwarded client outside, round ${round}`);
      await client.send(get());
      assertEquals((await client.response()).status, 403, `no client named, round ${round}`);
    }
  } finally {
    conn.close();
  }
  assertEquals((await exchange(proxy.port, closing(PKG))).status, 403, "the same on a closing connection");
});
