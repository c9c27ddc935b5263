import assert from "node:assert/strict";
import { join } from "node:path";
import { IntegrityCheck } from "../../src/download/download_integrity.ts";
import { sha256 } from "../helpers/bytes.ts";
import { fakeFetch, serveBytes, testBytes } from "../helpers/fake_fetch.ts";
import { startTestDownload } from "../helpers/test_download.ts";
import { CacheStore } from "../../src/cache/cache_store.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const DATA = testBytes(600_000, 21);
const PATH = "core/os/x86_64/a-1-1-any.pkg.tar.zst";

Deno.test("IntegrityCheck.mismatch() accepts the expected bytes fed in any chunking", async () => {
  const check = await IntegrityCheck.start({ size: DATA.length, sha256: sha256(DATA) });
  check.update(DATA.subarray(0, 1), "http://a.test/");
  check.update(DATA.subarray(1, 300_000), "http://b.test/");
  check.update(DATA.subarray(300_000), "http://a.test/");
  assert.equal(check.mismatch(DATA.length, PATH), undefined);
  assert.deepEqual([...check.contributors], ["http://a.test/", "http://b.test/"]);
});

Deno.test("IntegrityCheck.mismatch() takes the first 32 hex digits of a SHA-256 as the expected digest, never fewer", async () => {
  const digest = sha256(DATA);
  const check = async (expected: string, data = DATA) => {
    const integrity = await IntegrityCheck.start({ size: DATA.length, sha256: expected });
    integrity.update(data, "http://a.test/");
    return integrity.mismatch(data.length, PATH);
  };
  assert.equal(await check(digest.slice(0, 32)), undefined, "16 bytes of the digest");
  const corrupt = DATA.slice();
  corrupt[99] ^= 1;
  assert.match(
    (await check(digest.slice(0, 32), corrupt)) ?? "",
    /expected 600000 bytes with [0-9a-f]{32}\.\.\.\)/,
  );
  assert.notEqual(await check(digest.slice(0, 31)), undefined, "31 digits are too few to vouch for a file");
  assert.notEqual(await check(""), undefined, "an empty digest vouches for nothing");
});

Deno.test("IntegrityCheck.mismatch() says what differs: size or SHA-256", async () => {
  const expected = { size: DATA.length, sha256: sha256(DATA) };
  const corrupt = DATA.slice();
  corrupt[1234] ^= 0xff;
  const changed = await IntegrityCheck.start(expected);
  changed.update(corrupt, "http://a.test/");
  const reason = changed.mismatch(DATA.length, PATH);
  assert.match(
    reason ?? "",
    /^core\/os\/x86_64\/a-1-1-any.pkg.tar.zst does not match the repository database/,
  );
  assert.ok(reason?.includes(`${DATA.length} bytes with SHA-256 ${sha256(corrupt)}`), reason);
  assert.ok(reason?.includes(`expected ${DATA.length} bytes with ${expected.sha256}`), reason);
  assert.match(reason ?? "", /retry to fetch it from another mirror$/);

  const short = await IntegrityCheck.start(expected);
  short.update(DATA.subarray(0, 100), "http://a.test/");
  assert.match(short.mismatch(100, PATH) ?? "", /\(100 bytes with SHA-256 /);
});

Deno.test("IntegrityCheck.updateFromFile() hashes the start of a partial file, and refuses a short one", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "partial");
    await Deno.writeFile(path, DATA.subarray(0, 400_000));
    const check = await IntegrityCheck.start({ size: DATA.length, sha256: sha256(DATA) });
    await check.updateFromFile(path, 300_000);
    check.update(DATA.subarray(300_000), "http://b.test/");
    assert.equal(check.mismatch(DATA.length, PATH), undefined);
    assert.deepEqual([...check.contributors], ["http://b.test/"], "bytes from disk name no mirror");
    const again = await IntegrityCheck.start({ size: DATA.length, sha256: sha256(DATA) });
    await assert.rejects(again.updateFromFile(path, 500_000), /partial is shorter than recorded/);
  });
});

/** Leaves what an interrupted download of an earlier build of PATH left: 100 bytes of a file of 500. */
function leaveEarlierBuildsPartial(store: CacheStore): string[] {
  const segments = PATH.split("/");
  const file = store.openPartial(segments, { truncate: true });
  file.writeSync(testBytes(100, 7));
  file.close();
  store.writePartialMeta(segments, { total: 500, mirror: "http://mirror-a.test/" });
  return segments;
}

Deno.test("Download.start() starts over a partial file whose record announces another size than the database says", async () => {
  await withTempDir(async (dir) => {
    // Left by an interrupted download of an earlier build of the file (a custom repository rebuilt it under
    // the same name): 100 bytes of a file announced as 500 bytes long.
    const store = new CacheStore(dir);
    const SEGMENTS = leaveEarlierBuildsPartial(store);
    const { fetch } = fakeFetch((_url, req) => serveBytes(DATA, req));
    const download = startTestDownload(store, fetch, {
      segments: SEGMENTS,
      mirrors: ["http://mirror-a.test/"],
      rules: { keepPartialOnFailure: true },
      expect: { size: DATA.length, sha256: sha256(DATA) },
    });
    await download.finished;
    assert.equal(download.error?.message, undefined);
    assert.deepEqual(await Deno.readFile(store.finalPath(SEGMENTS)), DATA);
  });
});

Deno.test("Download.start() keeps no partial file after every mirror's file had another length than its record", async () => {
  await withTempDir(async (dir) => {
    // Left by an interrupted download of an earlier build (no database lists the file): 100 bytes of 500.
    const store = new CacheStore(dir);
    const SEGMENTS = leaveEarlierBuildsPartial(store);
    const { fetch } = fakeFetch((_url, req) => serveBytes(DATA, req));
    const start = () =>
      startTestDownload(store, fetch, {
        segments: SEGMENTS,
        mirrors: ["http://mirror-a.test/", "http://mirror-b.test/"],
        rules: { keepPartialOnFailure: true },
      });
    // Every mirror answers the resume with the new build's length: this order fails, and forgets the bytes.
    const first = start();
    await first.finished;
    assert.match(first.error?.message ?? "", /announced \d+ bytes instead of 500/);
    assert.equal(await Deno.stat(store.partialPath(SEGMENTS)).then(() => "kept", () => "gone"), "gone");
    // So the next order gets the file, where it used to fail the same way for good.
    const second = start();
    await second.finished;
    assert.equal(second.error?.message, undefined);
    assert.deepEqual(await Deno.readFile(store.finalPath(SEGMENTS)), DATA);
  });
});
