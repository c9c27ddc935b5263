/**
 * Package signatures with the real pacman client: a mirror that sends a corrupt `.sig` of a package whose
 * database carries the signature (`%PGPSIG%`) gets no corrupt signature into the proxy's cache nor pacman's;
 * pacman (6.0 checks the package against the database's signature, yet downloads the `.sig` and fails the
 * transaction when that download fails) gets the right one on a later run.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { assertToolsAvailable, createGpgSigner, makeRepo } from "../helpers/make_repo.ts";
import { makePacmanRoot, runPacman } from "../helpers/pacman.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

await assertToolsAvailable(["pacman", "repo-add", "bsdtar", "zstd", "gpg"]);

Deno.test("pacman -Sw checking package signatures never gets nor leaves cached a .sig a mirror sent corrupt, and gets the right one from the other mirror", async () => {
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
      // Each mirror sends the signature corrupt once: whichever the proxy asks first (packages are spread over
      // the mirrors), its copy is corrupt, the other's (or its second) is right.
      const corruptOnce = { match: ".pkg.tar.zst.sig", corruptBytes: 1, times: 1 };
      await using a = await startFakeMirror(repo.dir, corruptOnce);
      await using b = await startFakeMirror(repo.dir, corruptOnce);
      await using proxy = await startTestProxy({ mirrors: [a.url, b.url] });
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
      // The run whose signature comes corrupt fails with pacman's "transfer closed with 1 bytes remaining" (the
      // proxy held the last byte back): an error, never the corrupt bytes. The next run gets it from the other
      // mirror, and so on until one run gets the right one (each mirror sends it corrupt once).
      const runs: string[] = [];
      let code = 1;
      for (let run = 0; run < 3 && code !== 0; run++) {
        const result = await runPacman(root, ["-Sw", "--noconfirm", "tool"]);
        code = result.code;
        runs.push(`${result.stdout}\n${result.stderr}`);
        await proxy.app.downloads.idle();
      }
      assertEquals(code, 0, `pacman -Sw failed:\n${runs.join("\n---\n")}`);
      for (const failed of runs.slice(0, -1)) assert(failed.includes(".sig"), failed);
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
