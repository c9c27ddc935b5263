/**
 * A package's detached signature (`.sig`) is checked against the `%PGPSIG%` its database carries, like the
 * package against its size and SHA-256: a corrupt one is never cached (pacman would refuse the package on it,
 * and a cached signature is served as immutable for a year), nor sent: a signature is held back whole until
 * verified, and a corrupt one fetched again from the next mirror.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { fakeFetch, serveBytes } from "../helpers/fake_fetch.ts";
import { createGpgSigner, makeRepo } from "../helpers/make_repo.ts";
import { testApp } from "../helpers/test_app.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const FOLDER = "/flexotest/os/x86_64";

/** A signed repository of one package made with repo-add; `embed`: the database carries the signature. */
async function signedRepository(dir: string, embed: boolean) {
  const signer = await createGpgSigner(dir);
  try {
    const repo = await makeRepo(join(dir, "mirror"), {
      repo: "flexotest",
      packages: [{ name: "one", version: "1.0-1", size: 5000 }],
      sign: signer,
      embedSignatures: embed,
    });
    const pkg = repo.packages[0];
    const signature = await Deno.readFile(pkg.signaturePath!);
    const corrupt = signature.slice();
    corrupt[signature.length - 5] ^= 0xff;
    return {
      db: await Deno.readFile(join(repo.osDir, "flexotest.db")),
      signature,
      corrupt,
      sigPath: `${FOLDER}/${pkg.fileName}.sig`,
    };
  } finally {
    await signer.close();
  }
}

/** The body of a response, or undefined when it broke off. */
function bodyOf(response: Response): Promise<Uint8Array | undefined> {
  return response.arrayBuffer().then((b) => new Uint8Array(b), () => undefined);
}

Deno.test("createApp() answers a package signature that the first mirror sends corrupt with the right one from the next mirror, and never caches the corrupt one", async () => {
  await withTempDir(async (dir) => {
    const { db, signature, corrupt, sigPath } = await signedRepository(dir, true);
    const { fetch, requests } = fakeFetch((url, req) =>
      url.endsWith("/flexotest.db")
        ? serveBytes(db, req)
        : serveBytes(url.startsWith("http://a.test/") ? corrupt : signature, req)
    );
    const app = await testApp(["http://a.test/", "http://b.test/"], { fetch });
    try {
      await (await app.get(`${FOLDER}/flexotest.db`)).arrayBuffer();
      await app.downloads.idle();
      await app.packageIndex.idle();
      const failuresBefore = app.pool.snapshot().find((m) => m.url === "http://a.test/")!.failures;
      // Two clients joined on the same download: both get the second mirror's bytes, never the first's.
      const [first, second] = await Promise.all([app.get(sigPath), app.get(sigPath)]);
      assertEquals([first.status, second.status], [200, 200]);
      assertEquals(await bodyOf(first), signature, "the first client got the right signature");
      assertEquals(await bodyOf(second), signature, "so did the one that joined it");
      await app.downloads.idle();
      assert(requests.some((r) => r.url === `http://a.test${sigPath}`), "the first mirror was asked");
      assert(requests.some((r) => r.url === `http://b.test${sigPath}`), "then the other one");
      assertEquals(
        requests.filter((r) => r.url.endsWith(".sig")).length,
        2,
        "one download for both clients",
      );
      assertEquals(
        await Deno.readFile(join(app.store.root, sigPath.slice(1))),
        signature,
        "the right one cached",
      );
      assertEquals(app.stats.integrityRejections, 1);
      const a = app.pool.snapshot().find((m) => m.url === "http://a.test/")!;
      assertEquals(a.failures, failuresBefore + 1, "the corrupting mirror is counted as failed once");
    } finally {
      await app.cleanup();
    }
  });
});

Deno.test("createApp() answers 502 naming each mirror when every mirror sends a package signature corrupt, and caches nothing", async () => {
  await withTempDir(async (dir) => {
    const { db, corrupt, sigPath } = await signedRepository(dir, true);
    const { fetch } = fakeFetch((url, req) => serveBytes(url.endsWith("/flexotest.db") ? db : corrupt, req));
    const app = await testApp(["http://a.test/", "http://b.test/"], { fetch });
    try {
      await (await app.get(`${FOLDER}/flexotest.db`)).arrayBuffer();
      await app.downloads.idle();
      await app.packageIndex.idle();
      const bad = await app.get(sigPath);
      const text = await bad.text().catch(() => "");
      assertEquals(bad.status, 502);
      assert(text.includes("http://a.test/ sent a corrupt file"), text);
      assert(text.includes("http://b.test/ sent a corrupt file"), text);
      await app.downloads.idle();
      const segments = sigPath.slice(1).split("/");
      assertEquals(app.store.statComplete(segments), undefined, "not cached");
      assertEquals(await Deno.stat(app.store.partialPath(segments)).then(() => "kept", () => "gone"), "gone");
      assertEquals(app.stats.integrityRejections, 2);
    } finally {
      await app.cleanup();
    }
  });
});

Deno.test("createApp() stores a package signature as it comes when the database carries none (no %PGPSIG%)", async () => {
  await withTempDir(async (dir) => {
    const { db, corrupt, sigPath } = await signedRepository(dir, false);
    const { fetch } = fakeFetch((url, req) => serveBytes(url.endsWith("/flexotest.db") ? db : corrupt, req));
    const app = await testApp(["http://a.test/"], { fetch });
    try {
      await (await app.get(`${FOLDER}/flexotest.db`)).arrayBuffer();
      await app.downloads.idle();
      await app.packageIndex.idle();
      assertEquals(await bodyOf(await app.get(sigPath)), corrupt);
      await app.downloads.idle();
      assert(app.store.statComplete(sigPath.slice(1).split("/")) !== undefined, "cached unchecked");
      assertEquals(app.stats.integrityRejections, 0);
    } finally {
      await app.cleanup();
    }
  });
});
