/**
 * When flexo's connection layer looks up a connection's socket for sendfile: while the app is still working on
 * a GET (a miss waits for a mirror), so that the search is not between a download's first bytes and the client;
 * never for answers given at once, nor for HEAD requests.
 */

import { join } from "node:path";
import { FileResponse } from "../../src/http/file_body.ts";
import type { FileSender } from "../../src/server/sendfile.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { get, withServed } from "../helpers/http1_client.ts";
import { fileSender } from "../helpers/sockets.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { waitFor } from "../helpers/wait.ts";

/** A sender on this machine's libc that counts its socket lookups. */
function countingSender(): { sender: FileSender; lookups: () => number } {
  const sender = fileSender();
  const find = sender.findSocket.bind(sender);
  let lookups = 0;
  sender.findSocket = (conn) => {
    lookups++;
    return find(conn);
  };
  return { sender, lookups: () => lookups };
}

Deno.test("ClientConnection looks up the socket while a GET's handler waits, and sends the file with it once answered", async () => {
  await withTempDir(async (dir) => {
    const bytes = randomBytes(20_000);
    const path = join(dir, "a-1-1-x86_64.pkg.tar.zst");
    await Deno.writeFile(path, bytes);
    const { sender, lookups } = countingSender();
    const upstream = Promise.withResolvers<void>();
    const handler = async () => {
      await upstream.promise; // as a miss waits for the mirror's head
      const init = { headers: { "content-length": String(bytes.length) } };
      return new FileResponse(new ReadableStream(), init, {
        path,
        start: 0,
        length: bytes.length,
        size: bytes.length,
      });
    };
    await withServed({ handler, sender }, async ({ client }) => {
      await client.send(get("/a"));
      await waitFor("the socket lookup while the handler waits", () => lookups() === 1);
      upstream.resolve();
      const reply = await client.response();
      assertEquals(reply.body, bytes);
      assertEquals([lookups(), sender.sent], [1, 1], "the socket found while waiting sent the file");
    });
  });
});

Deno.test("ClientConnection looks up no socket for answers given at once, nor while a HEAD's handler waits", async () => {
  const { sender, lookups } = countingSender();
  let upstream = Promise.withResolvers<void>();
  const handler = (req: Request) => {
    if (!req.url.endsWith("/wait")) return new Response("now");
    return upstream.promise.then(() => new Response(null, { headers: { "content-length": "3" } }));
  };
  await withServed({ handler, sender }, async ({ client }) => {
    await client.send(get("/now"));
    assertEquals((await client.response()).head.split(" ")[1], "200");
    await client.send("HEAD /wait HTTP/1.1\r\nHost: flexo.test\r\n\r\n");
    // Turns of the event loop in which a lookup would have run.
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setTimeout(resolve, 0));
    upstream.resolve();
    upstream = Promise.withResolvers<void>();
    const reply = await client.response({ bodiless: true });
    assert(reply.head.startsWith("HTTP/1.1 200"), reply.head);
    assertEquals(lookups(), 0);
  });
});
