/**
 * Integrity: downloads are verified against the repository database clients synced through the proxy.
 */

import { dirname, join } from "node:path";
import { createApp } from "../../src/app/app.ts";
import { expectedFileOf, PackageIndex } from "../../src/repo/package_index.ts";
import { concat } from "../../src/byte_reader.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { makeRepo, type RepoInfo, sha256File } from "../helpers/make_repo.ts";
import { testConfig } from "../helpers/test_app.ts";
import { tarEntry, testDatabase } from "../helpers/test_database.ts";

const PACKAGES = [
  { name: "big", version: "1:2.0-1", size: 400_000 },
  { name: "small", version: "1.0-1", size: 2_000 },
];

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The flexotest repository in one temporary directory and an empty cache in another, removed afterwards. */
async function withRepoAndCache(
  fn: (repo: RepoInfo, dirs: { dir: string; cacheDir: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "flexo-index-" });
  const cacheDir = await Deno.makeTempDir({ prefix: "flexo-index-cache-" });
  try {
    await fn(await makeRepo(dir, { repo: "flexotest", packages: PACKAGES }), { dir, cacheDir });
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(cacheDir, { recursive: true });
  }
}

Deno.test("PackageIndex.loadAll() reads the databases in the cache and expected() finds their packages", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-index-" });
  try {
    const repo = await makeRepo(dir, { repo: "flexotest", packages: PACKAGES, dbExtension: "tar.zst" });
    await Deno.writeTextFile(join(dir, "flexotest", "os", "x86_64", "broken.db"), "not a database");
    const index = new PackageIndex();
    assert((await index.loadAll(dir)) >= 2, "finds flexotest.db, flexotest.db.tar.zst and broken.db");
    for (const pkg of repo.packages) {
      const entry = index.expected(["flexotest", "os", "x86_64", pkg.fileName]);
      assertEquals(entry?.sha256, pkg.sha256);
      assertEquals(entry?.compressedSize, pkg.size);
    }
    assertEquals(index.expected(["other", "os", "x86_64", repo.packages[0].fileName]), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PackageIndex.expected() finds a signature's package entry, and expectedFileOf() says what either file must be", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-index-" });
  try {
    const signature = new Uint8Array(119).fill(3);
    const desc = (name: string, sig: string) =>
      `%FILENAME%\n${name}-1-1-any.pkg.tar.zst\n\n%NAME%\n${name}\n\n%VERSION%\n1-1\n\n%CSIZE%\n10\n\n` +
      `%SHA256SUM%\n${"ab".repeat(32)}\n${sig}`;
    const db = concat([
      tarEntry("a-1-1/desc", new TextEncoder().encode(desc("a", `\n%PGPSIG%\n${signature.toBase64()}\n`))),
      tarEntry("b-1-1/desc", new TextEncoder().encode(desc("b", ""))),
      new Uint8Array(1024),
    ]);
    await Deno.mkdir(join(dir, "core", "os", "x86_64"), { recursive: true });
    await Deno.writeFile(join(dir, "core", "os", "x86_64", "core.db"), db);
    const index = new PackageIndex();
    await index.loadAll(dir);
    const folder = ["core", "os", "x86_64"];
    const a = index.expected([...folder, "a-1-1-any.pkg.tar.zst.sig"]);
    assertEquals(a?.fileName, "a-1-1-any.pkg.tar.zst", "a signature's entry is its package's");
    assertEquals(expectedFileOf(a!, "a-1-1-any.pkg.tar.zst"), { size: 10, sha256: "ab".repeat(32) });
    assertEquals(expectedFileOf(a!, "a-1-1-any.pkg.tar.zst.sig"), {
      size: 119,
      sha256: (await sha256(signature)).slice(0, 32),
    });
    const b = index.expected([...folder, "b-1-1-any.pkg.tar.zst.sig"]);
    assertEquals(expectedFileOf(b!, "b-1-1-any.pkg.tar.zst.sig"), undefined, "no %PGPSIG%: not checked");
    assertEquals(expectedFileOf(b!, "a-1-1-any.pkg.tar.zst"), undefined, "not the file of the entry");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PackageIndex.expectedWhenLoaded() waits for a database of the file's folder that is being read", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-index-" });
  try {
    const repo = await makeRepo(dir, { repo: "flexotest", packages: PACKAGES });
    const index = new PackageIndex();
    const segments = ["flexotest", "os", "x86_64", repo.packages[0].fileName];
    const loading = index.loadDatabase(dir, join(dir, "flexotest", "os", "x86_64", "flexotest.db"));
    assertEquals(index.expected(segments), undefined, "not read yet");
    assertEquals((await index.expectedWhenLoaded(segments))?.sha256, repo.packages[0].sha256);
    await loading;
    const other = ["other", "os", "x86_64", repo.packages[0].fileName];
    assertEquals(await index.expectedWhenLoaded(other), undefined, "nothing to wait for in another folder");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PackageIndex.expectedWhenLoaded() waits no longer than maxWaitMs for a database that does not come", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-index-" });
  try {
    // A FIFO: reading it blocks until a writer comes, like a database on a hung disk.
    const fifo = join(dir, "core", "os", "x86_64", "core.db");
    await Deno.mkdir(join(dir, "core", "os", "x86_64"), { recursive: true });
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert(made.success, "mkfifo");
    // The wait runs out when the test says so, not after real milliseconds.
    const timers: { ms: number; runOut: () => void; cleared: boolean }[] = [];
    const armed = Promise.withResolvers<void>();
    const index = new PackageIndex({
      setTimer: (runOut, ms) => {
        timers.push({ ms, runOut, cleared: false });
        armed.resolve();
        return timers.length - 1;
      },
      clearTimer: (timer) => timers[timer as number].cleared = true,
    });
    const loading = index.loadDatabase(dir, fifo);
    let answered = false;
    const answer = index.expectedWhenLoaded(["core", "os", "x86_64", "a-1-1-any.pkg.tar.zst"], {
      maxWaitMs: 200,
    })
      .finally(() => answered = true);
    await armed.promise;
    assertEquals(timers.map((t) => t.ms), [200], "one wait of maxWaitMs");
    assert(!answered, "it waits for the database while maxWaitMs has not run out");
    timers[0].runOut();
    assertEquals(await answer, undefined, "maxWaitMs ran out: answered without the database");
    // Let the load end: a writer that sends garbage and closes.
    const writer = await Deno.open(fifo, { write: true });
    await writer.write(new TextEncoder().encode("not a database"));
    writer.close();
    await loading;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PackageIndex.expectedWhenLoaded() gives up its wait as soon as the database has been read", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-index-" });
  try {
    const repo = await makeRepo(dir, { repo: "flexotest", packages: PACKAGES });
    const timers: { ms: number; cleared: boolean }[] = [];
    const index = new PackageIndex({
      setTimer: (_runOut, ms) => timers.push({ ms, cleared: false }) - 1, // never runs out
      clearTimer: (timer) => timers[timer as number].cleared = true,
    });
    index.loadDatabase(dir, join(dir, "flexotest", "os", "x86_64", "flexotest.db"));
    const segments = ["flexotest", "os", "x86_64", repo.packages[0].fileName];
    assertEquals((await index.expectedWhenLoaded(segments))?.sha256, repo.packages[0].sha256);
    assertEquals(timers, [{ ms: 3_000, cleared: true }], "the default wait of 3 s, cleared once answered");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PackageIndex.idle() resolves once every database being read has been read, even one begun meanwhile", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-index-" });
  try {
    const repo = await makeRepo(dir, { repo: "flexotest", packages: PACKAGES });
    const index = new PackageIndex();
    await index.idle(); // nothing to wait for
    const broken = join(dir, "broken", "os", "x86_64", "broken.db");
    await Deno.mkdir(dirname(broken), { recursive: true });
    await Deno.writeTextFile(broken, "not a database");
    index.loadDatabase(dir, broken); // read (and refused) quickly
    const idle = index.idle();
    index.loadDatabase(dir, join(dir, "flexotest", "os", "x86_64", "flexotest.db")); // begun while idle() waits
    await idle;
    for (const pkg of repo.packages) {
      assertEquals(index.expected(["flexotest", "os", "x86_64", pkg.fileName])?.sha256, pkg.sha256);
    }
    index.loadAll(dir);
    await index.idle();
    assertEquals(index.foldersListing(repo.packages[0].fileName), ["flexotest/os/x86_64"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PackageIndex.loadDatabase() keeps the entries of the newest copy of a database when an older read ends last", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-index-" });
  try {
    // The first read is of a copy that comes slowly (a FIFO, written by the test when it chooses); meanwhile a
    // newer copy is renamed over it, as a revalidation commits one, and read at once.
    const folder = join(dir, "core", "os", "x86_64");
    await Deno.mkdir(folder, { recursive: true });
    const path = join(folder, "core.db");
    const older = join(folder, "older-copy");
    assert((await new Deno.Command("mkfifo", { args: [older] }).output()).success, "mkfifo");
    await Deno.link(older, path);
    const index = new PackageIndex();
    const first = index.loadDatabase(dir, path);
    const writer = await Deno.open(older, { write: true }); // returns once the first read has opened it
    await Deno.writeFile(join(folder, "newer-copy"), testDatabase(2));
    await Deno.rename(join(folder, "newer-copy"), path);
    await index.loadDatabase(dir, path);
    await writer.write(testDatabase(1));
    writer.close();
    await first;
    const listed = (seed: number) =>
      index.expected(["core", "os", "x86_64", `pkg${seed}-1-1-x86_64.pkg.tar.zst`]);
    assertEquals(listed(2)?.name, "pkg2", "the newer copy's package is known");
    assertEquals(listed(1), undefined, "the older copy's package is not");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createApp() verifies a package requested while its just-synced database is still being read", async () => {
  await withRepoAndCache(async (repo, { dir, cacheDir }) => {
    const big = repo.packages.find((pkg) => pkg.name === "big")!;
    await using bad = await startFakeMirror(dir, { match: ".pkg.tar.zst", corruptBytes: 3 });
    const app = createApp(testConfig(cacheDir, [bad.url]));
    const get = (path: string) => app.fetch(new Request(`http://flexo.test/flexotest/os/x86_64/${path}`));
    // The database has just been synced into the cache, and reading it starts, as after a download of it. The
    // package is asked for in the same turn of the event loop, so its read is certainly still running (waiting
    // for the database's download to end first left that to the scheduler, and a busy machine lost the race).
    const folder = join(cacheDir, "flexotest", "os", "x86_64");
    await Deno.mkdir(folder, { recursive: true });
    const database = join(folder, "flexotest.db");
    await Deno.copyFile(join(repo.osDir, "flexotest.db"), database);
    const reading = app.packageIndex.loadDatabase(cacheDir, database);
    assertEquals(
      app.packageIndex.expected(["flexotest", "os", "x86_64", big.fileName]),
      undefined,
      "the database is still being read when the package is asked for",
    );
    const response = await get(big.fileName);
    const failed = await response.arrayBuffer().then(() => false, () => true);
    assert(failed, "the corrupt package is not delivered as if it were good");
    await reading;
    await app.downloads.idle();
    assertEquals(app.stats.integrityRejections, 1);
    assertEquals(await app.store.statComplete(["flexotest", "os", "x86_64", big.fileName]), undefined);
  });
});

Deno.test("createApp() discards a corrupt download and fetches it again from another mirror", async () => {
  await withRepoAndCache(async (repo, { dir, cacheDir }) => {
    const big = repo.packages.find((pkg) => pkg.name === "big")!;
    await using bad = await startFakeMirror(dir, { match: ".pkg.tar.zst", corruptBytes: 3 });
    await using good = await startFakeMirror(dir);
    const app = createApp(testConfig(cacheDir, [bad.url, good.url]));
    const get = (path: string) => app.fetch(new Request(`http://flexo.test/flexotest/os/x86_64/${path}`));
    // The client syncs the database through the proxy first, as pacman does.
    await (await get("flexotest.db")).arrayBuffer();
    await app.downloads.idle();
    await app.packageIndex.idle(); // the database is indexed in the background once downloaded
    assert(
      app.packageIndex.expected(["flexotest", "os", "x86_64", big.fileName]),
      "the database was indexed",
    );

    const first = await get(big.fileName);
    let failed = false;
    try {
      await first.arrayBuffer();
    } catch {
      failed = true;
    }
    assert(failed, "the client's transfer fails instead of ending with corrupt bytes");
    await app.downloads.idle();
    assertEquals(await app.store.statComplete(["flexotest", "os", "x86_64", big.fileName]), undefined);
    assertEquals(app.stats.integrityRejections, 1);

    const second = await get(big.fileName);
    assertEquals(await sha256(new Uint8Array(await second.arrayBuffer())), big.sha256);
    await app.downloads.idle();
    assertEquals(await sha256File(join(cacheDir, "flexotest", "os", "x86_64", big.fileName)), big.sha256);
    assertEquals(good.countRequests(big.fileName, { method: "GET" }), 1);
  });
});

Deno.test("createApp() refuses a mirror whose announced length contradicts the database before sending a byte", async () => {
  await withRepoAndCache(async (repo, { dir, cacheDir }) => {
    const small = repo.packages.find((pkg) => pkg.name === "small")!;
    await using good = await startFakeMirror(dir);
    const app = createApp(testConfig(cacheDir, [good.url]));
    const get = (path: string) => app.fetch(new Request(`http://flexo.test/flexotest/os/x86_64/${path}`));
    await (await get("flexotest.db")).arrayBuffer();
    await app.downloads.idle();
    await app.packageIndex.idle();
    // The mirror now serves a truncated file: a shorter, complete-looking answer.
    const path = join(dir, "flexotest", "os", "x86_64", small.fileName);
    const original = await Deno.readFile(path);
    await Deno.writeFile(path, original.subarray(0, 1000));
    const response = await get(small.fileName);
    assertEquals(response.status, 502);
    assert((await response.text()).includes("repository database"));
    assertEquals(await app.store.statComplete(["flexotest", "os", "x86_64", small.fileName]), undefined);
  });
});
