/**
 * A database's signature stays with the snapshot it signs (issue 15): it is fetched from the mirror the cached
 * database came from, cached as a pair with it, and never taken from another mirror or an older snapshot.
 * Fault-injecting mirrors on 127.0.0.1 with repositories made by `repo-add`, and the real pacman client
 * checking database signatures.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import {
  addPackages,
  assertToolsAvailable,
  createGpgSigner,
  type GpgSigner,
  makeRepo,
  type RepoInfo,
} from "../helpers/make_repo.ts";
import { makePacmanRoot, runPacman } from "../helpers/pacman.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { waitFor } from "../helpers/wait.ts";

await assertToolsAvailable(["pacman", "repo-add", "bsdtar", "zstd"]);

const DB = "/flexotest/os/x86_64/flexotest.db";
const SIG = `${DB}.sig`;

/** Signs the repository's database (`<repo>.db.sig`): with gpg when a signer is given, else with a marker. */
async function signDatabase(repo: RepoInfo, signer?: GpgSigner): Promise<Uint8Array> {
  const db = join(repo.osDir, `${repo.repo}.db`);
  if (signer) await signer.sign(db);
  else {
    const stamp = (await Deno.stat(db)).mtime!.toISOString();
    await Deno.writeTextFile(`${db}.sig`, `signature of ${repo.dir} at ${stamp}\n`);
  }
  return await Deno.readFile(`${db}.sig`);
}

/** A repository with one signed snapshot, and a second mirror's copy of it (same files, same times). */
async function twoMirrors(dir: string, signer?: GpgSigner) {
  const a = await makeRepo(join(dir, "a"), {
    repo: "flexotest",
    packages: [{ name: "tool", version: "0.9-1" }],
  });
  const firstSig = await signDatabase(a, signer);
  const copy = await new Deno.Command("cp", { args: ["-a", join(dir, "a"), join(dir, "b")] }).output();
  assert(copy.success, "cp -a failed");
  /** Mirror A moves to a newer snapshot (tool 0.10-1 and more), signed; returns its signature. */
  let repo = a;
  let version = 10;
  const update = async () => {
    const db = join(repo.osDir, `${repo.repo}.db`);
    const before = (await Deno.stat(db)).mtime!.getTime();
    repo = await addPackages(repo, [{ name: "tool", version: `0.${version++}-1` }]);
    // A new snapshot is dated at least a second later, as on a real mirror (snapshots are minutes apart): HTTP
    // dates have whole seconds, and a snapshot made within the same second as the last cannot be told from it.
    const after = (await Deno.stat(db)).mtime!.getTime();
    if (Math.floor(after / 1000) <= Math.floor(before / 1000)) {
      const later = new Date(Math.floor(before / 1000) * 1000 + 2000);
      await Deno.utime(db, later, later);
    }
    return await signDatabase(repo, signer);
  };
  return { a: join(dir, "a"), b: join(dir, "b"), firstSig, update };
}

async function get(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; bytes: Uint8Array; lastModified: string | null }> {
  const response = await fetch(url, init);
  const bytes = new Uint8Array(await response.arrayBuffer());
  return { status: response.status, bytes, lastModified: response.headers.get("last-modified") };
}

Deno.test("a database's signature comes from the mirror and snapshot of the database, even when the ranking changes meanwhile", async () => {
  await withTempDir(async (dir) => {
    const repos = await twoMirrors(dir);
    const newSig = await repos.update(); // A is newer; B still has the first snapshot and its signature
    await using a = await startFakeMirror(repos.a);
    await using b = await startFakeMirror(repos.b);
    await using proxy = await startTestProxy({ mirrors: [a.url, b.url] });
    const db = await get(proxy.url + DB);
    assertEquals(db.status, 200);
    // A ranking refresh puts B first while A is slow with the signature: the request does not move on to B.
    a.faults = { match: ".db.sig", delayMs: 300 };
    const asking = get(proxy.url + SIG);
    await waitFor("A to be asked for the signature", () => a.countRequests(".db.sig") === 1);
    proxy.app.pool.setMirrors([b.url, a.url], "test");
    const sig = await asking;
    assertEquals(sig.status, 200);
    assertEquals(sig.bytes, newSig, "the signature of A's snapshot, not B's older one");
    // Dated like its database, also while it comes from the mirror: pacman asks with the date it got, and curl
    // drops a body not newer than that (the mirror's own date of the .sig file can be older than the database's).
    assertEquals(sig.lastModified, db.lastModified);
    assertEquals(b.countRequests(".db.sig"), 0, "B was never asked for the signature");
    await proxy.app.downloads.idle();
    // Cached as a pair: with every mirror failing, the signature of the cached database is still served.
    a.faults = { status: 503 };
    b.faults = { status: 503 };
    const asked = a.requests.length + b.requests.length;
    const cached = await get(proxy.url + SIG);
    assertEquals(cached.status, 200);
    assertEquals(cached.bytes, newSig);
    assertEquals(cached.lastModified, db.lastModified);
    assertEquals(
      a.requests.length + b.requests.length,
      asked,
      "no mirror was asked for the paired signature",
    );
  });
});

Deno.test("a newer database gets its own signature, never the cached one of the older snapshot nor another mirror's", async () => {
  await withTempDir(async (dir) => {
    const repos = await twoMirrors(dir);
    await using a = await startFakeMirror(repos.a);
    await using b = await startFakeMirror(repos.b);
    await using proxy = await startTestProxy({ mirrors: [a.url, b.url] });
    assertEquals((await get(proxy.url + DB)).status, 200);
    assertEquals((await get(proxy.url + SIG)).bytes, repos.firstSig);
    await proxy.app.downloads.idle();

    const secondSig = await repos.update();
    assertEquals((await get(proxy.url + DB)).status, 200);
    // pacman sends its old signature's date: a signature's answer never depends on dates (it carries its
    // database's), so the new one comes whole, not a 304 that would leave pacman with the old one.
    const later = { headers: { "if-modified-since": new Date(Date.now() + 86_400_000).toUTCString() } };
    const second = await get(proxy.url + SIG, later);
    assertEquals(second.status, 200);
    assertEquals(second.bytes, secondSig, "the new snapshot's signature");
    await proxy.app.downloads.idle();

    // A sends a third snapshot but fails on its signature: B's signature (of the first snapshot) is no
    // substitute, nor is the cached one (of the second): the client gets an error.
    await repos.update();
    a.faults = { match: ".db.sig", status: 500 };
    assertEquals((await get(proxy.url + DB)).status, 200);
    const failed = await fetch(proxy.url + SIG);
    const text = await failed.text();
    assertEquals(failed.status, 502);
    assert(text.includes(a.url), `the error names the database's mirror: ${text}`);
    assertEquals(b.countRequests(".db.sig"), 0, "B was never asked for a signature");
    await proxy.app.downloads.idle();
    // Once A answers, the third snapshot's signature is fetched from it.
    a.faults = {};
    const third = await get(proxy.url + SIG);
    assertEquals(third.status, 200);
    assertEquals(third.bytes, await Deno.readFile(join(repos.a, "flexotest/os/x86_64/flexotest.db.sig")));
  });
});

Deno.test("a database signature the repository does not have answers 404 at once, from the database's mirror", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "m"), {
      repo: "flexotest",
      packages: [{ name: "tool", version: "1-1" }],
    });
    await using a = await startFakeMirror(repo.dir);
    await using silent = await startFakeMirror(repo.dir, { silent: true });
    await using proxy = await startTestProxy({
      mirrors: [a.url, silent.url],
      limits: { connectTimeoutMs: 3000 },
    });
    assertEquals((await get(proxy.url + DB)).status, 200);
    const started = performance.now();
    const sig = await fetch(proxy.url + SIG);
    await sig.body?.cancel();
    const ms = performance.now() - started;
    assertEquals(sig.status, 404);
    assert(ms < 1000, `404 after ${Math.round(ms)} ms`);
    assertEquals(silent.countRequests(".db.sig"), 0);
  });
});

Deno.test("pacman -Sy checking database signatures gets the signature of the database it got, while another mirror is faster with an older one", async () => {
  await withTempDir(async (dir) => {
    const signer = await createGpgSigner(dir);
    try {
      const repos = await twoMirrors(dir, signer);
      await using a = await startFakeMirror(repos.a);
      await using b = await startFakeMirror(repos.b);
      // A's signature comes 1 s late: the proxy waits for it with a wide margin (the tests' 1.5 s connect
      // timeout failed it on a loaded machine, and pacman then checked the new database against its old signature).
      await using proxy = await startTestProxy({
        mirrors: [a.url, b.url],
        limits: { connectTimeoutMs: 10_000 },
      });
      await using root = await makePacmanRoot({
        serverUrl: `${proxy.url}/$repo/os/$arch`,
        repos: ["flexotest"],
        sigLevel: "Required",
        signer,
        extraOptions: [],
      });
      const first = await runPacman(root, ["-Sy"]);
      assertEquals(first.code, 0, `pacman -Sy failed:\n${first.stdout}\n${first.stderr}`);
      assertEquals(await Deno.readFile(join(root.dbPath, "sync", "flexotest.db.sig")), repos.firstSig);
      await proxy.app.downloads.idle();

      // A has a newer snapshot, and is slow with its signature: B, faster, has only the older one.
      const newSig = await repos.update();
      a.faults = { match: ".db.sig", delayMs: 1000 };
      const second = await runPacman(root, ["-Sy"]);
      assertEquals(second.code, 0, `pacman -Sy failed:\n${second.stdout}\n${second.stderr}`);
      assert(!`${second.stdout}${second.stderr}`.includes("invalid"), second.stderr);
      assertEquals(await Deno.readFile(join(root.dbPath, "sync", "flexotest.db.sig")), newSig);
      assertEquals(b.countRequests(".db.sig"), 0, "B was never asked for a signature");
      await proxy.app.downloads.idle();
    } finally {
      await signer.close();
    }
  });
});
