/**
 * The body side of responses: declared lengths, chunk framing, and telling bodies in memory from streams that
 * wait for I/O.
 */

import { concat } from "../../src/byte_reader.ts";
import { chunked, collect, COLLECT_LIMIT, LAST_CHUNK } from "../../src/server/http1_body.ts";
import { assert, assertEquals } from "../helpers/assert.ts";

const decoder = new TextDecoder();

Deno.test("chunked() frames bytes with their length in hex, and LAST_CHUNK ends a body", () => {
  const bytes = new Uint8Array(300).fill(0x61);
  const framed = decoder.decode(chunked(bytes));
  assertEquals(framed, `12c\r\n${"a".repeat(300)}\r\n`);
  assertEquals(decoder.decode(LAST_CHUNK), "0\r\n\r\n");
});

Deno.test("collect() reads a body in memory to its end", async () => {
  const collected = await collect(new Response("hello").body!.getReader());
  assert(collected.ended);
  assertEquals(collected.size, 5);
  assertEquals(decoder.decode(concat(collected.chunks)), "hello");
});

Deno.test("collect() stops at a stream that waits for I/O and hands over the read still running", async () => {
  let later: ReadableStreamDefaultController<Uint8Array> | undefined;
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new Uint8Array([1]));
      later = controller;
    },
  }, { highWaterMark: 0 });
  const collected = await collect(stream.getReader());
  assert(!collected.ended);
  assertEquals(collected.chunks, [new Uint8Array([1])]);
  assert(collected.pending !== undefined);
  later!.enqueue(new Uint8Array([2]));
  later!.close();
  assertEquals((await collected.pending).value, new Uint8Array([2]));
});

Deno.test("collect() stops after COLLECT_LIMIT bytes of a long body in memory", async () => {
  const parts = 4;
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < parts; i++) controller.enqueue(new Uint8Array(COLLECT_LIMIT / 2 + 1));
      controller.close();
    },
  });
  const reader = stream.getReader();
  const collected = await collect(reader);
  assert(!collected.ended, "a long body is not held whole");
  assert(collected.size > COLLECT_LIMIT && collected.size <= COLLECT_LIMIT + COLLECT_LIMIT / 2 + 1);
  assert(collected.pending !== undefined);
  let rest = 0;
  let next = await collected.pending;
  while (!next.done) {
    rest += next.value.length;
    next = await reader.read();
  }
  assertEquals(collected.size + rest, parts * (COLLECT_LIMIT / 2 + 1), "nothing lost");
});
