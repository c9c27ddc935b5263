/**
 * The real pacman client through flexo while mirrors misbehave: a mirror that dies mid-package with five parallel
 * downloads, one that trickles a package, one that answers a compressed package, one that lags behind the
 * others, `pacman -U` of a URL with its signature, two `-Sy` within a second, every mirror silent, and a package
 * rebuilt under the same name.
 */

import { join } from "node:path";
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
import { makePacmanRoot, type PacmanResult, type PacmanRoot, runPacman } from "../helpers/pacman.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

await assertToolsAvailable(["pacman", "repo-add", "bsdtar", "zstd", "gpg"]);

const REPO = "flexotest";

function assertPacmanOk(result: PacmanResult): void {
  assertEquals(result.code, 0, `pacman failed:\n${result.stdout}\n${result.stderr}`);
}

async function assertDownloaded(root: PacmanRoot, packages: RepoInfo["packages"]): Promise<void> {
  for (const pkg of packages) {
    assertEquals(await sha256File(join(root.cacheDir, pkg.fileName)), pkg.sha256, `${pkg.fileName} differs`);
  }
}

/** Runs pacman and says how long it took, in milliseconds. */
async function timedPacman(root: PacmanRoot, args: string[]): Promise<PacmanResult & { ms: number }> {
  const started = performance.now();
  const result = await runPacman(root, args, { timeoutMs: 60_000 });
  return { ...result, ms: performance.now() - started };
}

const FIVE = ["a", "b", "c", "d", "e"].map((name) => ({ name, version: "1.0-1", size: 400_000 }));

Deno.test("pacman -Sw with ParallelDownloads=5 gets every package whole when the first mirror dies in the middle of each", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "mirror"), { repo: REPO, packages: FIVE });
    await using dying = await startFakeMirror(repo.dir);
    await using good = await startFakeMirror(repo.dir);
    await using proxy = await startTestProxy({ mirrors: [dying.url, good.url] });
    await using root = await makePacmanRoot({ serverUrl: `${proxy.url}/$repo/os/$arch`, repos: [REPO] });
    assertPacmanOk(await runPacman(root, ["-Sy"]));
    dying.faults = { match: ".pkg.tar.zst", dropAfterBytes: 100_000 };
    const result = await timedPacman(root, ["-Sw", ...FIVE.map((pkg) => pkg.name)]);
    assertPacmanOk(result);
    assert(result.ms < 15_000, `pacman took ${Math.round(result.ms)} ms`);
    await assertDownloaded(root, repo.packages);
  });
});

Deno.test("pacman -Sw gets a package from the fast second mirror within seconds while the first trickles it at 20 kB/s", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "mirror"), {
      repo: REPO,
      packages: [{ name: "big", version: "1.0-1", size: 3 * 1024 * 1024 }],
    });
    await using trickling = await startFakeMirror(repo.dir);
    await using good = await startFakeMirror(repo.dir);
    // flexo's default limits: 20 kB/s is far above low_speed_limit (1 B/s), which never gives up on it.
    const limits = { lowSpeedLimit: 1, lowSpeedTimeMs: 5_000, lastResortStallMs: 30_000 };
    await using proxy = await startTestProxy({ mirrors: [trickling.url, good.url], limits });
    await using root = await makePacmanRoot({ serverUrl: `${proxy.url}/$repo/os/$arch`, repos: [REPO] });
    assertPacmanOk(await runPacman(root, ["-Sy"]));
    trickling.faults = { match: ".pkg.tar.zst", bytesPerSecond: 20_000 };
    const result = await timedPacman(root, ["-Sw", "big"]);
    assertPacmanOk(result);
    // At the trickling mirror's pace the package takes over two and a half minutes.
    assert(result.ms < 30_000, `pacman took ${Math.round(result.ms)} ms`);
    await assertDownloaded(root, repo.packages);
    const ranges = good.requests.filter((r) => r.path.endsWith(".pkg.tar.zst")).map((r) => r.range ?? "");
    assert(ranges.some((range) => /^bytes=[1-9]\d*-$/.test(range)), `the good mirror resumed it: ${ranges}`);
  });
});

Deno.test("pacman -Sw gets a package whole when the first mirror answers it with Content-Encoding: gzip", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "mirror"), { repo: REPO, packages: FIVE.slice(0, 2) });
    await using compressing = await startFakeMirror(repo.dir);
    await using good = await startFakeMirror(repo.dir);
    await using proxy = await startTestProxy({ mirrors: [compressing.url, good.url] });
    await using root = await makePacmanRoot({ serverUrl: `${proxy.url}/$repo/os/$arch`, repos: [REPO] });
    compressing.faults = { match: ".pkg.tar.zst", headers: { "content-encoding": "gzip" } };
    assertPacmanOk(await runPacman(root, ["-Syw", "a", "b"]));
    await assertDownloaded(root, repo.packages);
    await proxy.app.downloads.idle();
    for (const pkg of repo.packages) {
      assertEquals(await sha256File(join(proxy.dir, REPO, "os", "x86_64", pkg.fileName)), pkg.sha256);
    }
  });
});

Deno.test("pacman -Sy then -Sw of a new package gets the newer database and the package while the first mirror lags", async () => {
  await withTempDir(async (dir) => {
    const old = await makeRepo(join(dir, "old"), {
      repo: REPO,
      packages: [{ name: "tool", version: "0.9-1" }],
    });
    let current = await makeRepo(join(dir, "current"), {
      repo: REPO,
      packages: [{ name: "tool", version: "0.9-1" }],
    });
    current = await addPackages(current, [{ name: "tool", version: "0.10-1" }, {
      name: "newpkg",
      version: "1-1",
    }]);
    const now = Date.now() / 1000;
    for (const [repo, time] of [[old, now - 3600], [current, now - 60]] as const) {
      await Deno.utime(join(repo.osDir, `${REPO}.db.${repo.dbExtension}`), time, time);
    }
    await using lagging = await startFakeMirror(old.dir, { modifiedSinceExact: true });
    await using good = await startFakeMirror(current.dir);
    await using proxy = await startTestProxy({ mirrors: [lagging.url, good.url] });
    const serverUrl = `${proxy.url}/$repo/os/$arch`;
    // The lagging mirror is away while the first client syncs: the cache gets the current database.
    lagging.faults = { status: 503 };
    await using first = await makePacmanRoot({ serverUrl, repos: [REPO] });
    assertPacmanOk(await runPacman(first, ["-Sy"]));
    await proxy.app.downloads.idle();
    lagging.faults = { modifiedSinceExact: true };

    for (const args of [["-Sy"], ["-Syw", "newpkg", "tool"]]) {
      await using root = await makePacmanRoot({ serverUrl, repos: [REPO] });
      const result = await timedPacman(root, args);
      assertPacmanOk(result);
      assert(result.ms < 10_000, `pacman ${args.join(" ")} took ${Math.round(result.ms)} ms`);
    }
    assertPacmanOk(await runPacman(first, ["-Syw", "newpkg", "tool"]));
    const wanted = current.packages.filter((pkg) => pkg.name === "newpkg" || pkg.version === "0.10-1");
    await assertDownloaded(first, wanted);
    const sync = await Deno.readFile(join(first.dbPath, "sync", `${REPO}.db`));
    assertEquals(sync, await Deno.readFile(join(current.osDir, `${REPO}.db.${current.dbExtension}`)));
  });
});

Deno.test("pacman -U of a package URL through flexo gets the package and its signature and installs it", async () => {
  await withTempDir(async (dir) => {
    const signer = await createGpgSigner(dir);
    try {
      const repo = await makeRepo(join(dir, "mirror"), {
        repo: REPO,
        packages: [{ name: "tool", version: "1.0-1", size: 3000 }],
        sign: signer,
      });
      await using mirror = await startFakeMirror(repo.dir);
      await using proxy = await startTestProxy({ mirrors: [mirror.url] });
      await using root = await makePacmanRoot({
        serverUrl: `${proxy.url}/$repo/os/$arch`,
        repos: [REPO],
        sigLevel: "Required",
        signer,
      });
      const pkg = repo.packages[0];
      const url = `${proxy.url}/${REPO}/os/x86_64/${pkg.fileName}`;
      const result = await runPacman(root, ["-U", url]);
      assertPacmanOk(result);
      assertEquals(await sha256File(join(root.cacheDir, pkg.fileName)), pkg.sha256);
      assertEquals(mirror.countRequests(`${pkg.fileName}.sig`, { method: "GET" }), 1);
      const installed = await Deno.readTextFile(join(root.dbPath, "local", "tool-1.0-1", "desc"));
      assert(installed.includes("%NAME%\ntool\n"), installed);
    } finally {
      await signer.close();
    }
  });
});

Deno.test("pacman -Sy twice within a second says the second time that the database is up to date", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "mirror"), { repo: REPO, packages: FIVE.slice(0, 1) });
    await using mirror = await startFakeMirror(repo.dir);
    await using proxy = await startTestProxy({ mirrors: [mirror.url] });
    await using root = await makePacmanRoot({ serverUrl: `${proxy.url}/$repo/os/$arch`, repos: [REPO] });
    assertPacmanOk(await runPacman(root, ["-Sy"]));
    const second = await runPacman(root, ["-Sy", "--debug"]);
    assertPacmanOk(second);
    // pacman 6.0 says nothing more on stdout for a database that is up to date; its debug output tells.
    assert(/response code 304|is up to date/.test(second.stdout + second.stderr), second.stderr);
    const sync = await Deno.readFile(join(root.dbPath, "sync", `${REPO}.db`));
    assertEquals(sync, await Deno.readFile(join(repo.osDir, `${REPO}.db.${repo.dbExtension}`)));
  });
});

Deno.test("with every mirror silent pacman -Sy syncs from the cache, -Sw of a cached package works and of an uncached one fails within seconds", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "mirror"), { repo: REPO, packages: FIVE.slice(0, 2) });
    await using a = await startFakeMirror(repo.dir);
    await using b = await startFakeMirror(repo.dir);
    await using proxy = await startTestProxy({ mirrors: [a.url, b.url], limits: { connectTimeoutMs: 3000 } });
    const serverUrl = `${proxy.url}/$repo/os/$arch`;
    {
      await using first = await makePacmanRoot({ serverUrl, repos: [REPO] });
      assertPacmanOk(await runPacman(first, ["-Syw", "a"]));
    }
    await proxy.app.downloads.idle();
    a.faults = { silent: true };
    b.faults = { silent: true };
    await using root = await makePacmanRoot({ serverUrl, repos: [REPO] });
    const sync = await timedPacman(root, ["-Sy"]);
    assertPacmanOk(sync);
    assert(sync.ms < 10_000, `-Sy took ${Math.round(sync.ms)} ms`);
    const cached = await timedPacman(root, ["-Sw", "a"]);
    assertPacmanOk(cached);
    assert(cached.ms < 3_000, `-Sw of a cached package took ${Math.round(cached.ms)} ms`);
    const uncached = await timedPacman(root, ["-Sw", "b"]);
    assert(uncached.code !== 0, "an uncached package cannot be had");
    assert(!uncached.timedOut);
    assert(uncached.ms < 10_000, `-Sw of an uncached package took ${Math.round(uncached.ms)} ms`);
    assert(/error/i.test(uncached.stderr), uncached.stderr);
  });
});

Deno.test("pacman -Sw after a package was rebuilt under the same name gets the new file, not the cached old one", async () => {
  await withTempDir(async (dir) => {
    const signer = await createGpgSigner(dir);
    try {
      let repo = await makeRepo(join(dir, "mirror"), {
        repo: REPO,
        packages: [{ name: "tool", version: "1.0-1", size: 3000 }],
        sign: signer,
      });
      await using mirror = await startFakeMirror(repo.dir);
      // A custom repository (only those rebuild under the same name; an official repository's database
      // that lists a cached file with another size is not trusted with deleting it).
      await using proxy = await startTestProxy({
        mirrors: ["http://127.0.0.1:9/"],
        config: { custom_repo: [{ name: "own", url: [mirror.url] }] },
      });
      const options = {
        serverUrl: `${proxy.url}/custom_repo/own/$repo/os/$arch`,
        repos: [REPO],
        sigLevel: "Required" as const,
        signer,
      };
      {
        await using first = await makePacmanRoot(options);
        assertPacmanOk(await runPacman(first, ["-Syw", "tool"]));
      }
      await proxy.app.downloads.idle();
      // A custom repository's owner builds tool 1.0-1 again and repo-adds it: same file name, new bytes. (The
      // old signature goes first: repo-add would put it into the database, where pacman looks before the .sig.)
      await Deno.remove(repo.packages[0].signaturePath!);
      repo = await addPackages(repo, [{ name: "tool", version: "1.0-1", size: 6000 }]);
      await using root = await makePacmanRoot(options);
      assertPacmanOk(await runPacman(root, ["-Sy"]));
      await proxy.app.downloads.idle();
      await proxy.app.packageIndex.idle();
      assertPacmanOk(await runPacman(root, ["-Sw", "tool"]));
      await assertDownloaded(root, repo.packages);
      assertEquals(mirror.countRequests(repo.packages[0].fileName, { method: "GET" }), 2);
      assertEquals(mirror.countRequests(`${repo.packages[0].fileName}.sig`, { method: "GET" }), 2);
    } finally {
      await signer.close();
    }
  });
});
