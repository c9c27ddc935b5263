/**
 * A package that no cached database lists: the node fetches its folder's database first, so that the package
 * is verified (a node behind a balancer that hashes on the path never sees the database requests).
 */

import { join } from "node:path";
import { DATABASE_FIRST_MAX_FOLDERS, DatabaseFirst, databasePathFor } from "../../src/app/database_first.ts";
import { parseRequestPath } from "../../src/repo/request_path.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { fakeFetch, serveBytes } from "../helpers/fake_fetch.ts";
import { makeRepo } from "../helpers/make_repo.ts";
import { testApp } from "../helpers/test_app.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const FOLDER = "/flexotest/os/x86_64";

/** A repository of one package made with repo-add: its database and package bytes, and the package's name. */
async function repository(dir: string) {
  const repo = await makeRepo(join(dir, "mirror"), {
    repo: "flexotest",
    packages: [{ name: "one", version: "1.0-1", size: 5000 }],
  });
  const pkg = repo.packages[0];
  return {
    db: await Deno.readFile(join(repo.osDir, "flexotest.db")),
    bytes: await Deno.readFile(pkg.path),
    fileName: pkg.fileName,
  };
}

Deno.test("databasePathFor() names the database of a package's (or its signature's) /$repo/os/$arch/ folder, and none elsewhere", () => {
  const target = (path: string) => parseRequestPath(path, { customRepoNames: new Set(["mine"]) });
  assertEquals(databasePathFor(target(`${FOLDER}/a-1-1-any.pkg.tar.zst`)), `${FOLDER}/flexotest.db`);
  assertEquals(
    databasePathFor(target(`${FOLDER}/a-1-1-any.pkg.tar.zst.sig`)),
    `${FOLDER}/flexotest.db`,
    "for a package's signature too, checked against the database's %PGPSIG%",
  );
  assertEquals(databasePathFor(target(`${FOLDER}/flexotest.db`)), undefined, "not for a database");
  assertEquals(
    databasePathFor(target("/custom_repo/mine/a-1-1-any.pkg.tar.zst")),
    undefined,
    "no repo shape",
  );
});

Deno.test("DatabaseFirst.expected() fetches a folder's database once per interval for packages none lists", async () => {
  let now = 0;
  const fetched: string[] = [];
  let listed = false;
  const entry = { fileName: "a-1-1-any.pkg.tar.zst" } as never;
  const first = new DatabaseFirst({
    lookUp: () => Promise.resolve(listed ? entry : undefined),
    fetchDatabase: (path) => {
      fetched.push(path);
      return Promise.resolve();
    },
    now: () => now,
    intervalMs: 1000,
  });
  const target = (name: string) => parseRequestPath(`${FOLDER}/${name}`, { customRepoNames: new Set() });
  // Two packages at once: one fetch of the database for both.
  assertEquals(
    await Promise.all([
      first.expected(target("a-1-1-any.pkg.tar.zst")),
      first.expected(target("b-1-1-any.pkg.tar.zst")),
    ]),
    [undefined, undefined],
  );
  assertEquals(fetched, [`${FOLDER}/flexotest.db`]);
  now = 999;
  await first.expected(target("c-1-1-any.pkg.tar.zst"));
  assertEquals(fetched.length, 1, "not again within the interval");
  now = 1000;
  listed = true;
  assertEquals(await first.expected(target("a-1-1-any.pkg.tar.zst")), entry, "listed: no fetch needed");
  assertEquals(fetched.length, 1);
  listed = false;
  await first.expected(target("d-1-1-any.pkg.tar.zst"));
  assertEquals(fetched.length, 2, "after the interval, once more");
});

Deno.test("a node of a cluster that never synced the database verifies a package against it: a corrupt one is not cached", async () => {
  await withTempDir(async (dir) => {
    const { db, bytes, fileName } = await repository(dir);
    const corrupt = bytes.slice();
    corrupt[100] ^= 0xff;
    let good = false;
    const { fetch, requests } = fakeFetch((url, req) =>
      url.endsWith("/flexotest.db") ? serveBytes(db, req) : serveBytes(good ? bytes : corrupt, req)
    );
    // A node of a cluster (behind a balancer it trusts), which may never see the database requests.
    const app = await testApp(["http://a.test/"], { fetch, config: { trusted_proxies: ["10.0.0.1"] } });
    try {
      const bad = await app.get(`${FOLDER}/${fileName}`);
      const body = await bad.arrayBuffer().then((b) => new Uint8Array(b), () => undefined);
      assert(
        body === undefined || body.byteLength < bytes.byteLength,
        "no whole answer of the corrupt bytes",
      );
      await app.downloads.idle();
      assertEquals(
        app.store.statComplete(`${FOLDER}/${fileName}`.slice(1).split("/")),
        undefined,
        "not cached",
      );
      assert(requests.some((r) => r.url.endsWith("/flexotest.db")), "the database was fetched");
      // The mirror is fixed: the package comes, verified, and the database is not fetched again.
      good = true;
      const dbRequests = requests.filter((r) => r.url.endsWith("/flexotest.db")).length;
      const fine = await app.get(`${FOLDER}/${fileName}`);
      assertEquals(new Uint8Array(await fine.arrayBuffer()), bytes);
      assertEquals(requests.filter((r) => r.url.endsWith("/flexotest.db")).length, dbRequests);
    } finally {
      await app.cleanup();
    }
  });
});

Deno.test("a single proxy (no cache_peers, no trusted_proxies) asks the mirrors only for what its clients ask", async () => {
  await withTempDir(async (dir) => {
    const { db, bytes, fileName } = await repository(dir);
    const { fetch, requests } = fakeFetch((url, req) =>
      serveBytes(url.endsWith("/flexotest.db") ? db : bytes, req)
    );
    const app = await testApp(["http://a.test/"], { fetch });
    try {
      assertEquals(new Uint8Array(await (await app.get(`${FOLDER}/${fileName}`)).arrayBuffer()), bytes);
      await app.downloads.idle();
      assertEquals(requests.map((r) => r.url), [`http://a.test${FOLDER}/${fileName}`]);
    } finally {
      await app.cleanup();
    }
  });
});

Deno.test("a node of a cluster does not count the database it fetched for itself as bytes served to clients", async () => {
  await withTempDir(async (dir) => {
    const { db, bytes, fileName } = await repository(dir);
    const { fetch } = fakeFetch((url, req) => serveBytes(url.endsWith("/flexotest.db") ? db : bytes, req));
    const app = await testApp(["http://a.test/"], { fetch, config: { trusted_proxies: ["10.0.0.1"] } });
    try {
      assertEquals(new Uint8Array(await (await app.get(`${FOLDER}/${fileName}`)).arrayBuffer()), bytes);
      await app.downloads.idle();
      assertEquals(Object.fromEntries(app.stats.requests), { "CACHE MISS": 1 });
      assertEquals(app.stats.bytesFromUpstream, bytes.byteLength, "only the package went to a client");
      const traffic = app.stats.history.snapshot().fromUpstreamBytes;
      assertEquals(traffic.reduce((a, b) => a + b, 0), bytes.byteLength, "the chart too");
    } finally {
      await app.cleanup();
    }
  });
});

Deno.test("DatabaseFirst.expected() keeps at most DATABASE_FIRST_MAX_FOLDERS folders, forgetting the oldest first", async () => {
  let now = 0;
  const fetched: string[] = [];
  const first = new DatabaseFirst({
    lookUp: () => Promise.resolve(undefined),
    fetchDatabase: (path) => {
      fetched.push(path);
      return Promise.resolve();
    },
    now: () => now,
    intervalMs: 1_000_000,
  });
  const target = (repo: string) =>
    parseRequestPath(`/${repo}/os/x86_64/a-1-1-any.pkg.tar.zst`, { customRepoNames: new Set() });
  // Made-up repositories, one each millisecond, all within the interval: none may be forgotten for its age.
  for (let i = 0; i < DATABASE_FIRST_MAX_FOLDERS + 500; i++) {
    now = i;
    await first.expected(target(`made-up-${i}`));
  }
  assertEquals(first.rememberedFolders, DATABASE_FIRST_MAX_FOLDERS, "bounded by the cap");
  assertEquals(fetched.length, DATABASE_FIRST_MAX_FOLDERS + 500);
  // The newest folder is still remembered (no second fetch within its interval); the oldest was forgotten.
  await first.expected(target(`made-up-${DATABASE_FIRST_MAX_FOLDERS + 499}`));
  assertEquals(fetched.length, DATABASE_FIRST_MAX_FOLDERS + 500);
  await first.expected(target("made-up-0"));
  assertEquals(fetched.length, DATABASE_FIRST_MAX_FOLDERS + 501);
  // Past the interval, the expired times go first, not the latest.
  now += 2_000_000;
  await first.expected(target("late"));
  assertEquals(first.rememberedFolders, 1, "every expired time went; only the new folder is kept");
});

Deno.test("DatabaseFirst.expected() at the cap forgets the folder asked longest ago, not one asked again lately", async () => {
  let now = 0;
  const fetched: string[] = [];
  const first = new DatabaseFirst({
    lookUp: () => Promise.resolve(undefined),
    fetchDatabase: (path) => {
      fetched.push(path);
      return Promise.resolve();
    },
    now: () => now,
    intervalMs: 1_000,
  });
  const target = (repo: string) =>
    parseRequestPath(`/${repo}/os/x86_64/a-1-1-any.pkg.tar.zst`, { customRepoNames: new Set() });
  await first.expected(target("again"));
  now = 600;
  for (let i = 0; i < DATABASE_FIRST_MAX_FOLDERS - 2; i++) await first.expected(target(`made-up-${i}`));
  // Its time has passed: asked again, it is the newest of the folders now.
  now = 1_500;
  await first.expected(target("again"));
  await first.expected(target("newer"));
  assertEquals(first.rememberedFolders, DATABASE_FIRST_MAX_FOLDERS);
  now = 1_550;
  await first.expected(target("newest")); // at the cap: one folder goes
  const count = fetched.length;
  await first.expected(target("again"));
  assertEquals(fetched.length, count, "the folder asked again lately is remembered");
  await first.expected(target("made-up-0"));
  assertEquals(fetched.length, count + 1, "the one asked longest ago was forgotten");
});
