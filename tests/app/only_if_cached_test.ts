/**
 * `Cache-Control: only-if-cached` (RFC 9111 §5.2.1.7), as cache peers send it: a cached file is served, anything
 * else is a 504 at once without asking a mirror.
 */

import { assertEquals } from "../helpers/assert.ts";
import { testApp } from "../helpers/test_app.ts";
import { testDatabase } from "../helpers/test_database.ts";

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

Deno.test("only-if-cached: a cached database is answered from the cache without revalidating it upstream", async () => {
  const requests: string[] = [];
  const db = testDatabase();
  const app = await testApp(["http://127.0.0.1:9/"], {
    fetch: (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      requests.push(`${init?.method ?? "GET"} ${new URL(url).pathname}`);
      return Promise.resolve(
        new Response(db as Uint8Array<ArrayBuffer>, {
          headers: { "content-length": String(db.length), "last-modified": "Mon, 01 Jan 2024 00:00:00 GMT" },
        }),
      );
    },
  });
  try {
    const DB = "/core/os/x86_64/core.db";
    let response = await app.get(DB, ONLY_IF_CACHED);
    assertEquals(response.status, 504, await response.text());
    assertEquals(requests, [], "a miss with only-if-cached asked a mirror");

    response = await app.get(DB);
    assertEquals(new Uint8Array(await response.arrayBuffer()), db);
    await app.downloads.idle();
    assertEquals(requests.length, 1);

    // Without only-if-cached a cached database is revalidated: the mirror is asked again ...
    response = await app.get(DB);
    await response.body?.cancel();
    await app.downloads.idle();
    assertEquals(requests.length, 2, "a plain request for a cached database was not revalidated");
    // ... with it, the cached copy is the answer and no mirror hears of it.
    response = await app.get(DB, ONLY_IF_CACHED);
    assertEquals(response.status, 200);
    assertEquals(new Uint8Array(await response.arrayBuffer()), db);
    assertEquals(response.headers.get("cache-status"), "flexo; hit; detail=only-if-cached");
    assertEquals(response.headers.get("cache-control"), "no-cache");
    await app.downloads.idle();
    assertEquals(requests.length, 2, `only-if-cached asked a mirror: ${requests.join(", ")}`);
  } finally {
    await app.cleanup();
  }
});

Deno.test("only-if-cached: a miss is counted and logged as NOT CACHED, not as an upstream error", async () => {
  // Every miss of a node of a cluster asks each peer so: a peer without the file is no failure of anything.
  const app = await testApp(["http://127.0.0.1:9/"]);
  try {
    for (const method of ["HEAD", "GET"]) {
      const response = await app.get(PKG, { ...ONLY_IF_CACHED, method });
      assertEquals(response.status, 504);
      await response.body?.cancel();
    }
    assertEquals(Object.fromEntries(app.stats.requests), { "NOT CACHED": 2 });
    assertEquals(app.stats.recentErrors, [], "nothing for the status page's recent errors");
  } finally {
    await app.cleanup();
  }
});
