import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { FileMemo, HOT_FILE_RECHECK_MS, readSmallFile } from "../../src/cache/file_memo.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const SEGMENTS = ["core", "os", "x86_64", "a-1-1-any.pkg.tar.zst.sig"];

async function put(dir: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, ...SEGMENTS);
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeFile(path, bytes);
  return path;
}

Deno.test("FileMemo counts the removals noted on it, and only those", async () => {
  await withTempDir(async (dir) => {
    const path = await put(dir, new Uint8Array([1, 2]));
    const clock = { now: 0 };
    const [one, other] = [new FileMemo(() => clock.now), new FileMemo(() => clock.now)];
    for (const memo of [one, other]) {
      assert.ok(memo.stat(SEGMENTS, path));
      assert.ok(await memo.load(SEGMENTS, path));
    }
    await Deno.remove(path);
    one.noteRemoval();
    assert.deepEqual([one.removals, other.removals], [1, 0]);
    assert.equal(one.known(SEGMENTS), undefined, "a noted removal makes the next use check the disk");
    assert.equal(one.hot(SEGMENTS), undefined);
    assert.equal(other.known(SEGMENTS)?.size, 2, "the other memo checks at its own pace");
    assert.equal(other.hot(SEGMENTS)?.size, 2);
    clock.now += HOT_FILE_RECHECK_MS;
    assert.equal(other.known(SEGMENTS), undefined);
    assert.equal(other.hot(SEGMENTS), undefined);
  });
});

Deno.test("FileMemo.stat() finds only regular files, synchronously", async () => {
  await withTempDir(async (dir) => {
    const path = await put(dir, new Uint8Array(3));
    const memo = new FileMemo(() => 0);
    const found = memo.stat(SEGMENTS, path);
    assert.ok(!(found instanceof Promise), "no promise: the kernel answers from its caches");
    assert.equal(found?.size, 3);
    assert.equal(memo.stat(["core"], dirname(path)), undefined, "a folder");
    assert.equal(memo.stat(["x"], join(dir, "missing")), undefined);
    assert.equal(memo.stat(["y"], join(path, "below-a-file")), undefined);
  });
});

Deno.test("FileMemo.forget() forgets a file both as hot and as known", async () => {
  await withTempDir(async (dir) => {
    const path = await put(dir, new Uint8Array(3));
    const memo = new FileMemo(() => 0);
    memo.stat(SEGMENTS, path);
    await memo.load(SEGMENTS, path);
    memo.forget(SEGMENTS);
    assert.equal(memo.known(SEGMENTS), undefined);
    assert.equal(memo.hot(SEGMENTS), undefined);
  });
});

Deno.test("FileMemo.load() shares one read among the calls for a file while it runs, and reads again after", async () => {
  await withTempDir(async (dir) => {
    const path = await put(dir, new Uint8Array([1, 2, 3]));
    const memo = new FileMemo(() => 0);
    const [one, two] = [memo.load(SEGMENTS, path), memo.load([...SEGMENTS], path)];
    assert.equal(one, two, "hits of a file not in memory yet, many at once, read it once");
    assert.equal((await one)?.size, 3);
    await Deno.writeFile(path, new Uint8Array(5));
    const again = memo.load(SEGMENTS, path);
    assert.notEqual(again, one, "a call after the read ended reads again");
    assert.equal((await again)?.size, 5);
  });
});

Deno.test("readSmallFile() reads files up to the limit, and nothing else", async () => {
  await withTempDir(async (dir) => {
    const path = await put(dir, new Uint8Array([1, 2, 3]));
    assert.deepEqual((await readSmallFile(path, 3))?.bytes, new Uint8Array([1, 2, 3]));
    assert.equal(await readSmallFile(path, 2), undefined, "larger than the limit");
    assert.equal(await readSmallFile(join(dir, "missing"), 10), undefined);
    assert.equal(await readSmallFile(dirname(path), 1 << 20), undefined, "a folder");
  });
});
