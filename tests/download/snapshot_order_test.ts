import { assertEquals } from "../helpers/assert.ts";
import { fakeFetch } from "../helpers/fake_fetch.ts";
import { testApp } from "../helpers/test_app.ts";
import { testDatabase } from "../helpers/test_database.ts";
import { olderSnapshot } from "../../src/download/snapshot_order.ts";

const A = "http://mirror-a.test/";
const B = "http://mirror-b.test/";
const DB = "/core/os/x86_64/core.db";

Deno.test("olderSnapshot() compares by whole seconds and says nothing without both dates", () => {
  assertEquals(olderSnapshot({ lastModified: 1_000_999 }, 1_000_000), undefined);
  assertEquals(olderSnapshot({}, 1_000_000), undefined);
  assertEquals(olderSnapshot({ lastModified: 1_000_000 }, undefined), undefined);
  assertEquals(typeof olderSnapshot({ lastModified: 999_999 }, 1_000_000), "string");
});

Deno.test("Download.start() does not let a database dated in the future block every newer snapshot after it", async () => {
  // Mirror A's clock is wrong: its Last-Modified is in 2100. Later mirror A is gone and mirror B has a newer
  // snapshot, dated correctly. The cache must take it, not refuse it as "older" than 2100 until 2100.
  const [first, newer] = [testDatabase(1), testDatabase(2)];
  let clock = Date.UTC(2023, 10, 20, 12);
  let later = false;
  const { fetch } = fakeFetch((url) => {
    if (url.startsWith(A)) {
      return later
        ? "refuse"
        : { headers: { "last-modified": "Fri, 01 Jan 2100 00:00:00 GMT" }, body: first };
    }
    return { headers: { "last-modified": "Tue, 21 Nov 2023 12:00:00 GMT" }, body: newer };
  });
  const app = await testApp([A, B], { fetch, now: () => clock });
  try {
    await (await app.get(DB)).body?.cancel();
    await app.downloads.idle();
    assertEquals(await Deno.readFile(`${app.dir}${DB}`), first);
    later = true;
    clock = Date.UTC(2023, 10, 22, 12);
    await (await app.get(DB)).body?.cancel();
    await app.downloads.idle();
    assertEquals(
      await Deno.readFile(`${app.dir}${DB}`),
      newer,
      "the newer snapshot replaced the one from 2100",
    );
    assertEquals(
      app.pool.snapshotMark(B).type !== "lagging",
      true,
      "the up-to-date mirror is not marked lagging",
    );
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() keeps a Last-Modified a few minutes ahead of this host's clock, so that the next revalidation gets a 304", async () => {
  const ahead = "Mon, 20 Nov 2023 12:05:00 GMT";
  const { fetch, requests } = fakeFetch((_url, req) =>
    req.headers.get("if-modified-since") === ahead
      ? { status: 304 }
      : { headers: { "last-modified": ahead }, body: testDatabase(1) }
  );
  const app = await testApp([A], { fetch, now: () => Date.UTC(2023, 10, 20, 12) });
  try {
    await (await app.get(DB)).body?.cancel();
    await app.downloads.idle();
    assertEquals(app.store.statComplete(DB.slice(1).split("/"))?.mtime.toUTCString(), ahead);
    await (await app.get(DB)).body?.cancel();
    await app.downloads.idle();
    assertEquals(requests.at(-1)?.headers.get("if-modified-since"), ahead);
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() takes a 304 from a mirror marked lagging only when no other mirror has a newer database", async () => {
  // The cached database is Monday's. A lagged before (marked) and now has Monday's too: it says 304. B failed a
  // moment ago (penalised, so asked after A), and has Tuesday's.
  const [monday, tuesday] = [testDatabase(1), testDatabase(2)];
  let cached = false;
  const { fetch, requests } = fakeFetch((url, req) => {
    if (!cached) return { headers: { "last-modified": "Mon, 20 Nov 2023 12:00:00 GMT" }, body: monday };
    if (url.startsWith(A)) {
      return req.headers.has("if-modified-since")
        ? { status: 304 }
        : { headers: { "last-modified": "Mon, 20 Nov 2023 12:00:00 GMT" }, body: monday };
    }
    return { headers: { "last-modified": "Tue, 21 Nov 2023 12:00:00 GMT" }, body: tuesday };
  });
  const app = await testApp([A, B], { fetch });
  try {
    await (await app.get(DB)).body?.cancel();
    await app.downloads.idle();
    cached = true;
    app.pool.markLagging(A, "sent an older copy");
    app.pool.penalise(B);
    assertEquals(app.pool.plan("database"), [A, B]);
    await (await app.get(DB)).body?.cancel();
    await app.downloads.idle();
    assertEquals(requests.filter((r) => r.url.startsWith(B)).length, 1, "B was asked after A's 304");
    assertEquals(await Deno.readFile(`${app.dir}${DB}`), tuesday, "the newer database from B is cached");
  } finally {
    await app.cleanup();
  }
});
