/**
 * Package signatures with the real pacman client: a mirror that sends a corrupt `.sig` of a package whose
 * database carries the signature (`%PGPSIG%`) gets no corrupt signature into the proxy's cache nor pacman's, and
 * costs pacman nothing (6.0 checks the package against the database's signature, yet downloads the `.sig` and
 * fails the transaction when that download fails): the proxy holds a signature back until verified and takes a
 * corrupt one again from the next mirror.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { assertToolsAvailable, createGpgSigner, makeRepo } from "../helpers/make_repo.ts";
import { makePacmanRoot, runPacman } from "../helpers/pacman.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

await assertToolsAvailable(["pacman", "repo-add", "bsdtar", "zstd", "gpg"]);

Deno.test("pacman -Sw checking package signatures succeeds at once when mirrors send a .sig corrupt, and never gets nor leaves cached a corrupt one", async () => {
  await withTempDir(async (dir) => {
    const signer = await createGpgSigner(dir);
    try {
      const repo = await makeRepo(join(dir, "mirror"), {
        repo: "flexotest",
        packages: [{ name: "tool", version: "1.0-1", size: 20_000 }],
        sign: signer,
        embedSignatures: true,
      });
      const pkg = repo.packages[0];
      // Two mirrors send the signature corrupt once: whichever the proxy asks first (packages are spread over
      // the mirrors), its copy is corrupt, and so may be the next one's; the third's is right.
      const corruptOnce = { match: ".pkg.tar.zst.sig", corruptBytes: 1, times: 1 };
      await using a = await startFakeMirror(repo.dir, corruptOnce);
      await using b = await startFakeMirror(repo.dir, corruptOnce);
      await using c = await startFakeMirror(repo.dir);
      await using proxy = await startTestProxy({ mirrors: [a.url, b.url, c.url] });
      await using root = await makePacmanRoot({
        serverUrl: `${proxy.url}/$repo/os/$arch`,
        repos: ["flexotest"],
        sigLevel: "Required",
        signer,
      });
      const sync = await runPacman(root, ["-Sy"]);
      assertEquals(sync.code, 0, `pacman -Sy failed:\n${sync.stdout}\n${sync.stderr}`);
      await proxy.app.downloads.idle();
      await proxy.app.packageIndex.idle();
      // The proxy passes over the corrupt copies: pacman's first run succeeds (it used to fail with "transfer
      // closed with 1 bytes remaining" and need another run).
      const result = await runPacman(root, ["-Sw", "--noconfirm", "tool"]);
      assertEquals(result.code, 0, `pacman -Sw failed:\n${result.stdout}\n${result.stderr}`);
      await proxy.app.downloads.idle();
      const right = await Deno.readFile(pkg.signaturePath!);
      const cachedSig = join(proxy.dir, "flexotest", "os", "x86_64", `${pkg.fileName}.sig`);
      assertEquals(await Deno.readFile(cachedSig), right, "the proxy cached the right signature");
      assertEquals(
        await Deno.readFile(join(root.cacheDir, `${pkg.fileName}.sig`)),
        right,
        "and pacman got it",
      );
      assertEquals(await Deno.readFile(join(root.cacheDir, pkg.fileName)), await Deno.readFile(pkg.path));
      assert(proxy.app.stats.integrityRejections >= 1, "no corrupt signature was sent to the proxy");
    } finally {
      await signer.close();
    }
  });
});
