/**
 * flexo's HTTP/1.1 client to mirrors on a kept connection that a mirror left dirty: bytes past the end of the
 * previous answer's body (a body longer than its Content-Length) that arrive after the client has read it whole.
 */

import { assertEquals } from "../helpers/assert.ts";
import { client, scripted } from "../helpers/scripted_upstream.ts";

const encoder = new TextEncoder();

Deno.test("createUpstreamClient().fetch() asks again on a new connection when a kept one holds bytes the previous body did not announce", async () => {
  const firstRead = Promise.withResolvers<void>();
  const server = await scripted(async (_, i, conn) => {
    if (i !== 0) return `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr${i}`;
    // A body longer than its Content-Length, whose extra bytes come once the client has read the announced ones.
    await conn.write(encoder.encode("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"));
    await firstRead.promise;
    return " and more than announced";
  });
  const upstream = client();
  try {
    assertEquals(await (await upstream.fetch(`${server.url}/one`)).text(), "hello");
    assertEquals(upstream.idleConnections, 1);
    firstRead.resolve();
    const second = await upstream.fetch(`${server.url}/two`);
    assertEquals([second.status, await second.text()], [200, "r2"]);
    assertEquals(server.connections(), 2);
  } finally {
    upstream.close();
    await server.close();
  }
});
