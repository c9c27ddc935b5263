import assert from "node:assert/strict";
import { dirname, join, relative, sep } from "node:path";
import {
  CacheStore,
  HOT_FILE_MAX_AGE_MS,
  HOT_FILE_MAX_SIZE,
  HOT_FILE_RECHECK_MS,
  HOT_FILES_BUDGET,
  KNOWN_FILES_MAX,
  usableRecord,
} from "../../src/cache/cache_store.ts";
import { HttpError } from "../../src/http/http_error.ts";
import { parseRequestPath, type RequestTarget } from "../../src/repo/request_path.ts";
import { serveCachedFile } from "../../src/app/responses.ts";
import { pathExists } from "../../src/cache/cache_paths.ts";
import { closeQuietly } from "../../src/close_quietly.ts";

const SEGMENTS = ["core", "os", "x86_64", "tiny-1-1-x86_64.pkg.tar.zst"];

/** A clock for the store that only moves when told. */
interface Clock {
  now: number;
}

async function withStore(
  fn: (store: CacheStore, root: string, clock: Clock) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "flexo-cache-store-test-" });
  const clock: Clock = { now: 1000 };
  try {
    await fn(new CacheStore(root, { now: () => clock.now }), root, clock);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function put(store: CacheStore, segments: string[], bytes: Uint8Array): Promise<string> {
  const path = store.finalPath(segments);
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeFile(path, bytes);
  return path;
}

Deno.test("hotFile() finds nothing until loadHot() has read the file", async () => {
  await withStore(async (store) => {
    await put(store, SEGMENTS, new Uint8Array([1, 2, 3]));
    assert.equal(store.hotFile(SEGMENTS), undefined);
    const loaded = await store.loadHot(SEGMENTS);
    assert.deepEqual(loaded?.bytes, new Uint8Array([1, 2, 3]));
    const hot = store.hotFile(SEGMENTS);
    assert.deepEqual(hot?.bytes, new Uint8Array([1, 2, 3]));
    assert.equal(hot?.size, 3);
  });
});

Deno.test("hotFile() drops a file that was deleted or replaced on disk once it checks the disk", async () => {
  await withStore(async (store, _root, clock) => {
    const path = await put(store, SEGMENTS, new Uint8Array([1, 2, 3]));
    await store.loadHot(SEGMENTS);
    // Replaced by another file of the same size with the same modification time: a new inode.
    const other = join(dirname(path), "other");
    await Deno.writeFile(other, new Uint8Array([7, 8, 9]));
    const { mtime } = await Deno.stat(path);
    await Deno.utime(other, mtime!, mtime!);
    await Deno.rename(other, path);
    clock.now += HOT_FILE_RECHECK_MS;
    assert.equal(store.hotFile(SEGMENTS), undefined);
    assert.deepEqual((await store.loadHot(SEGMENTS))?.bytes, new Uint8Array([7, 8, 9]));
    await Deno.remove(path);
    clock.now += HOT_FILE_RECHECK_MS;
    assert.equal(store.hotFile(SEGMENTS), undefined);
    assert.equal(await store.loadHot(SEGMENTS), undefined);
  });
});

Deno.test("hotFile() checks the disk at most every HOT_FILE_RECHECK_MS", async () => {
  await withStore(async (store, _root, clock) => {
    const path = await put(store, SEGMENTS, new Uint8Array([1, 2, 3]));
    await store.loadHot(SEGMENTS);
    await Deno.writeFile(path, new Uint8Array([4, 5, 6, 7]));
    // Changed by another program a moment ago: the complete file as it was, until the next check.
    clock.now += HOT_FILE_RECHECK_MS - 1;
    assert.deepEqual(store.hotFile(SEGMENTS)?.bytes, new Uint8Array([1, 2, 3]));
    clock.now += 1;
    assert.equal(store.hotFile(SEGMENTS), undefined);
  });
});

Deno.test("hotFile() checks the disk at once after a file was removed through its removeIfPresent()", async () => {
  await withStore(async (store) => {
    const path = await put(store, SEGMENTS, new Uint8Array([1, 2, 3]));
    const other = ["core", "os", "x86_64", "other-1-1-x86_64.pkg.tar.zst"];
    const otherPath = await put(store, other, new Uint8Array([4]));
    await store.loadHot(SEGMENTS);
    await store.loadHot(other);
    await store.removeIfPresent(path);
    assert.equal(store.hotFile(SEGMENTS), undefined);
    // The other file is checked too, and is still there.
    assert.deepEqual(store.hotFile(other)?.bytes, new Uint8Array([4]));
    await store.removeIfPresent(otherPath);
    assert.equal(store.hotFile(other), undefined);
  });
});

Deno.test("hotFile() forgets a file read from disk HOT_FILE_MAX_AGE_MS ago, or when the clock went back", async () => {
  await withStore(async (store, _root, clock) => {
    await put(store, SEGMENTS, new Uint8Array([1, 2, 3]));
    await store.loadHot(SEGMENTS);
    clock.now += HOT_FILE_MAX_AGE_MS;
    assert.ok(store.hotFile(SEGMENTS));
    clock.now += 1;
    assert.equal(store.hotFile(SEGMENTS), undefined);
    await store.loadHot(SEGMENTS);
    clock.now -= 1;
    assert.equal(store.hotFile(SEGMENTS), undefined);
  });
});

Deno.test("loadHot() keeps only small files, and at most HOT_FILES_BUDGET bytes of them", async () => {
  await withStore(async (store) => {
    const big = ["core", "os", "x86_64", "big-1-1-x86_64.pkg.tar.zst"];
    await put(store, big, new Uint8Array(HOT_FILE_MAX_SIZE + 1));
    assert.equal(await store.loadHot(big), undefined);
    const count = Math.floor(HOT_FILES_BUDGET / HOT_FILE_MAX_SIZE) + 2;
    const names = Array.from(
      { length: count },
      (_, i) => ["core", "os", "x86_64", `f${i}-1-1-any.pkg.tar.zst`],
    );
    for (const segments of names) {
      await put(store, segments, new Uint8Array(HOT_FILE_MAX_SIZE));
      assert.ok(await store.loadHot(segments));
    }
    // The least recently loaded went first.
    assert.equal(store.hotFile(names[0]), undefined);
    assert.equal(store.hotFile(names[1]), undefined);
    assert.ok(store.hotFile(names[count - 1]));
  });
});

Deno.test("serveCachedFile() serves a hot file's bytes again and again, and ranges of them", async () => {
  await withStore(async (store) => {
    const bytes = crypto.getRandomValues(new Uint8Array(4096));
    await put(store, SEGMENTS, bytes);
    const hot = (await store.loadHot(SEGMENTS))!;
    const options = { origin: "Cache" as const, contentType: "application/octet-stream" };
    for (let i = 0; i < 3; i++) {
      const served = await serveCachedFile(new Request("http://x/"), hot, options);
      assert.equal(served.response.status, 200);
      assert.equal(served.response.headers.get("content-length"), "4096");
      assert.deepEqual(new Uint8Array(await served.response.arrayBuffer()), bytes);
    }
    const ranged = await serveCachedFile(
      new Request("http://x/", { headers: { Range: "bytes=10-19" } }),
      hot,
      options,
    );
    assert.equal(ranged.response.status, 206);
    assert.equal(ranged.response.headers.get("content-range"), "bytes 10-19/4096");
    assert.deepEqual(new Uint8Array(await ranged.response.arrayBuffer()), bytes.subarray(10, 20));
    const etag = ranged.response.headers.get("etag")!;
    const cached = await serveCachedFile(
      new Request("http://x/", { headers: { "If-None-Match": etag } }),
      hot,
      options,
    );
    assert.equal(cached.response.status, 304);
    assert.equal(cached.response.headers.get("content-type"), null);
  });
});

Deno.test("CacheStore.commit() sets the modification time to Last-Modified and the access time to now", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-store-" });
  try {
    const store = new CacheStore(dir);
    const segments = ["core", "os", "x86_64", "a-1-1-any.pkg.tar.zst"];
    const file = await store.openPartial(segments, { truncate: true });
    await file.write(new Uint8Array([1, 2, 3]));
    file.close();
    const lastModified = Date.UTC(2024, 0, 2, 3, 4, 5);
    const before = Date.now();
    const committed = await store.commit(segments, { lastModified });
    assert.equal(committed.mtime.getTime(), lastModified);
    const info = await Deno.stat(committed.path);
    assert.ok(info.atime!.getTime() >= before - 1000, "a fresh download counts as just used");
    assert.equal(await store.partialSize(segments), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CacheStore.finalPath() and partialPath() refuse segments that leave or name the cache directory", () => {
  const store = new CacheStore("/var/cache/flexo/pkg");
  for (
    const segments of [[], [".."], ["core", "..", ".."], ["."], ["a/../../b"], [
      "core",
      "../../../etc/passwd",
    ]]
  ) {
    assert.throws(() => store.finalPath(segments), /outside the cache directory/, JSON.stringify(segments));
  }
  assert.throws(() => store.partialPath([".."]), /outside the cache directory/);
  assert.equal(store.finalPath(["core", "a.db"]), "/var/cache/flexo/pkg/core/a.db");
});

Deno.test("CacheStore.finalPath() keeps every path parseRequestPath() accepts inside the cache directory", () => {
  const store = new CacheStore("/srv/cache");
  const customRepoNames = new Set(["archzfs"]);
  const raws = [
    "/core/os/x86_64/a.pkg.tar.zst",
    "/core/os/x86_64/big-1%3A2-1-x86_64.pkg.tar.zst",
    "/a/b/c/d/e/f/g",
    "/custom_repo/archzfs/x/y/z.db",
    "/extra/os/x86_64/..a", // starts with '.', refused
    "/extra/os/x86_64/a..",
    "/extra/os/x86_64/~",
    "/extra/os/x86_64/%7E",
    "/%C3%A9/%E2%88%95", // é and DIVISION SLASH are ordinary characters
  ];
  let accepted = 0;
  for (const raw of raws) {
    let target: RequestTarget;
    try {
      target = parseRequestPath(raw, { customRepoNames });
    } catch (error) {
      assert.ok(error instanceof HttpError && error.status === 400, raw);
      continue;
    }
    accepted++;
    const full = store.finalPath(target.cacheSegments);
    assert.ok(full.startsWith("/srv/cache/"), full);
    assert.deepEqual(relative("/srv/cache", full).split(sep), target.cacheSegments, raw);
  }
  assert.equal(accepted, raws.length - 1);
});

Deno.test("CacheStore.knownFile() knows a complete file only once statComplete() has found it", async () => {
  await withStore(async (store) => {
    const path = await put(store, SEGMENTS, new Uint8Array([1, 2, 3]));
    assert.equal(store.knownFile(SEGMENTS), undefined);
    const missing = ["core", "os", "x86_64", "missing-1-1-x86_64.pkg.tar.zst"];
    assert.equal(await store.statComplete(missing), undefined);
    assert.equal(store.knownFile(missing), undefined);
    const found = await store.statComplete(SEGMENTS);
    const known = store.knownFile([...SEGMENTS]);
    assert.deepEqual([known?.path, known?.size, known?.mtime], [path, 3, found?.mtime]);
  });
});

Deno.test("CacheStore.knownFile() knows the new file when commit() puts one in the place of another", async () => {
  await withStore(async (store) => {
    await put(store, SEGMENTS, new Uint8Array([1, 2, 3]));
    await store.statComplete(SEGMENTS);
    assert.equal(store.knownFile(SEGMENTS)?.size, 3);
    const file = await store.openPartial(SEGMENTS, { truncate: true });
    await file.write(new Uint8Array([4, 5, 6, 7]));
    file.close();
    await store.commit(SEGMENTS, {});
    // The committed file, never the one it replaced: the next request for it can skip routing.
    assert.equal(store.knownFile(SEGMENTS)?.size, 4);
    assert.equal(store.hotFile(SEGMENTS), undefined);
  });
});

Deno.test("CacheStore.knownFile() drops a file removed through its removeIfPresent() at its next call", async () => {
  await withStore(async (store) => {
    const path = await put(store, SEGMENTS, new Uint8Array([1, 2, 3]));
    const other = ["core", "os", "x86_64", "other-1-1-x86_64.pkg.tar.zst"];
    await put(store, other, new Uint8Array([4]));
    await store.statComplete(SEGMENTS);
    await store.statComplete(other);
    await store.removeIfPresent(path);
    assert.equal(store.knownFile(SEGMENTS), undefined);
    // The other file is checked too, and is still there.
    assert.equal(store.knownFile(other)?.size, 1);
  });
});

Deno.test("CacheStore.knownFile() drops a file replaced on disk once HOT_FILE_RECHECK_MS has passed", async () => {
  await withStore(async (store, _root, clock) => {
    const path = await put(store, SEGMENTS, new Uint8Array([1, 2, 3]));
    await store.statComplete(SEGMENTS);
    await Deno.writeFile(path, new Uint8Array([4, 5, 6, 7]));
    // Changed by another program a moment ago: the file as it was, until the next check.
    clock.now += HOT_FILE_RECHECK_MS - 1;
    assert.equal(store.knownFile(SEGMENTS)?.size, 3);
    clock.now += 1;
    assert.equal(store.knownFile(SEGMENTS), undefined);
    assert.equal(store.knownFile(SEGMENTS), undefined, "it stays forgotten");
    await store.statComplete(SEGMENTS);
    clock.now += HOT_FILE_RECHECK_MS;
    assert.equal(store.knownFile(SEGMENTS)?.size, 4, "an unchanged file stays known after a check");
  });
});

Deno.test("CacheStore.knownFile() keeps at most KNOWN_FILES_MAX files, the least recently found going first", async () => {
  await withStore(async (store) => {
    const names = Array.from(
      { length: KNOWN_FILES_MAX + 1 },
      (_, i) => ["core", "os", "x86_64", `f${i}-1-1-any.pkg.tar.zst`],
    );
    await Deno.mkdir(dirname(store.finalPath(names[0])), { recursive: true });
    for (const segments of names) Deno.writeFileSync(store.finalPath(segments), new Uint8Array(1));
    for (const segments of names.slice(0, KNOWN_FILES_MAX - 1)) await store.statComplete(segments);
    assert.ok(store.knownFile(names[0]) && store.knownFile(names[KNOWN_FILES_MAX - 2]));
    // Found again: now the most recent.
    await store.statComplete(names[0]);
    await store.statComplete(names[KNOWN_FILES_MAX - 1]);
    assert.ok(store.knownFile(names[1]), "KNOWN_FILES_MAX files are kept");
    await store.statComplete(names[KNOWN_FILES_MAX]);
    assert.equal(store.knownFile(names[1]), undefined);
    assert.ok(store.knownFile(names[0]));
    assert.ok(store.knownFile(names[2]));
    assert.ok(store.knownFile(names[KNOWN_FILES_MAX]));
  });
});

Deno.test("Two CacheStores in one process do not share removals: each checks the disk after its own", async () => {
  await withStore(async (store, root, clock) => {
    const other = new CacheStore(root, { now: () => clock.now });
    const path = await put(store, SEGMENTS, new Uint8Array([1, 2, 3]));
    for (const s of [store, other]) {
      await s.loadHot(SEGMENTS);
      s.statComplete(SEGMENTS);
    }
    await other.removeIfPresent(path);
    assert.equal(other.hotFile(SEGMENTS), undefined, "the store that removed it checks at once");
    assert.equal(other.knownFile(SEGMENTS), undefined);
    // The first store was not told: the file as it was, until its next check (as for a change by hand).
    assert.deepEqual(store.hotFile(SEGMENTS)?.bytes, new Uint8Array([1, 2, 3]));
    assert.equal(store.knownFile(SEGMENTS)?.size, 3);
    clock.now += HOT_FILE_RECHECK_MS;
    assert.equal(store.hotFile(SEGMENTS), undefined);
    assert.equal(store.knownFile(SEGMENTS), undefined);
  });
});

Deno.test("CacheStore's lookups of metadata and the partial file are synchronous, not promises", async () => {
  await withStore(async (store) => {
    await put(store, SEGMENTS, new Uint8Array([1]));
    const file = store.openPartial(SEGMENTS, { truncate: true });
    assert.ok(!(file instanceof Promise));
    file.writeSync(new Uint8Array([1, 2]));
    file.close();
    const results = [
      store.statComplete(SEGMENTS),
      store.partialSize(SEGMENTS),
      store.writePartialMeta(SEGMENTS, { total: 2 }),
      usableRecord(store.readPartialRecord(SEGMENTS)),
    ];
    assert.ok(results.every((result) => !(result instanceof Promise)), "answered from the kernel's caches");
    assert.deepEqual(results.slice(1), [2, undefined, { total: 2 }]);
    // An `await` of them, as in the callers, still works.
    assert.equal(await store.partialSize(SEGMENTS), 2);
  });
});

Deno.test("usableRecord() takes an invalid record for none; CacheStore.readPartialRecord() says why", async () => {
  await withStore(async (store) => {
    assert.deepEqual(store.readPartialRecord(SEGMENTS), { kind: "missing" });
    store.writePartialMeta(SEGMENTS, { total: 10, mirror: "http://a.test/" });
    assert.deepEqual(usableRecord(store.readPartialRecord(SEGMENTS)), {
      total: 10,
      mirror: "http://a.test/",
    });
    await Deno.writeTextFile(store.metaPath(SEGMENTS), '{"total":"ten"}');
    assert.equal(usableRecord(store.readPartialRecord(SEGMENTS)), undefined, "not resumable, and no crash");
    const read = store.readPartialRecord(SEGMENTS);
    assert.equal(read.kind, "invalid");
    assert.ok(read.kind === "invalid" && read.message.includes(store.metaPath(SEGMENTS)), "names the file");
    await store.discardPartial(SEGMENTS);
    assert.deepEqual(store.readPartialRecord(SEGMENTS), { kind: "missing" });
  });
});

Deno.test("CacheStore.commit() removes a download's record when it has one, and otherwise leaves hot files unchecked", async () => {
  await withStore(async (store) => {
    await put(store, SEGMENTS, new Uint8Array([1, 2, 3]));
    await store.loadHot(SEGMENTS);
    // Replaced on disk behind the store's back: only a check of the disk finds out.
    await Deno.remove(store.finalPath(SEGMENTS));
    await put(store, SEGMENTS, new Uint8Array([9]));
    const small = ["core", "os", "x86_64", "small-1-1-x86_64.pkg.tar.zst"];
    const file = await store.openPartial(small, { truncate: true });
    await file.write(new Uint8Array([4]));
    file.close();
    await store.commit(small, {});
    assert.deepEqual(store.hotFile(SEGMENTS)?.bytes, new Uint8Array([1, 2, 3]), "no removal: no check yet");
    const large = ["core", "os", "x86_64", "large-1-1-x86_64.pkg.tar.zst"];
    const partial = await store.openPartial(large, { truncate: true });
    await partial.write(new Uint8Array([5, 6]));
    partial.close();
    store.writePartialMeta(large, { total: 2 });
    await store.commit(large, {});
    assert.equal(usableRecord(store.readPartialRecord(large)), undefined, "the record is gone");
    assert.equal(store.hotFile(SEGMENTS), undefined, "a removal has the hot files check the disk");
  });
});

Deno.test("CacheStore.commit() with the open partial file makes the folder, sets the times, closes it, and remembers the moved file", async () => {
  await withStore(async (store, root) => {
    const file = await store.openPartial(SEGMENTS, { truncate: true });
    try {
      await file.write(new Uint8Array([1, 2, 3, 4]));
      assert.equal(await pathExists(join(root, "core")), false, "no folder for the file yet");
      const lastModified = Date.UTC(2024, 0, 2, 3, 4, 5);
      const committed = await store.commit(SEGMENTS, { lastModified, file });
      assert.throws(() => file.statSync(), Deno.errors.BadResource, "closed by the commit");
      assert.equal(committed.path, store.finalPath(SEGMENTS));
      assert.deepEqual([committed.size, committed.mtime.getTime()], [4, lastModified]);
      const info = await Deno.stat(committed.path);
      assert.equal(info.mtime?.getTime(), lastModified);
      assert.equal(await store.partialSize(SEGMENTS), 0, "moved, not copied");
      // A removal makes every known file check the disk again: the one remembered must still be the same file
      // (its change time read after the move, which changed it).
      await store.removeIfPresent(join(root, "nothing-here"));
      assert.equal(store.knownFile(SEGMENTS)?.size, 4);
    } finally {
      closeQuietly(file); // closed by the commit, unless it failed
    }
  });
});
