import nodeAssert from "node:assert/strict";
import { assert, assertEquals } from "../helpers/assert.ts";
import { BodyWriter, COALESCE_BYTES } from "../../src/download/body_writer.ts";
import { testBytes } from "../helpers/fake_fetch.ts";
import { concat } from "../../src/byte_reader.ts";

/** A file whose writes end when the test says so; it records what was written and in which order. */
class HeldFile {
  /** Every write started, with its bytes copied at the start. */
  readonly started: Uint8Array[] = [];
  /** What `written()` was told, in order (copied). */
  readonly done: Uint8Array[] = [];
  readonly #pending: PromiseWithResolvers<void>[] = [];
  /** When set, the next write fails with it. */
  failNext?: Error;

  readonly io = {
    write: (bytes: Uint8Array): Promise<void> => {
      this.started.push(bytes.slice());
      if (this.failNext) return Promise.reject(this.failNext);
      const pending = Promise.withResolvers<void>();
      this.#pending.push(pending);
      return pending.promise;
    },
    written: (bytes: Uint8Array): void => {
      this.done.push(bytes.slice());
    },
  };

  /** Whether a write is waiting to end. */
  get busy(): boolean {
    return this.#pending.length > 0;
  }

  /** Ends the oldest write still running, and lets its continuation run. */
  async finishOne(): Promise<void> {
    this.#pending.shift()?.resolve();
    await Promise.resolve();
    await Promise.resolve();
  }
}

Deno.test("BodyWriter.push() writes a chunk at once when no write is running", async () => {
  const file = new HeldFile();
  const writer = new BodyWriter(file.io, 64 * 1024);
  const chunk = testBytes(1_000, 1);
  assertEquals(writer.push(chunk), undefined, "taken without waiting");
  assertEquals(file.started, [chunk], "a slow mirror's chunk is not held back for more");
  await file.finishOne();
  assertEquals(file.done, [chunk]);
  const next = testBytes(500, 2);
  writer.push(next);
  assertEquals(file.started.length, 2, "the next chunk goes out at once as well");
  await file.finishOne();
  await writer.drain();
  assertEquals(file.done, [chunk, next]);
});

Deno.test("BodyWriter.push() gathers 1,000 small chunks into few writes within twice its capacity", async () => {
  const capacity = 64 * 1024;
  const file = new HeldFile();
  const writer = new BodyWriter(file.io, capacity);
  const data = testBytes(1_000_000, 3);
  let most = 0;
  for (let i = 0; i < 1_000; i++) {
    // The caller's buffer is reused for every chunk, as the body's read buffer is.
    const chunk = new Uint8Array(1_000);
    chunk.set(data.subarray(i * 1_000, (i + 1) * 1_000));
    let taking = writer.push(chunk);
    most = Math.max(most, writer.bufferedBytes);
    // Every 100 chunks the running write ends; when both buffers are full, push() waits for it.
    if (i % 100 === 99 && file.busy) await file.finishOne();
    while (taking !== undefined) {
      const waited = taking;
      taking = undefined;
      const settled = waited.then(() => true);
      await file.finishOne();
      assert(await settled, "push() resolves once a write made room");
    }
    chunk.fill(0);
  }
  while (file.busy) await file.finishOne();
  await writer.drain();
  assertEquals(concat(file.done), data, "every byte, in order, despite the reused chunk buffer");
  assertEquals(concat(file.started), data);
  assert(writer.writes <= Math.ceil(data.byteLength / capacity) + 12, `${writer.writes} writes`);
  assert(writer.writes >= Math.ceil(data.byteLength / capacity), "no write larger than the capacity");
  assert(Math.max(...file.started.map((b) => b.byteLength)) <= capacity);
  assert(most <= 2 * capacity, `held ${most} bytes`);
});

Deno.test("BodyWriter.push() holds the caller when both buffers are full, and resumes after the write", async () => {
  const file = new HeldFile();
  const writer = new BodyWriter(file.io, 4);
  assertEquals(writer.push(testBytes(4, 4)), undefined, "the first buffer is written at once");
  assertEquals(writer.push(testBytes(4, 5)), undefined, "the second fills while the first is written");
  const waiting = writer.push(testBytes(3, 6));
  assert(waiting !== undefined, "no room left: the caller waits");
  let resolved = false;
  waiting.then(() => resolved = true);
  await Promise.resolve();
  assertEquals(resolved, false);
  await file.finishOne();
  await waiting;
  assertEquals(file.started.map((b) => b.byteLength), [4, 4]);
  await file.finishOne();
  await file.finishOne();
  await writer.drain();
  assertEquals(concat(file.done), concat([testBytes(4, 4), testBytes(4, 5), testBytes(3, 6)]));
});

Deno.test("BodyWriter.push() reuses its two buffers however writes and chunks interleave", async () => {
  const file = new HeldFile();
  const writer = new BodyWriter(file.io, 1024);
  const sent: Uint8Array[] = [];
  for (let i = 0; i < 100; i++) {
    // A chunk alone (the write ends before the next), then two while a write runs, then all writes end.
    for (const size of i % 2 === 0 ? [100] : [200, 300]) {
      const chunk = testBytes(size, i);
      sent.push(chunk);
      assertEquals(writer.push(chunk), undefined);
    }
    while (file.busy) await file.finishOne();
  }
  await writer.drain();
  assertEquals(concat(file.done), concat(sent));
  assertEquals(writer.buffersMade, 2);
});

Deno.test("BodyWriter.drain() rejects with a failed write's error, and push() throws it after", async () => {
  const file = new HeldFile();
  const writer = new BodyWriter(file.io, 1024);
  const full = Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
  file.failNext = full;
  writer.push(testBytes(100, 7));
  await nodeAssert.rejects(writer.drain(), (error) => error === full);
  assertEquals(file.done, [], "nothing counted as written");
  nodeAssert.throws(() => writer.push(testBytes(100, 8)), (error) => error === full);
});

Deno.test("BodyWriter() caps its buffers at COALESCE_BYTES and at the bytes left", () => {
  const file = new HeldFile();
  const small = new BodyWriter(file.io, 10);
  small.push(testBytes(25, 9));
  assertEquals(small.bufferedBytes, 20, "two buffers of the 10 bytes left");
  const large = new BodyWriter(new HeldFile().io, 10 * COALESCE_BYTES);
  large.push(new Uint8Array(3 * COALESCE_BYTES));
  assertEquals(large.bufferedBytes, 2 * COALESCE_BYTES);
});
