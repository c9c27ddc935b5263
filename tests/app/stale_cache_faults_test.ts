/**
 * A full disk or a cache directory that cannot take files is not a mirror outage: a database request that cannot
 * store the newer database is answered with the cached copy (stale), while `/status` and the log keep saying
 * that the mirrors answer; a package request gets an error that names the cache directory.
 */

import { join } from "node:path";
import { STALE_CACHE_STATUS } from "../../src/app/stale.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { fakeFetch } from "../helpers/fake_fetch.ts";
import { testApp } from "../helpers/test_app.ts";
import { testDatabase } from "../helpers/test_database.ts";

const DB = "/core/os/x86_64/core.db";
const PKG = "/core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst";

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

Deno.test("a cache directory that cannot take files serves the cached database stale as no mirror outage, and a package gets a 503 that says to check it", async () => {
  const upstream = { db: testDatabase(1, 20), lastModified: "Tue, 14 Nov 2023 22:13:20 GMT" };
  const { fetch } = fakeFetch((url) =>
    url.endsWith(".db")
      ? { headers: { "last-modified": upstream.lastModified }, body: upstream.db }
      : { body: new Uint8Array(5000) }
  );
  const app = await testApp(["http://a.test/"], { fetch });
  try {
    await (await app.get(DB)).arrayBuffer();
    await app.downloads.idle();
    // Downloads go below .partial: a file in its place (as a lost mount or a read-only one) takes none.
    await Deno.remove(join(app.dir, ".partial"), { recursive: true });
    await Deno.writeTextFile(join(app.dir, ".partial"), "in the way");
    upstream.db = testDatabase(2, 40);
    upstream.lastModified = "Wed, 15 Nov 2023 22:13:20 GMT";

    const stale = await app.get(DB);
    assertEquals(stale.headers.get("cache-status"), STALE_CACHE_STATUS);
    await stale.arrayBuffer();
    await app.downloads.idle();
    assertEquals(app.outage.since, undefined, "the mirrors answered: no outage");

    const pkg = await app.get(PKG);
    const text = await pkg.text();
    assertEquals(pkg.status, 503, text);
    assert(text.includes(`cache directory ${app.dir} cannot store`), text);
    assert(text.includes("check its mount, permissions and disk"), text);
  } finally {
    await Deno.remove(join(app.dir, ".partial"));
    await app.cleanup();
  }
});
