/**
 * A small file the repository database describes (at most HOLD_WHOLE_MAX_BYTES: every `.sig`) is held back
 * whole until verified: a mirror that sends it corrupt is passed over for the next one, and its clients get the
 * right bytes, never the corrupt ones.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { CacheStore } from "../../src/cache/cache_store.ts";
import { followDownload } from "../../src/download/live_reader.ts";
import { MirrorPool } from "../../src/mirrors/mirrors.ts";
import { HOLD_WHOLE_MAX_BYTES, HOLD_WHOLE_MAX_MS } from "../../src/download/verification.ts";
import { sha256 } from "../helpers/bytes.ts";
import { fakeFetch, gatedFetch, serveBytes, testBytes } from "../helpers/fake_fetch.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { turn } from "../helpers/pump_gated.ts";
import { settledNow, waitFor } from "../helpers/wait.ts";
import { startTestDownload } from "../helpers/test_download.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const SEGMENTS = ["core", "os", "x86_64", "zstd-1.5.6-1-x86_64.pkg.tar.zst.sig"];
const A = "http://mirror-a.test/";
const B = "http://mirror-b.test/";

function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Response(stream).arrayBuffer().then((b) => new Uint8Array(b));
}

Deno.test("Download.releasable() releases no byte of a small file before it is verified, and its clients get the next mirror's copy when the first is corrupt", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(566, 31);
    const corrupt = data.slice();
    corrupt[100] ^= 0xff;
    const store = new CacheStore(dir);
    const pool = new MirrorPool();
    const released: number[] = [];
    const { fetch, requests } = fakeFetch((url, req) => serveBytes(url.startsWith(A) ? corrupt : data, req));
    const download = startTestDownload(store, fetch, {
      segments: SEGMENTS,
      mirrors: [A, B],
      pool,
      expect: { size: data.byteLength, sha256: sha256(data) },
    });
    // Two clients joined on the download before its first byte.
    const first = readAll(followDownload(download, { start: 0, end: Infinity }));
    const second = readAll(followDownload(download, { start: 0, end: Infinity }));
    const watch = (async () => {
      while (!download.ended) {
        if (download.outcome().type !== "complete") released.push(download.releasable());
        await download.changed();
      }
    })();
    assertEquals(await first, data, "the first client got the second mirror's bytes");
    assertEquals(await second, data, "so did the one that joined it");
    await download.finished;
    await watch;
    assertEquals(download.state, "complete");
    assert(released.every((n) => n === 0), `bytes released before verification: ${released}`);
    assertEquals(await Deno.readFile(download.finalPath), data, "the corrupt copy was never cached");
    assertEquals(requests.map((r) => [r.url.slice(0, B.length), r.headers.get("range")]), [[A, null], [
      B,
      null,
    ]]);
    const failures = Object.fromEntries(pool.snapshot().map((m) => [m.url, m.failures]));
    assertEquals(failures, { [A]: 1, [B]: 0 }, "the corrupting mirror counted once as failed");
  });
});

Deno.test("Download.start() fetches a small file again from byte 0 when the partial file it resumed turns out corrupt", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(2_000, 32);
    const store = new CacheStore(dir);
    // An earlier download's bytes (kept after a failure, with their record): 1 000 bytes, one of them wrong.
    const left = data.slice(0, 1_000);
    left[10] ^= 0xff;
    const file = store.openPartial(SEGMENTS, { truncate: true });
    file.writeSync(left);
    file.close();
    store.writePartialMeta(SEGMENTS, { total: data.byteLength, mirror: A });
    const { fetch, requests } = fakeFetch((_url, req) => serveBytes(data, req));
    const download = startTestDownload(store, fetch, {
      segments: SEGMENTS,
      mirrors: [A, B],
      rules: { keepPartialOnFailure: true },
      expect: { size: data.byteLength, sha256: sha256(data) },
    });
    const body = readAll(followDownload(download, { start: 0, end: Infinity }));
    assertEquals(await body, data);
    await download.finished;
    assertEquals(download.state, "complete", download.error?.message);
    assertEquals(await Deno.readFile(download.finalPath), data);
    assertEquals(
      requests.map((r) => [r.url.slice(0, B.length), r.headers.get("range")]),
      [[A, "bytes=1000-"], [B, null]],
      "the resumed bytes were discarded, and the next mirror sent the whole file",
    );
  });
});

Deno.test("Download fails a large file that the first mirror sends corrupt, as before: its clients have its first bytes", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(HOLD_WHOLE_MAX_BYTES + 1, 33);
    const corrupt = data.slice();
    corrupt[100] ^= 0xff;
    const { fetch, requests } = fakeFetch((url, req) => serveBytes(url.startsWith(A) ? corrupt : data, req));
    const download = startTestDownload(new CacheStore(dir), fetch, {
      segments: SEGMENTS,
      mirrors: [A, B],
      expect: { size: data.byteLength, sha256: sha256(data) },
    });
    const reader = followDownload(download, { start: 0, end: Infinity }).getReader();
    let received = 0;
    let error: unknown;
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        received += value.byteLength;
      }
    } catch (e) {
      error = e;
    }
    await download.finished;
    assert(error !== undefined, "the transfer broke off");
    assert(received < data.byteLength, "the last byte was held back");
    assertEquals(download.state, "failed");
    assertEquals(requests.length, 1, "not fetched again from the next mirror");
  });
});

Deno.test("Download counts the bytes of a small file's corrupt copy as received from its mirror", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(566, 34);
    const corrupt = data.slice();
    corrupt[100] ^= 0xff;
    const pool = new MirrorPool();
    const { fetch } = fakeFetch((url, req) => serveBytes(url.startsWith(A) ? corrupt : data, req));
    const download = startTestDownload(new CacheStore(dir), fetch, {
      segments: SEGMENTS,
      mirrors: [A, B],
      pool,
      expect: { size: data.byteLength, sha256: sha256(data) },
    });
    await download.finished;
    assertEquals(download.state, "complete", download.error?.message);
    const bytes = Object.fromEntries(pool.snapshot().map((m) => [m.url, m.bytes]));
    assertEquals(bytes, { [A]: data.byteLength, [B]: data.byteLength }, "each copy's bytes counted once");
  });
});

Deno.test("Download.head comes after HOLD_WHOLE_MAX_MS for a small file its mirror sends slowly, and its bytes but the last flow", async () => {
  await withTempDir(async (dir) => {
    // pacman (curl) gives up on a transfer that brings no byte for 10 s: a slow link must not hold it that long.
    const data = testBytes(200_000, 35);
    const clock = new FakeTimers();
    const gated = gatedFetch(() => ({ status: 200, headers: { "content-length": String(data.byteLength) } }));
    const download = startTestDownload(new CacheStore(dir), gated.fetch, {
      segments: SEGMENTS,
      mirrors: [A],
      clock,
      expect: { size: data.byteLength, sha256: sha256(data) },
    });
    await waitFor("the mirror to be asked", () => gated.gates.length === 1);
    gated.gates[0].push(data.slice(0, 50_000));
    while (download.written < 50_000) await download.changed();
    await turn();
    assertEquals([await settledNow(download.head), download.releasable()], [false, 0], "held back at first");
    clock.advance(HOLD_WHOLE_MAX_MS);
    await turn();
    assert(await settledNow(download.head), "the head came once the hold's time was up");
    assertEquals((await download.head).total, data.byteLength);
    assertEquals(download.releasable(), 50_000, "the bytes on disk flow, as a large file's do");
    const body = readAll(followDownload(download, { start: 0, end: Infinity }));
    gated.gates[0].push(data.slice(50_000));
    gated.gates[0].end();
    assertEquals(await body, data);
    await download.finished;
    assertEquals(download.state, "complete", download.error?.message);
  });
});

Deno.test("Download blames the mirror whose bytes a corrupt resumed file began with, too, not only the one that completed it", async () => {
  await withTempDir(async (dir) => {
    const C = "http://mirror-c.test/";
    const data = testBytes(2_000, 36);
    const store = new CacheStore(dir);
    // An earlier download's bytes from C, kept after a failure with their record: one of them wrong.
    const left = data.slice(0, 1_000);
    left[10] ^= 0xff;
    const file = store.openPartial(SEGMENTS, { truncate: true });
    file.writeSync(left);
    file.close();
    store.writePartialMeta(SEGMENTS, { total: data.byteLength, mirror: C });
    const pool = new MirrorPool();
    const { fetch } = fakeFetch((_url, req) => serveBytes(data, req));
    const download = startTestDownload(store, fetch, {
      segments: SEGMENTS,
      mirrors: [A, B, C],
      pool,
      rules: { keepPartialOnFailure: true },
      expect: { size: data.byteLength, sha256: sha256(data) },
    });
    await download.finished;
    assertEquals(download.state, "complete", download.error?.message);
    const failures = Object.fromEntries(pool.snapshot().map((m) => [m.url, m.failures]));
    assertEquals(failures[C], 1, "the mirror of the bytes on disk is counted as failed");
  });
});

Deno.test("Download sets the small file's hold timer only once its request to the mirror is on its way", async () => {
  await withTempDir(async (dir) => {
    // A timer made before the request would delay every cold miss of a small file (tens of microseconds).
    const data = testBytes(2_000, 37);
    const clock = new FakeTimers();
    let pendingAtRequest: number[] | undefined;
    const { fetch } = fakeFetch((_url, req) => {
      pendingAtRequest ??= clock.pending;
      return serveBytes(data, req);
    });
    const download = startTestDownload(new CacheStore(dir), fetch, {
      segments: SEGMENTS,
      mirrors: [A],
      clock,
      expect: { size: data.byteLength, sha256: sha256(data) },
    });
    await waitFor("the mirror to be asked", () => pendingAtRequest !== undefined);
    assert(!pendingAtRequest!.includes(HOLD_WHOLE_MAX_MS), `timers before the request: ${pendingAtRequest}`);
    await turn();
    assert(
      clock.pending.includes(HOLD_WHOLE_MAX_MS) || download.ended,
      "the hold is bounded once it is asked",
    );
    await download.finished;
    assertEquals(download.state, "complete", download.error?.message);
    await turn(); // the run's end clears it, just after the download's end is told
    assertEquals(clock.pending.includes(HOLD_WHOLE_MAX_MS), false, "cleared when the download ended");
  });
});
