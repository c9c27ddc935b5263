/**
 * The download's rule for what clients may have: the file's last byte only once the download has verified the
 * file, and then at once, before the disk flush and the commit to the cache; and a database revalidation that
 * upstream answers 304 leaves the cache directory alone.
 */
import nodeAssert from "node:assert/strict";
import { createHash } from "node:crypto";
import { assertEquals } from "../helpers/assert.ts";

import { type CachedFile, CacheStore } from "../../src/cache/cache_store.ts";
import { Download } from "../../src/download/download.ts";
import { followDownload } from "../../src/download/live_reader.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { gatedMirror, testBytes } from "../helpers/fake_fetch.ts";
import { pathExists } from "../../src/cache/cache_paths.ts";
import { startTestDownload } from "../helpers/test_download.ts";

const SEGMENTS = ["core", "os", "x86_64", "zstd-1.5.6-1-x86_64.pkg.tar.zst"];
const DB_SEGMENTS = ["core", "os", "x86_64", "core.db"];
const A = "http://mirror-a.test/";
const B = "http://mirror-b.test/";

/** A cache store whose partial files wait for the test before they flush, and whose commit may fail. */
class HeldStore extends CacheStore {
  /** Resolves when the download asks to flush its partial file. */
  readonly syncAsked = Promise.withResolvers<void>();
  /** Whether it did. */
  flushed = false;
  /** The flush goes on once this resolves. */
  readonly syncAllowed = Promise.withResolvers<void>();
  /** When set, commit() fails with it. */
  commitError?: Error;

  override openPartial(
    segments: readonly string[],
    options: { truncate: boolean },
  ): Deno.FsFile {
    return this.#held(super.openPartial(segments, options));
  }

  override async createPartial(segments: readonly string[]): Promise<Deno.FsFile> {
    return this.#held(await super.createPartial(segments));
  }

  #held(file: Deno.FsFile): Deno.FsFile {
    const syncData = file.syncData.bind(file);
    file.syncData = async () => {
      this.flushed = true;
      this.syncAsked.resolve();
      await this.syncAllowed.promise;
      await syncData();
    };
    return file;
  }

  override commit(
    segments: readonly string[],
    options: { lastModified?: number; file?: Deno.FsFile },
  ): Promise<CachedFile> {
    if (this.commitError) return Promise.reject(this.commitError);
    return super.commit(segments, options);
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function newDownload(
  store: CacheStore,
  fetch: typeof globalThis.fetch,
  options: { segments?: string[]; expect?: { size: number; sha256: string }; ifModifiedSince?: number } = {},
): Download {
  return startTestDownload(store, fetch, {
    segments: options.segments ?? SEGMENTS,
    mirrors: [A, B],
    rules: { resumeAcrossMirrors: false },
    expect: options.expect,
    ifModifiedSince: options.ifModifiedSince,
  });
}

/** Fails instead of hanging when `promise` does not settle within a generous limit. */
async function within<T>(promise: Promise<T>, ms = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("Download releases the last byte once verified, before it flushes and commits the file", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(80_000, 21);
    const store = new HeldStore(dir);
    const { fetch, gate } = gatedMirror({ "content-length": String(data.byteLength) });
    const download = newDownload(store, fetch, { expect: { size: data.byteLength, sha256: sha256(data) } });
    const body = new Response(followDownload(download, { start: 0, end: Infinity })).arrayBuffer();
    gate.push(data);
    gate.end();
    await store.syncAsked.promise;
    // Before this change the body waited for the commit, which waits for the flush: a timeout, not a hang.
    assertEquals(
      new Uint8Array(await within(body)),
      data,
      "the client has the whole file while the flush waits",
    );
    assertEquals(download.releasable(), data.byteLength);
    assertEquals(download.outcome(), { type: "complete" });
    assertEquals(download.state, "streaming", "not committed yet");
    assertEquals(await pathExists(download.finalPath), false, "nothing unflushed in the cache");
    store.syncAllowed.resolve();
    await download.finished;
    assertEquals(download.state, "complete");
    assertEquals((await Deno.stat(download.finalPath)).size, data.byteLength);
  });
});

Deno.test("Download keeps a commit that fails after the release from the clients that got the bytes", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(60_000, 22);
    const store = new HeldStore(dir);
    store.syncAllowed.resolve();
    store.commitError = new Error("rename failed: the disk went read-only");
    const { fetch, gate } = gatedMirror({ "content-length": String(data.byteLength) });
    const download = newDownload(store, fetch);
    const body = new Response(followDownload(download, { start: 0, end: Infinity })).arrayBuffer();
    gate.push(data);
    gate.end();
    assertEquals(new Uint8Array(await body), data, "a complete response, no error");
    await download.finished;
    assertEquals(download.state, "failed", "the file is not in the cache");
    assertEquals(download.error, store.commitError);
    assertEquals(download.outcome(), { type: "complete" }, "for clients, the file was complete");
    assertEquals(await pathExists(download.finalPath), false);
  });
});

Deno.test("Download never releases the last byte of a large file that does not match the database, and fails it", async () => {
  await withTempDir(async (dir) => {
    // Above HOLD_WHOLE_MAX_BYTES: its clients have its first bytes at once, so it cannot be fetched again.
    const data = testBytes(300_000, 23);
    const store = new HeldStore(dir);
    const { fetch, gate } = gatedMirror({ "content-length": String(data.byteLength) });
    const download = newDownload(store, fetch, {
      expect: { size: data.byteLength, sha256: sha256(testBytes(300_000, 24)) },
    });
    const body = new Response(followDownload(download, { start: 0, end: Infinity })).arrayBuffer();
    gate.push(data);
    while (download.written < data.byteLength) await download.changed();
    assertEquals(download.releasable(), data.byteLength - 1, "all on disk, all but the last byte released");
    gate.end();
    await nodeAssert.rejects(body, /does not match the repository database/);
    await download.finished;
    assertEquals(download.releasable(), data.byteLength - 1);
    assertEquals(download.outcome().type, "failed");
    assertEquals(store.flushed, false, "a corrupt file is never flushed");
  });
});

/** Every path below `dir` (folders too) with its modification time. */
async function snapshot(dir: string, prefix = ""): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  for await (const entry of Deno.readDir(`${dir}/${prefix}`)) {
    const path = `${prefix}${entry.name}`;
    found.set(path, (await Deno.lstat(`${dir}/${path}`)).mtime!.getTime());
    if (entry.isDirectory) { for (const [p, t] of await snapshot(dir, `${path}/`)) found.set(p, t); }
  }
  return found;
}

Deno.test("A database revalidation answered 304 touches nothing in the cache directory", async () => {
  await withTempDir(async (dir) => {
    const store = new CacheStore(dir);
    await Deno.mkdir(`${dir}/core/os/x86_64`, { recursive: true });
    await Deno.writeFile(store.finalPath(DB_SEGMENTS), testBytes(1_000, 25));
    const before = await snapshot(dir);
    const asked: string[] = [];
    // The first mirror fails before its head, the second says the database did not change.
    const fetch = ((input: string | URL | Request) => {
      asked.push(String(input));
      return Promise.resolve(new Response(null, { status: String(input).startsWith(A) ? 500 : 304 }));
    }) as typeof globalThis.fetch;
    const download = newDownload(store, fetch, {
      segments: DB_SEGMENTS,
      ifModifiedSince: Date.UTC(2024, 0, 1),
    });
    await download.finished;
    assertEquals(download.state, "not_modified");
    assertEquals(asked.length, 2);
    assertEquals(await snapshot(dir), before, "no partial file, no record, no folder made or removed");
    assertEquals(await pathExists(download.partialPath), false);
  });
});

Deno.test("Download releases a file matching the database's SHA-256 at its last byte, before the stream ends", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(30_000, 25);
    const store = new HeldStore(dir);
    store.syncAllowed.resolve();
    const { fetch, gate } = gatedMirror({ "content-length": String(data.byteLength) });
    const download = newDownload(store, fetch, { expect: { size: data.byteLength, sha256: sha256(data) } });
    gate.push(data);
    while (download.written < data.byteLength) await download.changed();
    assertEquals(download.releasable(), data.byteLength, "the mirror has not ended its stream yet");
    assertEquals(download.outcome(), { type: "complete" });
    gate.end();
    await download.finished;
    assertEquals(download.state, "complete");
  });
});

Deno.test("Download without a SHA-256 to check waits for the mirror's end before the last byte", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(30_000, 26);
    const store = new HeldStore(dir);
    store.syncAllowed.resolve();
    const { fetch, gate } = gatedMirror({ "content-length": String(data.byteLength) });
    const download = newDownload(store, fetch);
    gate.push(data);
    while (download.written < data.byteLength) await download.changed();
    assertEquals(
      download.releasable(),
      data.byteLength - 1,
      "a longer body than announced is still possible",
    );
    gate.end();
    await download.finished;
    assertEquals(download.state, "complete");
  });
});
