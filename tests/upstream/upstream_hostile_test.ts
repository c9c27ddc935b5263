/**
 * flexo's HTTP/1.1 client to mirrors against hostile mirrors: answers that cost the client more than they cost
 * the mirror, over scripted connections that hand over their bytes one per read.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { client } from "../helpers/scripted_upstream.ts";
import { takeDirectBody } from "../../src/http/direct_body.ts";

const encoder = new TextEncoder();

/** A connection that answers with `bytes`, one byte per read (as a mirror dripping them a packet each). */
function drippingConnection(bytes: Uint8Array): Deno.Conn {
  let at = 0;
  return {
    read(view: Uint8Array) {
      if (at >= bytes.length) return Promise.resolve(null);
      view[0] = bytes[at++];
      return Promise.resolve(1);
    },
    write: (view: Uint8Array) => Promise.resolve(view.length),
    close() {},
    setNoDelay() {},
  } as unknown as Deno.Conn;
}

Deno.test("createUpstreamClient().fetch() looks at each byte of a head dripped a byte per read once, not again after every read", async () => {
  // A head just under the 64 KiB limit, and a body as long: both come a byte per read.
  const filler = ("X-Filler: " + "a".repeat(990) + "\r\n").repeat(63);
  const head = `HTTP/1.1 200 OK\r\n${filler}Content-Length: 2\r\n\r\nok`;
  const body = "b".repeat(head.length);
  const answers = [head, `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`];
  const upstream = client({
    connect: () => Promise.resolve(drippingConnection(encoder.encode(answers.shift()!))),
  });
  try {
    const timed = async (path: string) => {
      const started = performance.now();
      const direct = takeDirectBody((await upstream.fetch(`http://mirror.test${path}`)).body!)!;
      const buffer = new Uint8Array(64 * 1024);
      let length = 0;
      for (let read; (read = await direct.readInto(buffer)) !== null;) length += read;
      return { length, ms: performance.now() - started };
    };
    const dripped = await timed("/head");
    const linear = await timed("/body");
    assertEquals([dripped.length, linear.length], [2, body.length]);
    // Searching the whole head again after every byte took 3-5 s, some 90 times as long as the body.
    assert(
      dripped.ms < 5 * linear.ms + 100,
      `the head took ${Math.round(dripped.ms)} ms, the body of as many bytes ${Math.round(linear.ms)} ms`,
    );
  } finally {
    upstream.close();
  }
});

Deno.test("createUpstreamClient().fetch() gives a stream's reader chunks that hold no more memory than twice their bytes", async () => {
  // A body until the close (as of a mirror status), dripped a byte per read: 64 KiB read buffers, one per byte,
  // were each kept by the one-byte chunk made of it.
  const body = "x".repeat(400);
  const upstream = client({
    connect: () =>
      Promise.resolve(
        drippingConnection(encoder.encode(`HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n${body}`)),
      ),
  });
  try {
    const chunks: Uint8Array[] = [];
    for await (const chunk of (await upstream.fetch("http://mirror.test/status.json")).body!) {
      chunks.push(chunk);
    }
    assertEquals(chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0), body.length);
    const held = new Set(chunks.map((chunk) => chunk.buffer)).values().reduce(
      (sum, buffer) => sum + buffer.byteLength,
      0,
    );
    assert(held <= 2 * body.length, `${body.length} bytes in chunks that hold ${held} bytes`);
  } finally {
    upstream.close();
  }
});
