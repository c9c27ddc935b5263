import nodeAssert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";

import { CacheStore } from "../../src/cache/cache_store.ts";
import { Download } from "../../src/download/download.ts";
import { followDownload, READ_CHUNK, readFileRange } from "../../src/download/live_reader.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { type Gate, gatedMirror, testBytes } from "../helpers/fake_fetch.ts";
import { settledNow, waitFor } from "../helpers/wait.ts";
import { concat } from "../../src/byte_reader.ts";
import { startTestDownload } from "../helpers/test_download.ts";

const SEGMENTS = ["core", "os", "x86_64", "zstd-1.5.6-1-x86_64.pkg.tar.zst"];

/** A started download of SEGMENTS into `dir` from a gated mirror. */
function startDownload(
  dir: string,
  options: { total?: number; expect?: { size: number; sha256: string } } = {},
): { download: Download; gate: Gate } {
  const headers: Record<string, string> = { "last-modified": "Tue, 14 Nov 2023 22:13:20 GMT" };
  if (options.total !== undefined) headers["content-length"] = String(options.total);
  const { fetch, gate } = gatedMirror(headers);
  const download = startTestDownload(new CacheStore(dir), fetch, {
    segments: SEGMENTS,
    mirrors: ["http://mirror-a.test/"],
    rules: { keepPartialOnFailure: true },
    expect: options.expect,
  });
  return { download, gate };
}

/** Waits until the download has `bytes` on disk. */
async function writtenUpTo(download: Download, bytes: number): Promise<void> {
  await within(
    (async () => {
      while (download.written < bytes && !download.ended) await download.changed();
    })(),
    `the download to write ${bytes} bytes`,
  );
  assert(download.written >= bytes, `the download ended (${download.state}) before byte ${bytes}`);
}

/** Fails instead of hanging when `promise` takes longer than a generous limit. */
async function within<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads `count` bytes from a reader (more if a chunk goes past it). */
async function readBytes(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  count: number,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let got = 0;
  while (got < count) {
    const { done, value } = await within(reader.read(), `byte ${got}`);
    if (done) break;
    parts.push(value);
    got += value.byteLength;
  }
  return concat(parts);
}

/** Everything a stream gives until it ends. */
async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** How many of this process's file descriptors are open on `path` (Linux). */
function openHandles(path: string): number {
  let count = 0;
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${entry.name}`) === path) count++;
    } catch {
      // closed while listing
    }
  }
  return count;
}

Deno.test("followDownload() follows a download from before its first byte to its end", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(300_000, 1);
    const { download, gate } = startDownload(dir, { total: data.byteLength });
    let counted = 0;
    const body = readAll(followDownload(download, { start: 0, end: Infinity }, {
      onBytes: (n) => (counted += n),
    }));
    assertEquals(download.written, 0, "the reader starts before the first byte");
    await within(download.head, "the head");
    for (let offset = 0; offset < data.byteLength; offset += 100_000) {
      gate.push(data.slice(offset, offset + 100_000));
      await writtenUpTo(download, offset + 100_000);
    }
    gate.end();
    assertEquals(await within(body, "the body"), data);
    assertEquals(counted, data.byteLength);
    await download.finished;
    assertEquals(download.state, "complete");
  });
});

Deno.test("followDownload() lets a reader join midway, from the start or from an offset", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(200_000, 2);
    const { download, gate } = startDownload(dir, { total: data.byteLength });
    gate.push(data.slice(0, 120_000));
    await writtenUpTo(download, 120_000);
    const whole = readAll(followDownload(download, { start: 0, end: Infinity }));
    const tail = readAll(followDownload(download, { start: 50_000, end: Infinity }));
    gate.push(data.slice(120_000));
    await writtenUpTo(download, data.byteLength);
    gate.end();
    assertEquals(await within(whole, "the whole file"), data);
    assertEquals(await within(tail, "the tail"), data.slice(50_000));
    await download.finished;
  });
});

Deno.test("followDownload() sends a bounded range as it is written, and its last byte once the file is verified", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(100_000, 3);
    const { download, gate } = startDownload(dir, { total: data.byteLength });
    let bodySent = false;
    try {
      gate.push(data.slice(0, 50_000));
      await writtenUpTo(download, 50_000);
      const reader = followDownload(download, { start: 10_000, end: 29_999 }).getReader();
      assertEquals(await readBytes(reader, 19_999), data.slice(10_000, 29_999));
      // The file's check vouches for the range's bytes too: a range that ended cleanly before it could hold
      // bytes that turn out wrong.
      const last = reader.read().then((read) => ({ read, outcome: download.outcome().type }));
      assertEquals(await settledNow(last), false, "the range's last byte waits");
      assertEquals(download.ended, false, "the download is still running");
      gate.push(data.slice(50_000));
      gate.end();
      bodySent = true;
      const { read, outcome } = await within(last, "the range's last byte");
      assertEquals(read.value, data.slice(29_999, 30_000));
      assertEquals(outcome, "complete");
      assertEquals((await reader.read()).done, true);
    } finally {
      if (!bodySent) gate.fail(new Error("the test failed before the body's end"));
      await download.finished;
    }
  });
});

Deno.test("followDownload() sends the last byte of the file only once the download has verified it", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(100_000, 4);
    const { download, gate } = startDownload(dir, { total: data.byteLength });
    const open = followDownload(download, { start: 0, end: Infinity }).getReader();
    const bounded = followDownload(download, { start: 90_000, end: 99_999 }).getReader();
    const early = followDownload(download, { start: 0, end: 98_999 }).getReader();
    gate.push(data);
    await writtenUpTo(download, data.byteLength);
    assertEquals(await readBytes(open, data.byteLength - 1), data.slice(0, -1));
    assertEquals(await readBytes(bounded, 9_999), data.slice(90_000, -1));
    assertEquals(
      await readBytes(early, 98_999),
      data.slice(0, 98_999),
      "a range short of the end is held back by its own last byte",
    );
    assertEquals(download.releasable(), data.byteLength - 1, "every byte is on disk, none verified");
    assertEquals(download.releasable(99_000), 98_999);
    // What the download has decided when each reader gets the last byte: it must be "complete" (verified).
    const outcomeAt = (read: Promise<unknown>) => read.then(() => download.outcome().type);
    const openEnd = open.read();
    const boundedEnd = bounded.read();
    const earlyEnd = early.read();
    const openSaw = outcomeAt(openEnd);
    const boundedSaw = outcomeAt(boundedEnd);
    const earlySaw = outcomeAt(earlyEnd);
    assertEquals(download.state, "streaming");
    gate.end();
    assertEquals(await within(openSaw, "the last byte"), "complete", "the last byte waited for verification");
    assertEquals(
      await within(boundedSaw, "the last byte"),
      "complete",
      "the same for a range whose end is the last byte",
    );
    assertEquals(await within(earlySaw, "the range's last byte"), "complete", "and for one short of the end");
    assertEquals((await within(earlyEnd, "the range's last byte")).value, data.slice(98_999, 99_000));
    assertEquals((await within(early.read(), "the early end")).done, true);
    assertEquals((await within(openEnd, "the last byte")).value, data.slice(-1));
    assertEquals((await within(boundedEnd, "the last byte")).value, data.slice(-1));
    assertEquals((await within(open.read(), "the end")).done, true);
    assertEquals((await within(bounded.read(), "the end")).done, true);
    await download.finished;
    assertEquals(download.state, "complete");
    assertEquals((await Deno.stat(download.finalPath)).size, data.byteLength);
  });
});

Deno.test("followDownload() errors the stream when the download fails", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(100_000, 5);
    const { download, gate } = startDownload(dir, { total: data.byteLength });
    const reader = followDownload(download, { start: 0, end: Infinity }).getReader();
    gate.push(data.slice(0, 40_000));
    assertEquals(await readBytes(reader, 40_000), data.slice(0, 40_000));
    gate.fail(new TypeError("connection reset"));
    await nodeAssert.rejects(within(reader.read(), "the error"), (error: unknown) => {
      assertEquals(download.state, "failed");
      nodeAssert.equal(error, download.error);
      return true;
    });
  });
});

Deno.test("followDownload() errors instead of ending cleanly when the finished file fails its check", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(50_000, 6);
    const wrong = createHash("sha256").update(testBytes(50_000, 7)).digest("hex");
    const { download, gate } = startDownload(dir, {
      total: data.byteLength,
      expect: { size: data.byteLength, sha256: wrong },
    });
    const body = readAll(followDownload(download, { start: 0, end: Infinity }));
    gate.push(data);
    gate.end();
    await nodeAssert.rejects(within(body, "the body"), /does not match the repository database/);
    assertEquals(download.state, "failed");
  });
});

Deno.test("followDownload() ends at the clean end of a download of unknown length", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(70_000, 8);
    const { download, gate } = startDownload(dir);
    const whole = readAll(followDownload(download, { start: 0, end: Infinity }));
    const prefix = readAll(followDownload(download, { start: 0, end: 9_999 }));
    gate.push(data.slice(0, 30_000));
    assertEquals(await within(prefix, "the prefix"), data.slice(0, 10_000));
    gate.push(data.slice(30_000));
    gate.end();
    assertEquals(await within(whole, "the whole file"), data);
    assertEquals(download.total, undefined);
    // The body ends once the bytes are released, before the commit: the folder is removed only after it.
    await download.finished;
  });
});

Deno.test("followDownload() closes its file when the reader cancels", async () => {
  await withTempDir(async (dir) => {
    const data = testBytes(100_000, 9);
    const { download, gate } = startDownload(dir, { total: data.byteLength });
    try {
      gate.push(data.slice(0, 50_000));
      await writtenUpTo(download, 50_000);
      const writerOnly = openHandles(download.partialPath);
      assertEquals(writerOnly, 1, "the download holds its partial file open");
      const reader = followDownload(download, { start: 0, end: Infinity }).getReader();
      await within(reader.read(), "a chunk");
      assertEquals(openHandles(download.partialPath), 2, "the reader has its own handle");
      await reader.cancel();
      assertEquals(openHandles(download.partialPath), 1, "the reader's handle is closed");
    } finally {
      gate.push(data.slice(50_000));
      gate.end();
      await download.finished;
    }
    assertEquals(openHandles(download.finalPath), 0);
  });
});

Deno.test({
  name: "followDownload() closes its file when the reader cancels while waiting for more bytes",
  fn: async () => {
    await withTempDir(async (dir) => {
      const data = testBytes(100_000, 10);
      const { download, gate } = startDownload(dir, { total: data.byteLength });
      gate.push(data.slice(0, 10_000));
      await writtenUpTo(download, 10_000);
      const reader = followDownload(download, { start: 0, end: Infinity }).getReader();
      await within(reader.read(), "a chunk");
      const waiting = reader.read();
      // Every released byte has been read: the reader can only wait for the download.
      assertEquals(await settledNow(waiting), false, "the reader waits for the download");
      await reader.cancel();
      assertEquals((await waiting).done, true);
      gate.push(data.slice(10_000));
      gate.end();
      await download.finished;
      // A leaked handle stays open: polled for with a bound far above the moment a closed one is gone.
      await waitFor("no handle left open on the file", () => openHandles(download.finalPath) === 0, 5_000);
    });
  },
});

/** A complete file of `size` test bytes in `dir`. */
async function completeFile(dir: string, size: number): Promise<{ path: string; data: Uint8Array }> {
  const data = testBytes(size, 11);
  const path = join(dir, "file.pkg.tar.zst");
  await Deno.writeFile(path, data);
  return { path, data };
}

Deno.test("readFileRange() reads the whole file, a prefix, a middle part and a suffix", async () => {
  await withTempDir(async (dir) => {
    const size = 2 * READ_CHUNK + 12_345;
    const { path, data } = await completeFile(dir, size);
    const cases: [string, number, number][] = [
      ["whole", 0, size - 1],
      ["prefix", 0, 99],
      ["one byte", 5, 5],
      ["middle across chunks", 1_000, READ_CHUNK + 50_000],
      ["suffix", size - 10, size - 1],
      ["from a chunk boundary to the end", READ_CHUNK, size - 1],
    ];
    for (const [what, start, end] of cases) {
      const stream = await readFileRange(path, { start, end, size });
      assertEquals(await readAll(stream), data.slice(start, end + 1), what);
    }
    assertEquals(openHandles(path), 0, "every handle is closed after reading");
  });
});

Deno.test("readFileRange() closes the file when the reader cancels", async () => {
  await withTempDir(async (dir) => {
    const size = 3 * READ_CHUNK;
    const { path, data } = await completeFile(dir, size);
    const reader = (await readFileRange(path, { start: 10, end: size - 10, size })).getReader();
    const first = await reader.read();
    assertEquals(first.value, data.slice(10, 10 + first.value!.byteLength));
    assertEquals(openHandles(path), 1);
    await reader.cancel();
    assertEquals(openHandles(path), 0);
  });
});

Deno.test("readFileRange() errors when the file is shorter than the range", async () => {
  await withTempDir(async (dir) => {
    const { path } = await completeFile(dir, 100);
    const stream = await readFileRange(path, { start: 0, end: 499, size: 1_000 });
    await nodeAssert.rejects(readAll(stream), /shorter than expected/);
    assertEquals(openHandles(path), 0);
  });
});

Deno.test("readFileRange() closes the file when a read of it fails", async () => {
  await withTempDir(async (dir) => {
    // A folder opens for reading, and its read fails (EISDIR), as a read of a failing disk does (EIO).
    const path = join(dir, "not-a-file");
    await Deno.mkdir(path);
    const stream = readFileRange(path, { start: 0, end: 99, size: 100 });
    await nodeAssert.rejects(readAll(stream));
    assertEquals(openHandles(path), 0);
  });
});
