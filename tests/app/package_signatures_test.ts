/**
 * A package's detached signature (`.sig`) is checked against the `%PGPSIG%` its database carries, like the
 * package against its size and SHA-256: a corrupt one is never cached (pacman would refuse the package on it,
 * and a cached signature is served as immutable for a year).
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

Deno.test("createApp() never caches a package signature that differs from the database's %PGPSIG%, and the next request gets the right one from another mirror", async () => {
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
      const bad = await app.get(sigPath);
      const body = await bodyOf(bad);
      assert(
        bad.status >= 500 || body === undefined || body.length < corrupt.length,
        "no whole corrupt answer",
      );
      await app.downloads.idle();
      assertEquals(app.store.statComplete(sigPath.slice(1).split("/")), undefined, "not cached");
      assertEquals(app.stats.integrityRejections, 1);
      const good = await app.get(sigPath);
      assertEquals(good.status, 200);
      assertEquals(await bodyOf(good), signature);
      await app.downloads.idle();
      assert(app.store.statComplete(sigPath.slice(1).split("/")) !== undefined, "the right one is cached");
      assert(requests.some((r) => r.url === `http://b.test${sigPath}`), "the other mirror was asked");
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
