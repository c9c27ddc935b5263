/**
 * Stale-if-error and offline mode: when the mirrors fail, a cached database is the answer (marked
 * `Cache-Status: flexo; hit; detail=stale`), at once when they refuse and at the deadline when they are silent;
 * `offline = true` never asks them.
 */

import { join } from "node:path";
import { STALE_CACHE_STATUS } from "../../src/app/stale.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { fakeFetch, serveBytes, testBytes } from "../helpers/fake_fetch.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { makeRepo } from "../helpers/make_repo.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { makePacmanRoot, runPacman } from "../helpers/pacman.ts";
import { startTestProxy, withinMs } from "../helpers/proxy_server.ts";
import { testApp } from "../helpers/test_app.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { settledNow, waitFor } from "../helpers/wait.ts";

const DB = "/flexotest/os/x86_64/flexotest.db";
const PKG = "/flexotest/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst";

/** A real sync database's bytes (made with repo-add), so that any check of its contents passes. */
async function databaseBytes(dir: string): Promise<Uint8Array> {
  const repo = await makeRepo(join(dir, "mirror"), {
    repo: "flexotest",
    packages: [{ name: "one", version: "1.0-1", size: 1000 }],
  });
  return await Deno.readFile(join(repo.osDir, "flexotest.db"));
}

/** An app whose one mirror answers as `mode.now` says: serving the database, refusing, or never answering. */
async function withApp(
  fn: (
    app: Awaited<ReturnType<typeof testApp>>,
    mode: { now: "up" | "refuse" | "silent" },
    db: Uint8Array,
  ) => Promise<void>,
  options: { timers?: FakeTimers } = {},
): Promise<void> {
  await withTempDir(async (dir) => {
    const db = await databaseBytes(dir);
    const mode = { now: "up" as "up" | "refuse" | "silent" };
    const { fetch } = fakeFetch((_url, req) =>
      mode.now === "refuse" ? "refuse" : mode.now === "silent" ? { delayMs: 3_600_000 } : serveBytes(db, req)
    );
    // With fake timers, the app's clock is theirs too, and a silent mirror's connect_timeout comes long after
    // the deadlines of the test's requests.
    const app = await testApp(["http://a.test/"], {
      fetch,
      ...(options.timers && {
        now: options.timers.now,
        timers: options.timers.deps,
        limits: { connectTimeoutMs: 60_000, lowSpeedLimit: 1, lowSpeedTimeMs: 300, lastResortStallMs: 2_000 },
      }),
    });
    try {
      await fn(app, mode, db);
    } finally {
      mode.now = "refuse";
      await app.cleanup();
    }
  });
}

Deno.test("a cached database answers when every mirror refuses: 200 marked stale, or 304 to If-Modified-Since", async () => {
  await withApp(async (app, mode, db) => {
    const first = await app.get(DB);
    assertEquals(new Uint8Array(await first.arrayBuffer()), db);
    assertEquals(first.headers.get("cache-status"), null, "a fresh answer is not marked");
    await app.downloads.idle();
    mode.now = "refuse";
    const stale = await app.get(DB);
    assertEquals(stale.status, 200);
    assertEquals(stale.headers.get("cache-status"), STALE_CACHE_STATUS);
    assertEquals(new Uint8Array(await stale.arrayBuffer()), db);
    const notModified = await app.get(DB, {
      headers: { "if-modified-since": first.headers.get("last-modified")! },
    });
    assertEquals(notModified.status, 304);
    assertEquals(notModified.headers.get("cache-status"), STALE_CACHE_STATUS);
    assertEquals(app.stats.requests.get("STALE"), 2);
  });
});

Deno.test("GET /status says since when cached databases are served because every mirror fails (and /metrics says 1), and null once a mirror answers", async () => {
  await withApp(async (app, mode) => {
    const report = async () => await (await app.get("/status")).json();
    const gauge = async () =>
      (await (await app.get("/metrics")).text()).split("\n").find((l) =>
        l.startsWith("flexo_serving_cached_databases ")
      );
    await (await app.get(DB)).arrayBuffer();
    await app.downloads.idle();
    assertEquals((await report()).servingCachedDatabases, null);
    assertEquals(await gauge(), "flexo_serving_cached_databases 0");
    mode.now = "refuse";
    await (await app.get(DB)).arrayBuffer();
    const during = (await report()).servingCachedDatabases;
    assertEquals(during, { since: app.outage.since });
    assert(typeof during.since === "number");
    assertEquals(await gauge(), "flexo_serving_cached_databases 1");
    mode.now = "up";
    await (await app.get(DB)).arrayBuffer();
    await app.downloads.idle();
    assertEquals((await report()).servingCachedDatabases, null);
    assertEquals(await gauge(), "flexo_serving_cached_databases 0");
  });
});

Deno.test("an uncached database still gets the mirrors' error when they fail", async () => {
  await withApp(async (app, mode) => {
    mode.now = "refuse";
    const response = await app.get(DB);
    await response.body?.cancel();
    assertEquals(response.status, 502);
  });
});

Deno.test("a cached database answers at the deadline when the mirrors are silent, and the outage is logged once", async () => {
  const timers = new FakeTimers();
  await withApp(async (app, mode, db) => {
    await (await app.get(DB)).arrayBuffer();
    await app.downloads.idle();
    mode.now = "silent";
    const outageSince: (number | undefined)[] = [];
    for (let i = 0; i < 2; i++) {
      const answer = app.get(DB);
      // The deadline is set once the request has found the cached copy and asked upstream.
      await waitFor("the deadline to be set", () => timers.pending.includes(6_000));
      timers.advance(5_999);
      assertEquals(await settledNow(answer), false, "no answer before the deadline");
      timers.advance(1);
      const stale = await withinMs(answer, 5_000, "no answer at the deadline");
      assertEquals(stale.headers.get("cache-status"), STALE_CACHE_STATUS);
      assertEquals(new Uint8Array(await stale.arrayBuffer()), db);
      outageSince.push(app.outage.since);
    }
    // One outage, begun (and logged) at the first stale answer, not again at the second.
    assert(outageSince[0] !== undefined);
    assertEquals(outageSince[1], outageSince[0]);
    mode.now = "up";
    // The silent attempts end at connect_timeout; a new request then asks the mirror afresh.
    timers.advance(60_000);
    await app.downloads.idle();
    const fresh = await app.get(DB);
    await fresh.arrayBuffer();
    assertEquals(fresh.headers.get("cache-status"), null);
    assertEquals(app.outage.since, undefined, "the outage ends when a mirror answers");
  }, { timers });
});

Deno.test("offline = true serves what is cached, databases as they are, and refuses the rest at once with 503", async () => {
  await withTempDir(async (dir) => {
    const db = await databaseBytes(dir);
    const pkg = testBytes(5000);
    const { fetch, requests } = fakeFetch(() => "refuse");
    const app = await testApp(["http://a.test/"], { fetch, config: { offline: true } });
    try {
      for (const [path, bytes] of [[DB, db], [PKG, pkg]] as const) {
        await Deno.mkdir(join(app.dir, "flexotest/os/x86_64"), { recursive: true });
        await Deno.writeFile(join(app.dir, path), bytes);
      }
      const database = await app.get(DB);
      assertEquals(new Uint8Array(await database.arrayBuffer()), db);
      assertEquals(database.headers.get("cache-status"), STALE_CACHE_STATUS);
      const cached = await app.get(PKG);
      assertEquals(new Uint8Array(await cached.arrayBuffer()), pkg);
      const missing = await app.get("/flexotest/os/x86_64/other-1-1-x86_64.pkg.tar.zst");
      const text = await missing.text();
      assertEquals(missing.status, 503);
      assert(text.includes("offline = true"), text);
      // A database's signature is served only as the pair of the cached database (it carries its date).
      const sigPath = join(app.dir, `${DB}.sig`);
      await Deno.writeTextFile(sigPath, "signature");
      await Deno.utime(sigPath, new Date(0), new Date(1_000_000));
      const unpaired = await app.get(`${DB}.sig`);
      await unpaired.body?.cancel();
      assertEquals(unpaired.status, 503, "a signature of another snapshot is not served");
      const dbTime = (await Deno.stat(join(app.dir, DB))).mtime!;
      await Deno.utime(sigPath, dbTime, dbTime);
      const paired = await app.get(`${DB}.sig`);
      assertEquals(await paired.text(), "signature");
      assertEquals(requests.length, 0, "no mirror was asked");
    } finally {
      await app.cleanup();
    }
  });
});

Deno.test("pacman -Syw succeeds with every mirror down once the files are cached", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "mirror"), {
      repo: "flexotest",
      packages: [{ name: "one", version: "1.0-1", size: 5000 }, {
        name: "two",
        version: "1.0-1",
        size: 9000,
      }],
    });
    const mirror = await startFakeMirror(repo.dir);
    await using proxy = await startTestProxy({ mirrors: [mirror.url] });
    const serverUrl = `${proxy.url}/$repo/os/$arch`;
    await using first = await makePacmanRoot({ serverUrl, repos: ["flexotest"] });
    assertEquals((await runPacman(first, ["-Syw", "one", "two"])).code, 0);
    await proxy.app.downloads.idle();
    await mirror.close();
    await using second = await makePacmanRoot({ serverUrl, repos: ["flexotest"] });
    const result = await runPacman(second, ["-Syw", "one", "two"]);
    assertEquals(result.code, 0, `pacman failed with the mirror down:\n${result.stdout}\n${result.stderr}`);
  });
});
