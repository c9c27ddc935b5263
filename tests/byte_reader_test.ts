import assert from "node:assert/strict";
import { ByteReader, concat, startsWith } from "../src/byte_reader.ts";

/** A stream of `bytes` in chunks of `chunkSize`, with an empty chunk after each to test that they are skipped. */
function chunked(bytes: Uint8Array, chunkSize: number): ReadableStream<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length; offset += chunkSize) {
    chunks.push(bytes.slice(offset, offset + chunkSize), new Uint8Array(0));
  }
  return ReadableStream.from(chunks);
}

const BYTES = Uint8Array.from({ length: 20 }, (_, i) => i);
const noWrap = (error: unknown) => error as Error;

Deno.test("ByteReader.read() and peek() give exact counts across chunk boundaries", async () => {
  for (const chunkSize of [1, 3, 7, 20]) {
    const reader = new ByteReader(chunked(BYTES, chunkSize), noWrap);
    assert.deepEqual([...await reader.peek(5)], [0, 1, 2, 3, 4], `chunks of ${chunkSize}`);
    assert.deepEqual([...await reader.read(4)], [0, 1, 2, 3], `chunks of ${chunkSize}`);
    assert.deepEqual([...await reader.read(6)], [4, 5, 6, 7, 8, 9], `chunks of ${chunkSize}`);
    assert.equal(await reader.skip(5), 5);
    assert.deepEqual([...await reader.read(100)], [15, 16, 17, 18, 19], "fewer only at the end");
    assert.equal((await reader.read(1)).length, 0);
    assert.equal((await reader.peek(1)).length, 0);
  }
});

Deno.test("ByteReader.skip() returns how many bytes there were", async () => {
  const reader = new ByteReader(chunked(BYTES, 6), noWrap);
  await reader.read(2);
  assert.equal(await reader.skip(Infinity), 18);
  assert.equal(await reader.skip(10), 0);
});

Deno.test("ByteReader.remaining() streams the buffered bytes first, then the rest of the source", async () => {
  const reader = new ByteReader(chunked(BYTES, 8), noWrap);
  await reader.peek(10);
  await reader.read(3);
  const rest = new Uint8Array(await new Response(reader.remaining()).arrayBuffer());
  assert.deepEqual([...rest], [...BYTES.subarray(3)]);
});

Deno.test("ByteReader passes an error of the source through wrapError, once", async () => {
  let pulls = 0;
  const failing = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulls++ === 0) controller.enqueue(Uint8Array.of(1, 2));
      else controller.error(new Error("connection reset"));
    },
  });
  const reader = new ByteReader(failing, (error) => new Error(`wrapped: ${(error as Error).message}`));
  await assert.rejects(reader.read(4), /^Error: wrapped: connection reset$/);
  assert.deepEqual([...await reader.read(4)], [1, 2], "what came before the error is kept; no second error");
  assert.equal(pulls, 2, "the failed source is not read again");
});

Deno.test("ByteReader.cancel() releases the source with the reason", async () => {
  let reason: unknown;
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(Uint8Array.of(1));
    },
    cancel(why) {
      reason = why;
    },
  });
  const reader = new ByteReader(source, noWrap);
  await reader.read(1);
  await reader.cancel("done");
  assert.equal(reason, "done");
  assert.equal((await reader.read(1)).length, 0);
});

Deno.test("concat() joins chunks, cut to a length", () => {
  const chunks = [Uint8Array.of(1, 2), Uint8Array.of(3), Uint8Array.of(4, 5, 6)];
  assert.deepEqual([...concat(chunks)], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...concat(chunks, 4)], [1, 2, 3, 4]);
  assert.deepEqual([...concat([], 0)], []);
});

Deno.test("startsWith() compares a prefix of bytes", () => {
  assert.equal(startsWith(Uint8Array.of(1, 2, 3), [1, 2]), true);
  assert.equal(startsWith(Uint8Array.of(1, 2, 3), Uint8Array.of(1, 3)), false);
  assert.equal(startsWith(Uint8Array.of(1), [1, 2]), false);
  assert.equal(startsWith(Uint8Array.of(), []), true);
});
