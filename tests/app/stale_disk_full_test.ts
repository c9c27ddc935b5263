/**
 * A full disk is not a mirror outage: a database request that finds too little space for the newer database is
 * answered with the cached copy (stale), while `/status` and the log keep saying that the mirrors answer.
 */

import { STALE_CACHE_STATUS } from "../../src/app/stale.ts";
import { assertEquals } from "../helpers/assert.ts";
import { fakeFetch } from "../helpers/fake_fetch.ts";
import { testApp } from "../helpers/test_app.ts";
import { testDatabase } from "../helpers/test_database.ts";

const DB = "/core/os/x86_64/core.db";

Deno.test("a database that does not fit on the disk is answered from the cache, stale, and counts as no mirror outage", async () => {
  const oldDb = testDatabase(1, 20);
  const newDb = testDatabase(2, 40);
  const upstream = { db: oldDb, lastModified: "Tue, 14 Nov 2023 22:13:20 GMT" };
  const { fetch } = fakeFetch(() => ({
    headers: { "last-modified": upstream.lastModified },
    body: upstream.db,
  }));
  const disk = { free: undefined as number | undefined };
  const app = await testApp(["http://a.test/"], { fetch, freeSpace: () => disk.free });
  try {
    assertEquals(new Uint8Array(await (await app.get(DB)).arrayBuffer()), oldDb);
    await app.downloads.idle();

    upstream.db = newDb;
    upstream.lastModified = "Wed, 15 Nov 2023 22:13:20 GMT";
    disk.free = newDb.length - 1;
    const stale = await app.get(DB);
    assertEquals(stale.status, 200);
    assertEquals(stale.headers.get("cache-status"), STALE_CACHE_STATUS);
    assertEquals(new Uint8Array(await stale.arrayBuffer()), oldDb, "the last good database");
    await app.downloads.idle();
    assertEquals(app.outage.since, undefined, "a full disk is no outage of the mirrors");
    assertEquals((await (await app.get("/status")).json()).servingCachedDatabases, null);

    disk.free = newDb.length;
    const fresh = await app.get(DB);
    assertEquals(fresh.headers.get("cache-status"), null);
    assertEquals(new Uint8Array(await fresh.arrayBuffer()), newDb, "it fits again: the new database");
  } finally {
    await app.cleanup();
  }
});
