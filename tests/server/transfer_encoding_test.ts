/**
 * Transfer-Encoding on requests (finding 3 of issue 16): a list that does not end in chunked leaves the body's
 * length unknown, so the request gets 400 and the connection is closed (RFC 9112 section 6.3).
 */

import { listenForClients } from "../../src/server/client_connections.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { withinMs } from "../helpers/proxy_server.ts";
import { rawExchange } from "../helpers/sockets.ts";

async function withEcho(fn: (port: number) => Promise<void>): Promise<void> {
  const listener = listenForClients(async (req) => new Response(`body:${await req.text()}`), {
    hostname: "127.0.0.1",
    port: 0,
    timeoutMs: 5_000,
    onError: () => new Response("error", { status: 500 }),
  });
  try {
    await withinMs(fn(listener.addr.port), 10_000, "the test did not finish within 10 s");
  } finally {
    await listener.shutdown();
  }
}

for (
  const [name, lines] of [
    ["chunked, identity", ["Transfer-Encoding: chunked, identity"]],
    ["gzip", ["Transfer-Encoding: gzip"]],
    ["identity", ["Transfer-Encoding: identity"]],
    ["chunked, gzip", ["Transfer-Encoding: chunked, gzip"]],
    ["chunked then gzip on two lines", ["Transfer-Encoding: chunked", "Transfer-Encoding: gzip"]],
  ] as [string, string[]][]
) {
  Deno.test(`a request with Transfer-Encoding ${name} gets 400 and the connection is closed`, async () => {
    await withEcho(async (port) => {
      // A second request after the first: it must not be answered, the connection ends after the 400.
      const text = await rawExchange(
        port,
        `POST /x HTTP/1.1\r\nHost: a\r\n${lines.join("\r\n")}\r\n\r\n5\r\nhello\r\n0\r\n\r\n` +
          "GET /y HTTP/1.1\r\nHost: a\r\n\r\n",
      );
      assert(text.startsWith("HTTP/1.1 400 "), text);
      assert(/\r\nconnection: close\r\n/i.test(text), text);
      assertEquals(text.match(/HTTP\/1\.1 /g)?.length, 1, text);
    });
  });
}

Deno.test("a request with Transfer-Encoding chunked (any case) is still answered", async () => {
  await withEcho(async (port) => {
    const text = await rawExchange(
      port,
      "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert(text.startsWith("HTTP/1.1 200 "), text);
  });
});
