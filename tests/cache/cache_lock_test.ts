/** The lock that keeps a second proxy off a cache directory (src/cache/cache_lock.ts). */

import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { CACHE_LOCK_FILE, lockCacheDirectory } from "../../src/cache/cache_lock.ts";

Deno.test("lockCacheDirectory() refuses a directory whose lock is held, naming the holder, until it is released", async () => {
  await withTempDir(async (dir) => {
    const first = lockCacheDirectory(dir, 4242);
    assert(first.held);
    assertEquals(Deno.readTextFileSync(join(dir, CACHE_LOCK_FILE)), "4242\n");
    // flock locks belong to an open file: a second opening conflicts even within one process.
    const error = await assertRejects(() => Promise.resolve().then(() => lockCacheDirectory(dir, 99)), Error);
    assert(error.message.includes(`cache_directory = "${dir}" is in use`), error.message);
    assert(error.message.includes("process 4242"), error.message);
    first.release();
    const next = lockCacheDirectory(dir, 99);
    assert(next.held);
    assertEquals(Deno.readTextFileSync(join(dir, CACHE_LOCK_FILE)), "99\n");
    next.release();
  });
});
