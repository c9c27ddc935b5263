/** The cheap "nothing there" check before a synchronous stat or read, and the lookups of a miss that use it. */

import assert from "node:assert/strict";
import { join } from "node:path";
import { CacheStore, usableRecord } from "../../src/cache/cache_store.ts";
import { statPathProbe } from "../../src/cache/surely_missing.ts";
import { assertPathProbeCases } from "../helpers/path_probe_cases.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

Deno.test("statPathProbe() is true only when nothing is there, following symbolic links as stat does", async () => {
  await assertPathProbeCases(statPathProbe);
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
    assert.deepEqual(usableRecord(store.readPartialRecord(segments)), {
      total: 3,
      mirror: "https://mirror.test/",
    });
  });
});

Deno.test("CacheStore() asks the surelyMissing check it is given before a miss's stat and record read", async () => {
  await withTempDir(async (dir) => {
    const asked: string[] = [];
    let answer = true;
    const store = new CacheStore(dir, {
      surelyMissing: (path) => {
        asked.push(path);
        return answer;
      },
    });
    const segments = ["core", "os", "x86_64", "a-1-1-x86_64.pkg.tar.zst"];
    await Deno.mkdir(join(dir, "core", "os", "x86_64"), { recursive: true });
    await Deno.writeFile(store.finalPath(segments), new Uint8Array(3));
    store.writePartialMeta(segments, { total: 3, mirror: "https://mirror.test/" });
    // The check's "missing" is believed: the files written are not looked at.
    assert.equal(store.statComplete(segments), undefined);
    assert.deepEqual(store.readPartialRecord(segments), { kind: "missing" });
    assert.equal(asked.length, 2);
    assert.ok(asked[0].endsWith("a-1-1-x86_64.pkg.tar.zst"), asked[0]);
    answer = false;
    assert.equal(store.statComplete(segments)?.size, 3);
    assert.equal(store.readPartialRecord(segments).kind, "found");
  });
});
