/**
 * Importing a pacman cache directory: good packages land where the proxy would have stored them, verified
 * against the databases; corrupt, truncated and unknown files are reported and skipped.
 */

import { join } from "node:path";
import { CacheStore } from "../../src/cache/cache_store.ts";
import { pathExists } from "../../src/cache/cache_paths.ts";
import { describeImport, importPackages } from "../../src/cache/import.ts";
import { PackageIndex } from "../../src/repo/package_index.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { createGpgSigner, makeRepo } from "../helpers/make_repo.ts";

const FOLDER = "flexotest/os/x86_64";
const CUSTOM = "custom_repo/mine/x86_64";

Deno.test("importPackages() copies verified packages with their signatures and skips corrupt, unknown and present ones", async () => {
  const work = await Deno.makeTempDir({ prefix: "flexo-import-" });
  try {
    const mirror = join(work, "mirror");
    const cacheDir = join(work, "cache");
    const pacmanCache = join(work, "pkg");
    await Deno.mkdir(pacmanCache);
    const repo = await makeRepo(mirror, {
      repo: "flexotest",
      packages: [
        { name: "good", version: "1:2.0-1", size: 50_000 },
        { name: "present", version: "1.0-1" },
        { name: "flipped", version: "1.0-1" },
        { name: "short", version: "1.0-1" },
      ],
    });
    const stranger = await makeRepo(join(work, "stranger"), {
      repo: "stranger",
      packages: [{ name: "stranger", version: "1.0-1" }],
    });
    const pkg = (name: string) => repo.packages.find((p) => p.name === name)!;

    // The database as a client synced it through the proxy, in an official folder and in a custom repo.
    for (const folder of [FOLDER, CUSTOM]) {
      await Deno.mkdir(join(cacheDir, folder), { recursive: true });
      await Deno.copyFile(join(repo.osDir, "flexotest.db"), join(cacheDir, folder, "flexotest.db"));
    }
    await Deno.copyFile(pkg("present").path, join(cacheDir, FOLDER, pkg("present").fileName));
    await Deno.copyFile(pkg("present").path, join(cacheDir, CUSTOM, pkg("present").fileName));

    // The pacman cache: good and present packages with signatures, a flipped byte, a truncated file,
    // a package no database lists, and files that are not packages.
    for (const name of ["good", "present"]) {
      await Deno.copyFile(pkg(name).path, join(pacmanCache, pkg(name).fileName));
      await Deno.writeTextFile(join(pacmanCache, `${pkg(name).fileName}.sig`), `signature of ${name}`);
    }
    const flipped = await Deno.readFile(pkg("flipped").path);
    flipped[flipped.length - 10] ^= 0xff;
    await Deno.writeFile(join(pacmanCache, pkg("flipped").fileName), flipped);
    await Deno.writeFile(join(pacmanCache, `${pkg("flipped").fileName}.sig`), new Uint8Array(8));
    const short = await Deno.readFile(pkg("short").path);
    await Deno.writeFile(join(pacmanCache, pkg("short").fileName), short.subarray(0, short.length - 1));
    await Deno.copyFile(stranger.packages[0].path, join(pacmanCache, stranger.packages[0].fileName));
    await Deno.writeTextFile(join(pacmanCache, "other-1.0-1-x86_64.pkg.tar.zst.part"), "partial");
    await Deno.writeTextFile(join(pacmanCache, "lonely-1.0-1-x86_64.pkg.tar.zst.sig"), "orphan signature");
    await Deno.mkdir(join(pacmanCache, "download-AbCdEf"));
    const lastModified = new Date("2024-03-01T12:00:00Z");
    await Deno.utime(join(pacmanCache, pkg("good").fileName), lastModified, lastModified);

    const index = new PackageIndex();
    assertEquals(await index.loadAll(cacheDir), 2);
    assertEquals(index.foldersListing(pkg("good").fileName), [CUSTOM, FOLDER]);
    assertEquals(index.foldersListing(stranger.packages[0].fileName), []);
    const store = new CacheStore(cacheDir);
    const report = await importPackages(pacmanCache, { store, index });

    const good = pkg("good").fileName;
    assertEquals(report.imported, [{
      fileName: good,
      paths: [join(cacheDir, CUSTOM, good), join(cacheDir, FOLDER, good)],
      bytes: pkg("good").size,
    }]);
    for (const folder of [FOLDER, CUSTOM]) {
      assertEquals(await Deno.readFile(join(cacheDir, folder, good)), await Deno.readFile(pkg("good").path));
      assertEquals(await Deno.readTextFile(join(cacheDir, folder, `${good}.sig`)), "signature of good");
      assertEquals((await Deno.stat(join(cacheDir, folder, good))).mtime, lastModified, "mtime kept");
      // The package already there gets its missing signature.
      assertEquals(
        await Deno.readTextFile(join(cacheDir, folder, `${pkg("present").fileName}.sig`)),
        "signature of present",
      );
      for (const name of ["flipped", "short"]) {
        assert(!(await pathExists(join(cacheDir, folder, pkg(name).fileName))), `${name} is not imported`);
        assert(!(await pathExists(join(cacheDir, folder, `${pkg(name).fileName}.sig`))), `nor its signature`);
      }
    }
    assertEquals(report.signatures, 4);
    assertEquals(report.alreadyPresent, [pkg("present").fileName]);
    assertEquals(report.corrupt.map((c) => c.fileName), [pkg("flipped").fileName, pkg("short").fileName]);
    assert(report.corrupt[0].reason.startsWith("SHA-256 "), report.corrupt[0].reason);
    assert(report.corrupt[1].reason.includes(`${short.length - 1} bytes`), report.corrupt[1].reason);
    assertEquals(report.unknown, [stranger.packages[0].fileName]);
    assertEquals(report.ignored, 2, "the .part file and the orphan signature");
    assertEquals(report.failures, []);
    assert(!(await pathExists(join(cacheDir, "stranger"))), "nothing is made up for unknown packages");
    assertEquals(
      await Array.fromAsync(Deno.readDir(join(cacheDir, ".partial"))),
      [],
      "no temporary file left",
    );
    const summary = describeImport(report).at(-1)!;
    assert(summary.startsWith("Imported 1 packages"), summary);
    assert(summary.includes("1 already cached, 2 corrupt, 1 unknown"), summary);

    // Importing again changes nothing.
    const again = await importPackages(pacmanCache, { store, index });
    assertEquals(again.imported, []);
    assertEquals(again.signatures, 0);
    assertEquals(again.alreadyPresent, [good, pkg("present").fileName].sort());
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("importPackages() explains a directory it cannot list", async () => {
  const cacheDir = await Deno.makeTempDir({ prefix: "flexo-import-" });
  try {
    let message = "";
    try {
      await importPackages(join(cacheDir, "missing"), {
        store: new CacheStore(cacheDir),
        index: new PackageIndex(),
      });
    } catch (error) {
      message = (error as Error).message;
    }
    assert(message.startsWith(`Cannot list ${join(cacheDir, "missing")}`), message);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

/** A repository of `names`, signed with %PGPSIG% in its database, and a cache that has synced it. */
interface SignedSetup {
  repo: Awaited<ReturnType<typeof makeRepo>>;
  cacheDir: string;
  /** The pacman cache to import from: empty, for the test to fill. */
  pacmanCache: string;
  /** Imports `pacmanCache` into the cache, its database indexed. */
  importAll(): ReturnType<typeof importPackages>;
}

/** Runs `fn` on a {@linkcode SignedSetup} of `names` in a temporary folder, removed afterwards. */
async function withSignedSetup(names: string[], fn: (setup: SignedSetup) => Promise<void>): Promise<void> {
  const work = await Deno.makeTempDir({ prefix: "flexo-import-" });
  const signer = await createGpgSigner(work);
  try {
    const repo = await makeRepo(join(work, "mirror"), {
      repo: "flexotest",
      packages: names.map((name) => ({ name, version: "1.0-1" })),
      sign: signer,
      embedSignatures: true,
    });
    const cacheDir = join(work, "cache");
    const pacmanCache = join(work, "pkg");
    await Deno.mkdir(join(cacheDir, FOLDER), { recursive: true });
    await Deno.mkdir(pacmanCache);
    await Deno.copyFile(join(repo.osDir, "flexotest.db"), join(cacheDir, FOLDER, "flexotest.db"));
    const importAll = async () => {
      const index = new PackageIndex();
      await index.loadAll(cacheDir);
      return await importPackages(pacmanCache, { store: new CacheStore(cacheDir), index });
    };
    await fn({ repo, cacheDir, pacmanCache, importAll });
  } finally {
    await signer.close();
    await Deno.remove(work, { recursive: true });
  }
}

Deno.test("importPackages() copies a signature only when it is the one the database carries (%PGPSIG%)", async () => {
  await withSignedSetup(["right", "wrong"], async ({ repo, cacheDir, pacmanCache, importAll }) => {
    for (const pkg of repo.packages) {
      await Deno.copyFile(pkg.path, join(pacmanCache, pkg.fileName));
      const signature = await Deno.readFile(pkg.signaturePath!);
      if (pkg.name === "wrong") signature[signature.length - 3] ^= 0xff;
      await Deno.writeFile(join(pacmanCache, `${pkg.fileName}.sig`), signature);
    }
    const report = await importAll();
    const [right, wrong] = repo.packages;
    assertEquals(report.imported.map((item) => item.fileName), [right.fileName, wrong.fileName]);
    assertEquals(report.signatures, 1);
    assertEquals(
      await Deno.readFile(join(cacheDir, FOLDER, `${right.fileName}.sig`)),
      await Deno.readFile(right.signaturePath!),
    );
    assert(
      !(await pathExists(join(cacheDir, FOLDER, `${wrong.fileName}.sig`))),
      "the wrong one is not copied",
    );
    assertEquals(report.corrupt.map((item) => item.fileName), [`${wrong.fileName}.sig`]);
  });
});

Deno.test("importPackages() refuses a file named like a signature by its size, without hashing it", async () => {
  await withSignedSetup(["odd"], async ({ repo, pacmanCache, importAll }) => {
    const [odd] = repo.packages;
    await Deno.copyFile(odd.path, join(pacmanCache, odd.fileName));
    // A stray file of 3 MiB named like the signature: its size alone tells it is not the database's one, and
    // it is not read into memory to be hashed (the reason names no SHA-256).
    await Deno.writeFile(join(pacmanCache, `${odd.fileName}.sig`), new Uint8Array(3 * 1024 * 1024));
    const report = await importAll();
    assertEquals(report.corrupt.map((item) => [item.fileName, /SHA-256/.test(item.reason)]), [
      [`${odd.fileName}.sig`, false],
    ]);
    assertEquals(report.signatures, 0);
  });
});
