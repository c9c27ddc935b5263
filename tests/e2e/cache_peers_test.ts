/**
 * Cache peers: a node that misses a package asks its peers with only-if-cached first and takes the file from one
 * that has it, so the origin sees no new download; when no peer has it, the peers fetch nothing for it and the
 * node goes to the mirrors.
 */

import { assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";

const PKG = "/core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst";
const OTHER = "/core/os/x86_64/yy-1.0-1-x86_64.pkg.tar.zst";

/** An origin on 127.0.0.1 serving `bytes` for every path, counting GETs per path. */
function origin(bytes: Uint8Array) {
  const gets = new Map<string, number>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (req.method === "GET") gets.set(path, (gets.get(path) ?? 0) + 1);
    return new Response(bytes as Uint8Array<ArrayBuffer>, {
      headers: { "content-length": String(bytes.length) },
    });
  });
  return { url: `http://127.0.0.1:${server.addr.port}/`, gets, close: () => server.shutdown() };
}

Deno.test("a node fills a miss from a cache peer that has the file; the origin sees no new download", async () => {
  const bytes = randomBytes(200_000);
  const mirror = origin(bytes);
  try {
    await using a = await startTestProxy({ mirrors: [mirror.url] });
    assertEquals(new Uint8Array(await (await fetch(`${a.url}${PKG}`)).arrayBuffer()), bytes);
    await a.app.downloads.idle();
    await using b = await startTestProxy({ mirrors: [mirror.url], config: { cache_peers: [a.url] } });
    const response = await fetch(`${b.url}${PKG}`);
    assertEquals(response.status, 200);
    assertEquals(new Uint8Array(await response.arrayBuffer()), bytes);
    await b.app.downloads.idle();
    assertEquals(mirror.gets.get(PKG), 1, "the origin was asked again");
    assertEquals(b.app.stats.peerHits, 1);

    // A file no peer has: the peer answers 504 at once and fetches nothing; the node asks the mirror.
    const other = await fetch(`${b.url}${OTHER}`);
    assertEquals(new Uint8Array(await other.arrayBuffer()), bytes);
    await b.app.downloads.idle();
    assertEquals(mirror.gets.get(OTHER), 1);
    assertEquals(a.app.store.statComplete(OTHER.slice(1).split("/")), undefined, "the peer fetched for it");
    assertEquals(b.app.stats.peerHits, 1);
  } finally {
    await mirror.close();
  }
});
