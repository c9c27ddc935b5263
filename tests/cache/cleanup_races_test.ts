/**
 * Cleaning when the disk or the clients change under it: a removal that fails half-way through a version, a
 * client that starts reading while a version is being removed, a file removed by another process meanwhile.
 */

import { dirname, join, relative } from "node:path";
import { createApp } from "../../src/app/app.ts";
import { inUseBy, runCleanup } from "../../src/cache/cleanup.ts";
import { CacheStore } from "../../src/cache/cache_store.ts";
import { pathExists } from "../../src/cache/cache_paths.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { testConfig } from "../helpers/test_app.ts";

const X86 = "core/os/x86_64";

async function put(root: string, relative: string, size = 100): Promise<string> {
  const path = join(root, relative);
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeFile(path, new Uint8Array(size));
  return path;
}

async function withCache(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "flexo-cleanup-races-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("runCleanup() keeps a package's signature when the package itself cannot be removed", async () => {
  await withCache(async (dir) => {
    const old = await put(dir, `${X86}/e-1-1-any.pkg.tar.zst`);
    await put(dir, `${X86}/e-1-1-any.pkg.tar.zst.sig`, 10);
    await put(dir, `${X86}/e-2-1-any.pkg.tar.zst`);
    const real = new CacheStore(dir);
    // As a file that the flexo user may not remove (made by root in a folder of root's) fails.
    const store = {
      removeIfPresent: (path: string) =>
        path === old ? Promise.reject(new Deno.errors.PermissionDenied(`cannot remove ${path}`)) : real
          .removeIfPresent(path),
    };
    const removed: string[] = [];
    const report = await runCleanup(dir, { keep: 1, store, onRemoved: (path) => removed.push(path) });
    assert(await pathExists(old), "the package stays");
    assert(await pathExists(`${old}.sig`), "and so does its signature: pacman checks the package with it");
    assertEquals(removed, []);
    assertEquals(report.failures.map((failure) => failure.path), [old]);
    assertEquals(report.removedFiles, 0);
  });
});

Deno.test("runCleanup() does not remove a file of a version that a client started to read while the version was being removed", async () => {
  await withCache(async (dir) => {
    const old = await put(dir, `${X86}/f-1-1-any.pkg.tar.zst`);
    await put(dir, `${X86}/f-1-1-any.pkg.tar.zst.sig`, 10);
    await put(dir, `${X86}/f-2-1-any.pkg.tar.zst`);
    const real = new CacheStore(dir);
    // While the package is being removed, a client asks for its signature (it got the package a moment ago).
    const store = {
      removeIfPresent: async (path: string) => {
        const removed = await real.removeIfPresent(path);
        if (path === old) real.beginRead(`${old}.sig`);
        return removed;
      },
    };
    const report = await runCleanup(dir, { keep: 1, store, inUse: (path) => real.isBeingRead(path) });
    assert(await pathExists(`${old}.sig`), "the signature being read stays");
    assertEquals(report.skippedInUse, 1);
  });
});

Deno.test("runCleanup() counts only the files it removed itself, not those another process removed meanwhile", async () => {
  await withCache(async (dir) => {
    const old = await put(dir, `${X86}/g-1-1-any.pkg.tar.zst`, 1000);
    await put(dir, `${X86}/g-2-1-any.pkg.tar.zst`, 1000);
    let goneBehindOurBack = false;
    const removed: string[] = [];
    const report = await runCleanup(dir, {
      keep: 1,
      // After the scan, an administrator's `rm` (or `flexo clean`) takes the old version first.
      inUse: () => {
        if (!goneBehindOurBack) Deno.removeSync(old);
        goneBehindOurBack = true;
        return false;
      },
      onRemoved: (path) => removed.push(path),
    });
    assertEquals(removed, [], "the cache usage must not count it as removed twice");
    assertEquals(report.freedBytes, 0);
    assertEquals(report.removedFiles, 0);
  });
});

Deno.test("runCleanup() spares the files in use when the cache directory is given as a relative path", async () => {
  await withCache(async (dir) => {
    // As `flexo --cache-dir ./pkg` gives it: the store makes it absolute, the cleaning must find its paths.
    const relativeDir = relative(Deno.cwd(), dir);
    const app = createApp(testConfig(relativeDir, ["http://127.0.0.1:9/"]));
    const read = await put(dir, `${X86}/h-1-1-any.pkg.tar.zst`);
    await put(dir, `${X86}/h-2-1-any.pkg.tar.zst`);
    const file = app.store.statComplete(["core", "os", "x86_64", "h-1-1-any.pkg.tar.zst"]);
    assertEquals(file?.path, read);
    const release = app.store.beginRead(file!.path);
    try {
      const report = await runCleanup(relativeDir, { keep: 1, inUse: inUseBy(app), store: app.store });
      assert(await pathExists(read), "the file a client is reading stays");
      assertEquals(report.removedFiles, 0);
    } finally {
      release();
    }
  });
});
