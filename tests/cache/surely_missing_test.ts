/** The cheap "nothing there" check before a synchronous stat or read, and the lookups of a miss that use it. */

import assert from "node:assert/strict";
import { join } from "node:path";
import { CacheStore } from "../../src/cache/cache_store.ts";
import { surelyMissing } from "../../src/cache/surely_missing.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

Deno.test("surelyMissing() is true only when nothing is there, following symbolic links as stat does", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "file");
    await Deno.writeTextFile(file, "x");
    await Deno.symlink(file, join(dir, "link"));
    await Deno.symlink(join(dir, "gone"), join(dir, "dangling"));
    for (const name of ["nothing", "no-folder/x", "file/x", "dangling"]) {
      assert.equal(surelyMissing(join(dir, name)), true, name);
    }
    for (const name of ["file", "link", "."]) assert.equal(surelyMissing(join(dir, name)), false, name);
  });
});

Deno.test("statComplete() and readPartialRecord() answer a miss, then find what was written after it", async () => {
  await withTempDir(async (dir) => {
    const store = new CacheStore(dir);
    const segments = ["core", "os", "x86_64", "a-1-1-x86_64.pkg.tar.zst"];
    assert.equal(store.statComplete(segments), undefined);
    assert.deepEqual(store.readPartialRecord(segments), { kind: "missing" });
    // No answer is remembered: the files made now are found at the next look.
    await Deno.mkdir(join(dir, "core", "os", "x86_64"), { recursive: true });
    await Deno.writeFile(store.finalPath(segments), new Uint8Array(3));
    assert.equal(store.statComplete(segments)?.size, 3);
    store.writePartialMeta(segments, { total: 3, mirror: "https://mirror.test/" });
    assert.deepEqual(store.readPartialMeta(segments), { total: 3, mirror: "https://mirror.test/" });
  });
});
