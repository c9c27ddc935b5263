/**
 * `Cache-Control: only-if-cached` (RFC 9111 §5.2.1.7), as cache peers send it: a cached file is served, anything
 * else is a 504 at once without asking a mirror.
 */

import { assertEquals } from "../helpers/assert.ts";
import { testApp } from "../helpers/test_app.ts";

const PKG = "/core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst";
const ONLY_IF_CACHED = { headers: { "cache-control": "max-age=0, only-if-cached" } };

Deno.test("only-if-cached: 504 at once on a miss without asking a mirror, the file once it is cached", async () => {
  let asked = 0;
  const bytes = new Uint8Array(500).fill(1);
  const app = await testApp(["http://127.0.0.1:9/"], {
    fetch: () => {
      asked++;
      return Promise.resolve(new Response(bytes, { headers: { "content-length": "500" } }));
    },
  });
  try {
    let response = await app.get(PKG, ONLY_IF_CACHED);
    assertEquals(response.status, 504, await response.text());
    response = await app.get("/core/os/x86_64/", ONLY_IF_CACHED);
    assertEquals(response.status, 504, await response.text());
    assertEquals(asked, 0);

    response = await app.get(PKG);
    assertEquals(new Uint8Array(await response.arrayBuffer()), bytes);
    await app.downloads.idle();
    response = await app.get(PKG, ONLY_IF_CACHED);
    assertEquals(response.status, 200);
    assertEquals(new Uint8Array(await response.arrayBuffer()), bytes);
    assertEquals(asked, 1);
  } finally {
    await app.cleanup();
  }
});
