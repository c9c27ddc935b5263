/**
 * The partial file of a download: made while the first mirror is asked, and its record written only once a
 * second chunk arrives, so that neither lies between a mirror's answer and the first bytes for clients.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { CacheStore } from "../../src/cache/cache_store.ts";
import { PARTIAL_RECORD_SUFFIX } from "../../src/cache/partial_records.ts";
import { statPathProbe } from "../../src/cache/surely_missing.ts";
import { PartialFile, RECORD_AFTER_BYTES } from "../../src/download/partial_file.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { fillUp, mountTmpfs, umount } from "../helpers/fault_tools.ts";
import { gatedMirror, testBytes } from "../helpers/fake_fetch.ts";
import { pathExists } from "../../src/cache/cache_paths.ts";
import { startTestDownload } from "../helpers/test_download.ts";

const SEGMENTS = ["core", "os", "x86_64", "zstd-1.5.6-1-x86_64.pkg.tar.zst"];

/** A store whose background creation of partial files waits for `allow`, or fails with `failure`. */
class GatedStore extends CacheStore {
  readonly allow = Promise.withResolvers<void>();
  created = false;
  failure?: Error;

  override async createPartial(segments: readonly string[]): Promise<Deno.FsFile> {
    await this.allow.promise;
    if (this.failure) throw this.failure;
    const file = await super.createPartial(segments);
    this.created = true;
    return file;
  }
}

Deno.test("PartialFile.prepare() makes the file in the background, and open() takes that file", async () => {
  await withTempDir(async (dir) => {
    const store = new GatedStore(dir);
    const partial = new PartialFile(store, SEGMENTS);
    partial.prepare();
    assertEquals(await pathExists(store.partialPath(SEGMENTS)), false, "not made before the test allows it");
    store.allow.resolve();
    const file = await partial.open({ truncate: false });
    assert(store.created, "open() waited for the file being made");
    assertEquals(partial.file, file);
    await file.write(new Uint8Array([1, 2, 3]));
    await partial.close();
    assertEquals(partial.file, undefined);
    assertEquals(await Deno.readFile(store.partialPath(SEGMENTS)), new Uint8Array([1, 2, 3]));
  });
});

Deno.test("PartialFile.open() opens the file itself after prepare() failed", async () => {
  await withTempDir(async (dir) => {
    const store = new GatedStore(dir);
    store.failure = new Error("the thread pool is gone");
    store.allow.resolve();
    const partial = new PartialFile(store, SEGMENTS);
    partial.prepare();
    await partial.settle();
    assertEquals(partial.file, undefined, "nothing adopted from a failed creation");
    const file = await partial.open({ truncate: true });
    assertEquals(partial.file, file);
    await partial.close();
    assert(await pathExists(store.partialPath(SEGMENTS)));
  });
});

Deno.test("PartialFile.close() waits for a creation still running, so that a removal after it is final", async () => {
  await withTempDir(async (dir) => {
    const store = new GatedStore(dir);
    const partial = new PartialFile(store, SEGMENTS);
    partial.prepare();
    let closed = false;
    const closing = partial.close().then(() => closed = true);
    await Promise.resolve();
    assertEquals(closed, false, "close() waits for the creation");
    store.allow.resolve();
    await closing;
    assert(store.created);
    await store.discardPartial(SEGMENTS);
    assertEquals(await pathExists(store.partialPath(SEGMENTS)), false);
  });
});

Deno.test("PartialFile.writeRecordIfDue() writes a described record once RECORD_AFTER_BYTES are on disk, once", async () => {
  await withTempDir(async (dir) => {
    const store = new CacheStore(dir);
    let records = 0;
    const write = store.writePartialMeta.bind(store);
    store.writePartialMeta = (segments, meta) => (records++, write(segments, meta));
    const partial = new PartialFile(store, SEGMENTS);
    await partial.open({ truncate: true });
    partial.writeRecordIfDue();
    assertEquals(records, 0, "nothing described, nothing due");
    partial.describe({ total: 5_000_000, lastModified: 1_700_000_000_000, mirror: "http://mirror-a.test/" });
    partial.writeRecordIfDue(RECORD_AFTER_BYTES - 1);
    assertEquals(records, 0, "not before RECORD_AFTER_BYTES");
    partial.writeRecordIfDue(RECORD_AFTER_BYTES);
    partial.writeRecordIfDue(RECORD_AFTER_BYTES + 1);
    const record = store.readPartialRecord(SEGMENTS);
    assertEquals([records, record.kind === "found" ? record.meta.total : record.kind], [1, 5_000_000]);
    await partial.discard();
    assertEquals(store.readPartialRecord(SEGMENTS).kind, "missing", "discard() removes the record too");
    assertEquals(await pathExists(store.partialPath(SEGMENTS)), false);
  });
});

Deno.test("PartialFile.commit() flushes the file and hands it to the cache, which closes it", async () => {
  await withTempDir(async (dir) => {
    const store = new CacheStore(dir);
    const partial = new PartialFile(store, SEGMENTS);
    partial.resume({ meta: {}, noRecord: true });
    const file = await partial.open({ truncate: true });
    await file.write(new Uint8Array([4, 5, 6]));
    const committed = await partial.commit(1_700_000_000_000);
    assertEquals([committed.size, committed.mtime.getTime()], [3, 1_700_000_000_000]);
    assertEquals(partial.file, undefined, "forgotten: the commit closed it");
    await partial.close();
    assertEquals(await Deno.readFile(store.finalPath(SEGMENTS)), new Uint8Array([4, 5, 6]));
  });
});

/** A download of `data` from a gated mirror into `store`. */
function gatedDownload(store: CacheStore, data: Uint8Array) {
  const { fetch, gate } = gatedMirror({ "content-length": String(data.byteLength) });
  const download = startTestDownload(store, fetch, {
    segments: SEGMENTS,
    mirrors: ["http://mirror-a.test/"],
    rules: { keepPartialOnFailure: true },
    missing: true,
  });
  return { download, gate };
}

Deno.test("Download writes the record of its partial file once RECORD_AFTER_BYTES are on disk, not before", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(RECORD_AFTER_BYTES + 600_000, 5);
    const store = new CacheStore(dir);
    const { download, gate } = gatedDownload(store, data);
    assertEquals((await download.head).status, "ok");
    gate.push(data.slice(0, 1000));
    while (download.written < 1000) await download.changed();
    assertEquals(
      store.readPartialRecord(SEGMENTS).kind,
      "missing",
      "the first chunk went out without a record",
    );
    assert(await pathExists(store.partialPath(SEGMENTS)));
    gate.push(data.slice(1000, RECORD_AFTER_BYTES));
    while (download.written < RECORD_AFTER_BYTES) await download.changed();
    assertEquals(store.readPartialRecord(SEGMENTS).kind, "missing", "none while less is on disk");
    gate.push(data.slice(RECORD_AFTER_BYTES));
    while (download.written < data.byteLength) await download.changed();
    const record = store.readPartialRecord(SEGMENTS);
    assertEquals(record.kind === "found" ? record.meta.total : record.kind, data.byteLength);
    gate.end();
    await download.finished;
    assertEquals(download.state, "complete");
    assertEquals(store.readPartialRecord(SEGMENTS).kind, "missing", "removed by the commit");
  });
});

Deno.test("Download of a file no larger than RECORD_AFTER_BYTES writes no record of its partial file", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(RECORD_AFTER_BYTES, 6);
    const store = new CacheStore(dir);
    let records = 0;
    const write = store.writePartialMeta.bind(store);
    store.writePartialMeta = (segments, meta) => (records++, write(segments, meta));
    const { download, gate } = gatedDownload(store, data);
    assertEquals((await download.head).status, "ok");
    for (let at = 0; at < data.byteLength; at += 100_000) gate.push(data.slice(at, at + 100_000));
    gate.end();
    await download.finished;
    assertEquals([download.state, records], ["complete", 0]);
    assertEquals(await Deno.readFile(store.finalPath(SEGMENTS)), data);
  });
});

Deno.test("Download hands its partial file to the commit, which closes it once (no second close throws)", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(50_000, 7);
    const store = new CacheStore(dir);
    const closes: string[] = [];
    const commit = store.commit.bind(store);
    store.commit = (segments, options) => {
      const file = options.file!;
      const close = file.close.bind(file);
      file.close = () => {
        try {
          close();
          closes.push("closed");
        } catch (error) {
          closes.push((error as Error).name);
          throw error;
        }
      };
      return commit(segments, options);
    };
    const { download, gate } = gatedDownload(store, data);
    assertEquals((await download.head).status, "ok");
    gate.push(data);
    gate.end();
    await download.finished;
    assertEquals([download.state, closes], ["complete", ["closed"]]);
    assertEquals(await Deno.readFile(store.finalPath(SEGMENTS)), data);
  });
});

Deno.test("Download that found no record at its start and wrote none commits without looking for one again", async () => {
  await withTempDir(async (dir) => {
    const asked: string[] = [];
    const store = new CacheStore(dir, {
      surelyMissing: (path) => (asked.push(path), statPathProbe(path)),
    });
    const records = () => asked.filter((path) => path.endsWith(PARTIAL_RECORD_SUFFIX)).length;
    const data = testBytes(50_000, 8);
    const { download, gate } = gatedDownload(store, data);
    assertEquals((await download.head).status, "ok");
    assertEquals(records(), 1, "looked for at the start");
    gate.push(data);
    gate.end();
    await download.finished;
    assertEquals([download.state, records()], ["complete", 1]);
  });
});

Deno.test("Download removes at its commit a record it found at its start and did not resume from", async () => {
  await withTempDir(async (dir) => {
    const store = new CacheStore(dir);
    // A record without its partial file (a crash between the two): nothing to resume, but there to remove.
    store.writePartialMeta(SEGMENTS, { total: 50_000 });
    const data = testBytes(50_000, 9);
    const { download, gate } = gatedDownload(store, data);
    assertEquals((await download.head).status, "ok");
    gate.push(data);
    gate.end();
    await download.finished;
    assertEquals(download.state, "complete");
    assertEquals(store.readPartialRecord(SEGMENTS).kind, "missing", "removed by the commit");
  });
});

Deno.test("PartialFile.writeRecordIfDue() on a full disk does not throw, removes the earlier record and leaves no temporary file", async (t) => {
  await withTempDir(async (dir) => {
    if (!(await mountTmpfs(dir, "256k"))) {
      await t.step({ name: "skipped: cannot mount a tmpfs here (needs root)", ignore: true, fn: () => {} });
      return;
    }
    try {
      const store = new CacheStore(dir);
      // The record of an earlier answer, which must not describe the bytes of another one after a restart.
      store.writePartialMeta(SEGMENTS, { total: 1000 });
      await fillUp(`${dir}/filler`);
      const partial = new PartialFile(store, SEGMENTS);
      partial.describe({ total: 2000, mirror: `http://b.test/${"x".repeat(8192)}` });
      assertEquals(partial.writeRecordIfDue(), false, "the file cannot be resumed");
      assertEquals(store.readPartialRecord(SEGMENTS), { kind: "missing" });
      const folder = store.partialPath(SEGMENTS).slice(0, -SEGMENTS.at(-1)!.length);
      assertEquals(await Array.fromAsync(Deno.readDir(folder)), [], "no record, no temporary file");
      await partial.close();
    } finally {
      await umount(dir);
    }
  });
});
