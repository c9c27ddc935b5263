/**
 * End-to-end: the real pacman client uses flexo (a real server on 127.0.0.1) as its mirror, in front of a fake
 * mirror serving a repository built at test time with repo-add, bsdtar and zstd.
 */

import { join } from "node:path";
import { createApp } from "../../src/app/app.ts";
import { startServer } from "../../src/server/server.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import {
  addPackages,
  assertToolsAvailable,
  createGpgSigner,
  makeRepo,
  type RepoInfo,
  sha256File,
} from "../helpers/make_repo.ts";
import { makePacmanRoot, type PacmanRoot, runPacman } from "../helpers/pacman.ts";
import { testConfig } from "../helpers/test_app.ts";

const PACKAGES = [
  { name: "small", version: "1.0-1", size: 1000, depends: ["dep"] },
  { name: "big", version: "1:2.0-1", size: 3_000_000 },
  { name: "dep", version: "0.5-2", size: 20_000 },
];

await assertToolsAvailable(["pacman", "repo-add", "bsdtar", "zstd", "gpg"]);

async function withProxy(
  mirrorUrl: string,
  fn: (proxy: { url: string; cacheDir: string; idle: () => Promise<void> }) => Promise<void>,
): Promise<void> {
  const cacheDir = await Deno.makeTempDir({ prefix: "flexo-e2e-cache-" });
  const app = createApp(testConfig(cacheDir, [mirrorUrl]));
  const server = startServer(app, { hostnames: ["127.0.0.1"], port: 0 });
  try {
    await fn({
      url: `http://127.0.0.1:${server.addresses[0].port}/`,
      cacheDir,
      idle: () => app.downloads.idle(),
    });
  } finally {
    await app.downloads.idle();
    await server.shutdown({ graceMs: 1000 });
    await Deno.remove(cacheDir, { recursive: true });
  }
}

function assertPacmanOk(result: { code: number; stdout: string; stderr: string }): void {
  assertEquals(result.code, 0, `pacman failed:\n${result.stdout}\n${result.stderr}`);
}

async function assertDownloaded(root: PacmanRoot, repo: RepoInfo): Promise<void> {
  for (const pkg of repo.packages) {
    assertEquals(await sha256File(join(root.cacheDir, pkg.fileName)), pkg.sha256, `${pkg.fileName} differs`);
  }
}

Deno.test("pacman -Syw through flexo downloads every package once; a second client gets them from the cache", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-e2e-" });
  try {
    const repo = await makeRepo(join(dir, "mirror"), { repo: "flexotest", packages: PACKAGES });
    await using mirror = await startFakeMirror(join(dir, "mirror"));
    await withProxy(mirror.url, async (proxy) => {
      const serverUrl = `${proxy.url}$repo/os/$arch`;
      await using first = await makePacmanRoot({ serverUrl, repos: ["flexotest"] });
      assertPacmanOk(await runPacman(first, ["-Syw", "small", "big"]));
      await assertDownloaded(first, repo);

      await using second = await makePacmanRoot({ serverUrl, repos: ["flexotest"], parallelDownloads: 3 });
      assertPacmanOk(await runPacman(second, ["-Syw", "small", "big"]));
      await assertDownloaded(second, repo);
      for (const pkg of repo.packages) {
        assertEquals(
          mirror.countRequests(pkg.fileName, { method: "GET" }),
          1,
          `${pkg.fileName} fetched twice`,
        );
        assertEquals(
          await sha256File(join(proxy.cacheDir, "flexotest", "os", "x86_64", pkg.fileName)),
          pkg.sha256,
        );
      }
      // pacman revalidates its database: the proxy asks upstream every time, and answers 304 itself. (A
      // download still ending, on a loaded machine, would be joined instead: wait until none runs.)
      await proxy.idle();
      const before = mirror.countRequests("flexotest.db");
      assertPacmanOk(await runPacman(second, ["-Sy"]));
      assertEquals(mirror.countRequests("flexotest.db"), before + 1);
      assert(
        mirror.requests.at(-1)?.headers["if-modified-since"],
        "the proxy revalidates with If-Modified-Since",
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pacman -Syw with signatures required gets every .sig through flexo", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-e2e-" });
  const signer = await createGpgSigner(dir);
  try {
    const repo = await makeRepo(join(dir, "mirror"), { repo: "flexotest", packages: PACKAGES, sign: signer });
    await using mirror = await startFakeMirror(join(dir, "mirror"));
    await withProxy(mirror.url, async (proxy) => {
      await using root = await makePacmanRoot({
        serverUrl: `${proxy.url}$repo/os/$arch`,
        repos: ["flexotest"],
        sigLevel: "Required",
        signer,
      });
      assertPacmanOk(await runPacman(root, ["-Syw", "small", "big"]));
      await assertDownloaded(root, repo);
      for (const pkg of repo.packages) {
        assertEquals(mirror.countRequests(`${pkg.fileName}.sig`, { method: "GET" }), 1);
        assert(
          (await Deno.stat(join(proxy.cacheDir, "flexotest", "os", "x86_64", `${pkg.fileName}.sig`))).isFile,
        );
      }
    });
  } finally {
    await signer.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pacman resumes a .part download through flexo", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-e2e-" });
  try {
    const repo = await makeRepo(join(dir, "mirror"), { repo: "flexotest", packages: PACKAGES });
    await using mirror = await startFakeMirror(join(dir, "mirror"));
    const big = repo.packages.find((pkg) => pkg.name === "big")!;
    await withProxy(mirror.url, async (proxy) => {
      for (const cachedFirst of [false, true]) {
        await using root = await makePacmanRoot({
          serverUrl: `${proxy.url}$repo/os/$arch`,
          repos: ["flexotest"],
        });
        assertPacmanOk(await runPacman(root, ["-Sy"]));
        const bytes = await Deno.readFile(big.path);
        await Deno.writeFile(join(root.cacheDir, `${big.fileName}.part`), bytes.subarray(0, 1_000_000));
        mirror.clearRequests();
        assertPacmanOk(await runPacman(root, ["-Sw", "big"]));
        assertEquals(await sha256File(join(root.cacheDir, big.fileName)), big.sha256);
        // The first round is a live download; in the second, the proxy serves the range from its cache.
        assertEquals(mirror.countRequests(big.fileName, { method: "GET" }), cachedFirst ? 0 : 1);
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pacman -Sy through flexo sees a database that changed upstream", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-e2e-" });
  try {
    let repo = await makeRepo(join(dir, "mirror"), { repo: "flexotest", packages: PACKAGES });
    await using mirror = await startFakeMirror(join(dir, "mirror"));
    await withProxy(mirror.url, async (proxy) => {
      await using root = await makePacmanRoot({
        serverUrl: `${proxy.url}$repo/os/$arch`,
        repos: ["flexotest"],
      });
      assertPacmanOk(await runPacman(root, ["-Syw", "small"]));
      repo = await addPackages(repo, [{ name: "newpkg", version: "3-1", size: 5000 }]);
      assertPacmanOk(await runPacman(root, ["-Syw", "newpkg"]));
      const newpkg = repo.packages.find((pkg) => pkg.name === "newpkg")!;
      assertEquals(await sha256File(join(root.cacheDir, newpkg.fileName)), newpkg.sha256);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
