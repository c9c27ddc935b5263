/**
 * flexo's HTTP/1.1 client to mirrors: the header fields it gives with a body are those of the body it reads,
 * when a mirror's head describes its body's length twice.
 */

import { assertEquals } from "../helpers/assert.ts";
import { client, scripted } from "../helpers/scripted_upstream.ts";

Deno.test("createUpstreamClient().fetch() gives a chunked body without the Content-Length sent beside its Transfer-Encoding", async () => {
  // RFC 9112 section 6.3: the chunks decide, and an intermediary removes the Content-Length. flexo passes the
  // length on to its clients and holds the body to it: a body read whole was cut short, or too long, by it.
  const server = await scripted(() =>
    "HTTP/1.1 200 OK\r\nContent-Length: 200\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
  );
  const upstream = client();
  try {
    const response = await upstream.fetch(`${server.url}/core.db`);
    assertEquals(
      [
        response.headers.get("content-length"),
        response.headers.get("transfer-encoding"),
        await response.text(),
      ],
      [null, "chunked", "hello"],
    );
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() gives one Content-Length for a body whose length a mirror sent twice", async () => {
  // The same length twice (two fields, or a list in one) is the body's (RFC 9110 section 8.6); given as the
  // "5, 5" that Headers joins them to, it was no length to the download, which then had none for its clients.
  const server = await scripted((head) =>
    head.startsWith("GET /two ")
      ? "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length:  5\r\n\r\nhello"
      : "HTTP/1.1 200 OK\r\nContent-Length: 5 , 5\r\n\r\nhello"
  );
  const upstream = client();
  try {
    for (const path of ["/two", "/list"]) {
      const response = await upstream.fetch(`${server.url}${path}`);
      assertEquals([response.headers.get("content-length"), await response.text()], ["5", "hello"], path);
    }
  } finally {
    upstream.close();
    await server.close();
  }
});
