/**
 * A database's signature while the database changes: the signature a client gets belongs to the snapshot of
 * the database the cache holds when it asks.
 */

import { assertEquals } from "../helpers/assert.ts";
import { fakeFetch, gatedFetch } from "../helpers/fake_fetch.ts";
import { testDatabase } from "../helpers/test_database.ts";
import { testApp } from "../helpers/test_app.ts";
import { waitFor } from "../helpers/wait.ts";

const A = "http://mirror-a.test/";
const DB = "/core/os/x86_64/core.db";
const SIG = `${DB}.sig`;
const encoder = new TextEncoder();

async function bytesOf(response: Response | Promise<Response>): Promise<Uint8Array> {
  return new Uint8Array(await (await response).arrayBuffer());
}

Deno.test("serveDatabaseSignature() never joins the download of the signature of another snapshot", async () => {
  const snapshots = [
    { date: "Tue, 14 Nov 2023 12:00:00 GMT", db: testDatabase(1), sig: encoder.encode("signs Tuesday's") },
    { date: "Thu, 16 Nov 2023 12:00:00 GMT", db: testDatabase(2), sig: encoder.encode("signs Thursday's") },
  ];
  let now = snapshots[0];
  const mirror = fakeFetch((url) => ({
    headers: { "last-modified": now.date },
    body: url.endsWith(".sig") ? now.sig : now.db,
  }));
  // The first signature's body comes only when the test sends it.
  const slow = gatedFetch(() => ({ headers: { "content-length": String(snapshots[0].sig.length) } }));
  const fetch: typeof globalThis.fetch = (input, init) =>
    String(input).endsWith(".sig") && slow.gates.length === 0
      ? slow.fetch(input, init)
      : mirror.fetch(input, init);
  const app = await testApp([A], { fetch });
  try {
    assertEquals(await bytesOf(app.get(DB)), snapshots[0].db);
    const first = await app.get(SIG);
    // While Tuesday's signature downloads, the mirror publishes Thursday's snapshot and a client syncs it.
    now = snapshots[1];
    assertEquals(await bytesOf(app.get(DB)), snapshots[1].db);
    await waitFor("Thursday's database in the cache", () => app.downloads.list().length === 1);
    const second = app.get(SIG);
    slow.gates[0].push(snapshots[0].sig);
    slow.gates[0].end();
    assertEquals(await bytesOf(first), snapshots[0].sig);
    assertEquals(await bytesOf(second), snapshots[1].sig, "the signature of the database it has");
  } finally {
    await app.cleanup();
  }
});

Deno.test("serveDatabaseSignature() counts a client that shares a running signature download as joined", async () => {
  const date = "Tue, 14 Nov 2023 12:00:00 GMT";
  const db = testDatabase(1);
  const sig = encoder.encode("signs Tuesday's");
  const mirror = fakeFetch(() => ({ headers: { "last-modified": date }, body: db }));
  const slow = gatedFetch(() => ({
    headers: { "content-length": String(sig.length), "last-modified": date },
  }));
  const fetch: typeof globalThis.fetch = (input, init) =>
    String(input).endsWith(".sig") ? slow.fetch(input, init) : mirror.fetch(input, init);
  const app = await testApp([A], { fetch });
  try {
    assertEquals(await bytesOf(app.get(DB)), db);
    const first = await app.get(SIG);
    const second = await app.get(SIG);
    slow.gates[0].push(sig);
    slow.gates[0].end();
    assertEquals(await bytesOf(first), sig);
    assertEquals(await bytesOf(second), sig);
    assertEquals(slow.gates.length, 1, "one download of the signature");
    assertEquals(app.stats.requests.get("CACHE MISS"), 1);
    assertEquals(app.stats.requests.get("JOINED DOWNLOAD"), 1);
    assertEquals(
      app.stats.bytesFromUpstream,
      db.length + sig.length,
      "the signature's bytes from upstream once",
    );
  } finally {
    await app.cleanup();
  }
});
