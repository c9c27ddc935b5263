/**
 * How a download stores a body that arrives in many small chunks: in few writes of bounded size
 * (`src/download/body_writer.ts`), with every byte reaching its clients in order, the SHA-256 checked, and the
 * bytes on disk right for a resume.
 */
import nodeAssert from "node:assert/strict";
import { createHash } from "node:crypto";
import { assert, assertEquals } from "../helpers/assert.ts";
import { CacheStore } from "../../src/cache/cache_store.ts";
import { HttpError } from "../../src/http/http_error.ts";
import { Download } from "../../src/download/download.ts";
import { COALESCE_BYTES } from "../../src/download/body_writer.ts";
import { followDownload } from "../../src/download/live_reader.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { waitFor } from "../helpers/wait.ts";
import { fakeFetch, gatedFetch, rangeHead, serveBytes, testBytes } from "../helpers/fake_fetch.ts";
import { startTestDownload } from "../helpers/test_download.ts";
import { withDirectBody } from "../../src/http/direct_body.ts";

const SEGMENTS = ["core", "os", "x86_64", "zstd-1.5.6-1-x86_64.pkg.tar.zst"];
const A = "http://mirror-a.test/";
const B = "http://mirror-b.test/";

/**
 * A cache store that counts the writes to its partial files and their sizes; with `hold`, each write to the
 * file (but the synchronous first) waits until the test calls {@linkcode CountingStore.release}.
 */
class CountingStore extends CacheStore {
  readonly writes: number[] = [];
  /** Bytes handed to writes so far, and bytes whose writes ended. */
  started = 0;
  ended = 0;
  /** When set, a write fails with it once this many bytes were written. */
  failAfter?: { bytes: number; error: Error };
  hold = false;
  readonly #held: (() => void)[] = [];

  override openPartial(segments: readonly string[], options: { truncate: boolean }): Deno.FsFile {
    return this.#counted(super.openPartial(segments, options));
  }

  override async createPartial(segments: readonly string[]): Promise<Deno.FsFile> {
    return this.#counted(await super.createPartial(segments));
  }

  /** Whether a write waits for {@linkcode CountingStore.release}. */
  get holding(): boolean {
    return this.#held.length > 0;
  }

  /** Lets the oldest held write go on. */
  release(): void {
    this.#held.shift()?.();
  }

  #counted(file: Deno.FsFile): Deno.FsFile {
    const write = file.write.bind(file);
    const writeSync = file.writeSync.bind(file);
    const check = (bytes: Uint8Array) => {
      this.writes.push(bytes.byteLength);
      const fail = this.failAfter;
      if (fail !== undefined && this.started + bytes.byteLength > fail.bytes) throw fail.error;
      this.started += bytes.byteLength;
    };
    file.write = async (bytes) => {
      check(bytes);
      if (this.hold) await new Promise<void>((resolve) => this.#held.push(resolve));
      const count = await write(bytes);
      this.ended += count;
      return count;
    };
    file.writeSync = (bytes) => {
      check(bytes);
      const count = writeSync(bytes);
      this.ended += count;
      return count;
    };
    return file;
  }
}

/** A fetch answering with `data` in chunks of `size` bytes, each made only when the reader asks (counted). */
function pulledFetch(data: Uint8Array, size: number): { fetch: typeof fetch; pulled: () => number } {
  let pulled = 0;
  const fetchImpl = () => {
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled === data.byteLength) return controller.close();
        const chunk = data.slice(pulled, Math.min(pulled + size, data.byteLength));
        pulled += chunk.byteLength;
        controller.enqueue(chunk);
      },
    }, { highWaterMark: 0 });
    return Promise.resolve(new Response(body, { headers: { "content-length": String(data.byteLength) } }));
  };
  return { fetch: fetchImpl as typeof fetch, pulled: () => pulled };
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function newDownload(
  store: CacheStore,
  fetch: typeof globalThis.fetch,
  options: { expect?: { size: number; sha256: string }; mirrors?: string[]; keepPartial?: boolean } = {},
): Download {
  return startTestDownload(store, fetch, {
    segments: SEGMENTS,
    mirrors: options.mirrors ?? [A],
    rules: { keepPartialOnFailure: options.keepPartial ?? false },
    expect: options.expect,
  });
}

/** Sends `data` through `gate` in chunks of `size` bytes, from `from` up to `to`. */
function pushChunks(
  gate: { push: (bytes: Uint8Array) => void },
  data: Uint8Array,
  size: number,
  range: { from?: number; to?: number } = {},
): void {
  for (let at = range.from ?? 0; at < (range.to ?? data.byteLength); at += size) {
    gate.push(data.slice(at, Math.min(at + size, range.to ?? data.byteLength)));
  }
}

Deno.test("Download lets the clients its first chunk woke send it before it reads the next chunk of the body", async () => {
  await withTempDir(async (dir) => {
    const store = new CacheStore(dir);
    const data = testBytes(64 * 1024, 5);
    const events: string[] = [];
    let offset = 0;
    const fetchImpl = () => {
      const body = new ReadableStream<Uint8Array>({ type: "bytes" });
      withDirectBody(body, {
        readInto: (view) => {
          events.push(`read at ${offset}`);
          if (offset === data.byteLength) return Promise.resolve(null);
          const count = Math.min(view.byteLength, 16 * 1024, data.byteLength - offset);
          view.set(data.subarray(offset, offset + count));
          offset += count;
          return Promise.resolve(count);
        },
        cancel: () => {},
      });
      return Promise.resolve(new Response(body, { headers: { "content-length": String(data.byteLength) } }));
    };
    const download = newDownload(store, fetchImpl as typeof fetch);
    await download.head;
    // A client waiting for the first bytes, as FileSender.send() waits for them.
    const woken = download.changed().then(() => events.push(`woken at ${download.written}`));
    await download.finished;
    await woken;
    assertEquals(events.slice(0, 3), ["read at 0", "woken at 16384", "read at 16384"]);
    assertEquals(download.state, "complete");
  });
});

Deno.test("Download stores 1,000 small chunks in few writes of at most COALESCE_BYTES, every byte in order", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(2_000_000, 31);
    const store = new CountingStore(dir);
    store.hold = true;
    const { fetch, pulled } = pulledFetch(data, 2_000);
    const download = newDownload(store, fetch, { expect: { size: data.byteLength, sha256: sha256(data) } });
    const body = new Response(followDownload(download, { start: 0, end: Infinity })).arrayBuffer();
    // A disk slower than the mirror: each write ends only once the download has taken every chunk it could
    // meanwhile (the whole body, or its buffers are full and it waits).
    while (store.ended < data.byteLength) {
      await waitFor(
        "the download to take every chunk it can while a write is running",
        () => store.holding && (pulled() === data.byteLength || pulled() - store.started > COALESCE_BYTES),
      );
      assert(pulled() - store.ended <= 2 * COALESCE_BYTES + 2_000, `${pulled() - store.ended} bytes held`);
      store.release();
      await waitFor("the write to end", () => store.holding || store.ended === store.started);
    }
    assertEquals(new Uint8Array(await body), data);
    await download.finished;
    assertEquals(download.state, "complete");
    assertEquals(await Deno.readFile(download.finalPath), data);
    const expected = Math.ceil(data.byteLength / COALESCE_BYTES) + 2;
    assert(
      store.writes.length <= expected,
      `${store.writes.length} writes (one per chunk before): ${store.writes}`,
    );
    assert(Math.max(...store.writes) <= COALESCE_BYTES, `a write of ${Math.max(...store.writes)} bytes`);
  });
});

Deno.test("Download rejects a corrupt body that came in 1,000 small chunks", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(1_000_000, 32);
    const corrupt = data.slice();
    corrupt[700_123] ^= 1;
    const store = new CountingStore(dir);
    const { fetch, gates } = gatedFetch((req) => rangeHead(data.byteLength, req));
    const download = newDownload(store, fetch, { expect: { size: data.byteLength, sha256: sha256(data) } });
    const body = new Response(followDownload(download, { start: 0, end: Infinity })).arrayBuffer();
    await waitFor("the mirror to be asked", () => gates.length === 1);
    pushChunks(gates[0], corrupt, 1_000);
    gates[0].end();
    await nodeAssert.rejects(body, /does not match the repository database/);
    await download.finished;
    assertEquals(download.state, "failed");
    assertEquals(download.releasable(), data.byteLength - 1, "never the last byte");
  });
});

Deno.test("Download resumes on the next mirror from every byte a dropped mirror sent in small chunks", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(1_000_000, 33);
    const store = new CountingStore(dir);
    const { fetch, requests } = fakeFetch((url, req) =>
      serveBytes(
        data,
        req,
        url.startsWith(A) ? { chunkSize: 1_000, dropAfter: 600_000 } : { chunkSize: 1_000 },
      )
    );
    const download = newDownload(store, fetch, {
      expect: { size: data.byteLength, sha256: sha256(data) },
      mirrors: [A, B],
    });
    const body = new Response(followDownload(download, { start: 0, end: Infinity })).arrayBuffer();
    assertEquals(new Uint8Array(await body), data);
    await download.finished;
    assertEquals(download.state, "complete");
    assertEquals(requests.map((r) => r.url), [A, B].map((m) => m + SEGMENTS.join("/")));
    assertEquals(requests[1].headers.get("range"), "bytes=600000-", "the bytes taken were all on disk first");
    assert(Math.max(...store.writes) <= COALESCE_BYTES, `a write of ${Math.max(...store.writes)} bytes`);
  });
});

Deno.test("Download keeps every byte of small chunks on disk, with its record, when the last mirror drops", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(800_000, 34);
    const store = new CountingStore(dir);
    const { fetch } = fakeFetch((_url, req) =>
      serveBytes(data, req, { chunkSize: 1_000, dropAfter: 300_000 })
    );
    const download = newDownload(store, fetch, { keepPartial: true });
    await download.finished;
    assertEquals(download.state, "failed");
    assertEquals(download.written, 300_000);
    assertEquals(await Deno.readFile(download.partialPath), data.subarray(0, 300_000));
    const record = JSON.parse(await Deno.readTextFile(store.metaPath(SEGMENTS)));
    assertEquals(
      record.total,
      data.byteLength,
      "the record describes the file for the next download's resume",
    );
  });
});

Deno.test("Download fails with 507 and removes its partial file when the disk fills up mid-body", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(1_000_000, 35);
    const store = new CountingStore(dir);
    const full = Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
    store.failAfter = { bytes: 400_000, error: full };
    const { fetch, gates } = gatedFetch((req) => rangeHead(data.byteLength, req));
    const download = newDownload(store, fetch);
    await waitFor("the mirror to be asked", () => gates.length === 1);
    pushChunks(gates[0], data, 1_000);
    gates[0].end();
    await download.finished;
    assertEquals(download.state, "failed");
    assert(download.error instanceof HttpError);
    assertEquals(download.error.status, 507);
    await nodeAssert.rejects(Deno.stat(download.partialPath), Deno.errors.NotFound);
  });
});
