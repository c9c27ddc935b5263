/**
 * A full disk against the real program (`main.ts` on a small tmpfs): a download that cannot fit fails before its
 * clients get a head, so that a database request is answered with the last good copy in the cache (stale) and a
 * package request with a clear 507, never with a `200` that breaks off. Needs root for the tmpfs; without it the
 * test says so and checks nothing.
 */

import { dirname, join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { fillUp, mountTmpfs, umount } from "../helpers/fault_tools.ts";
import { startFlexo, writeTestConfig } from "../helpers/flexo_process.ts";
import { randomBytes, sha256 } from "../helpers/bytes.ts";
import { testDatabase } from "../helpers/test_database.ts";
import { waitFor } from "../helpers/wait.ts";

const DB = "/core/os/x86_64/core.db";
const PKG = "/core/os/x86_64/big-2.0-1-x86_64.pkg.tar.zst";
const MIB = 1024 * 1024;

/** GETs `path` to the end of its body; a body that breaks off is reported as `broken`. */
async function get(base: string, path: string) {
  const response = await fetch(base + path, { signal: AbortSignal.timeout(20_000) });
  let bytes = new Uint8Array(0);
  let broken: string | undefined;
  try {
    bytes = await response.bytes();
  } catch (error) {
    broken = error instanceof Error ? error.message : String(error);
  }
  return { status: response.status, headers: response.headers, bytes, broken };
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

Deno.test("main.ts on a full disk serves the cached database stale and answers 507 for a package, then recovers when space returns", async (t) => {
  const work = await Deno.makeTempDir({ prefix: "flexo-disk-full-" });
  const disk = join(work, "disk");
  await Deno.mkdir(disk);
  if (!(await mountTmpfs(disk, "8m"))) {
    await Deno.remove(work, { recursive: true });
    await t.step({ name: "skipped: cannot mount a tmpfs here (needs root)", ignore: true, fn: () => {} });
    return;
  }
  const root = join(work, "mirror");
  await Deno.mkdir(join(root, dirname(DB)), { recursive: true });
  const oldDb = testDatabase(1, 200);
  const newDb = testDatabase(2, 6_000); // 3 MB: more than the disk has left
  const big = randomBytes(3 * MIB);
  await Deno.writeFile(join(root, DB), oldDb);
  await Deno.utime(join(root, DB), new Date(), new Date(Date.now() - 3_600_000));
  await Deno.writeFile(join(root, PKG), big);
  const cache = join(disk, "cache");
  const mirror = await startFakeMirror(root);
  const config = await writeTestConfig(work, { cacheDir: cache, mirror: mirror.url });
  const flexo = await startFlexo(config);
  try {
    const first = await get(flexo.url, DB);
    assertEquals(first.status, 200);
    await waitFor("the database in the cache", async () => (await sizeOf(join(cache, DB))) === oldDb.length);

    // A newer database upstream, and 1 MiB left on the disk.
    await Deno.writeFile(join(root, DB), newDb);
    await fillUp(join(disk, "filler"));
    await Deno.truncate(join(disk, "filler"), (await Deno.stat(join(disk, "filler"))).size - MIB);

    const stale = await get(flexo.url, DB);
    assertEquals(stale.broken, undefined, "the database response must not break off");
    assertEquals(stale.status, 200);
    assertEquals(sha256(stale.bytes), sha256(oldDb), "the last good database is the answer");
    assertEquals(stale.headers.get("cache-status"), "flexo; hit; detail=stale");
    assertEquals(sha256(await Deno.readFile(join(cache, DB))), sha256(oldDb), "and stays in the cache");

    const pkg = await get(flexo.url, PKG);
    assertEquals(pkg.status, 507, `a clear error, not a response that breaks off: ${pkg.broken}`);
    assert(new TextDecoder().decode(pkg.bytes).includes("disk full"), "the answer says why");
    assertEquals(await sizeOf(join(cache, ".partial", PKG)), 0, "no partial file is left");
    await waitFor(
      "the log to say that the disk is full",
      () => flexo.output().includes(`disk full: ${cache}`),
    );

    await Deno.remove(join(disk, "filler"));
    const fresh = await get(flexo.url, DB);
    assertEquals(fresh.status, 200);
    assertEquals(sha256(fresh.bytes), sha256(newDb), "once space returns the new database comes through");
    const whole = await get(flexo.url, PKG);
    assertEquals(whole.status, 200);
    assertEquals(sha256(whole.bytes), sha256(big));
  } finally {
    await flexo.stop();
    await mirror.close();
    await umount(disk);
    await Deno.remove(work, { recursive: true });
  }
});
