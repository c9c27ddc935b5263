/** Copying cached files through JavaScript in large pieces: whole files, ranges, refusals and broken clients. */

import { join } from "node:path";
import { COPY_BUFFER_BYTES, copyFileRange } from "../../src/server/file_copy.ts";
import { assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { concat } from "../../src/byte_reader.ts";

const HEAD = new TextEncoder().encode("HTTP/1.1 200 OK\r\n\r\n");

/** A write that keeps copies of what it is given, taking `limit` writes at most. */
function recorder(limit = Infinity) {
  const parts: Uint8Array[] = [];
  return {
    write: (bytes: Uint8Array) => {
      if (parts.length >= limit) return Promise.resolve(false);
      parts.push(bytes.slice());
      return Promise.resolve(true);
    },
    bytes: () => concat(parts),
    writes: () => parts.length,
    sizes: () => parts.map((part) => part.length),
  };
}

Deno.test("copyFileRange() writes the head and the whole file in pieces of COPY_BUFFER_BYTES", async () => {
  await withTempDir(async (dir) => {
    const bytes = randomBytes(3 * COPY_BUFFER_BYTES + 17);
    const path = join(dir, "f");
    await Deno.writeFile(path, bytes);
    const out = recorder();
    const range = { path, start: 0, length: bytes.length, size: bytes.length };
    assertEquals(await copyFileRange(range, { head: HEAD, write: out.write }), "sent");
    const all = out.bytes();
    assertEquals(all.subarray(0, HEAD.length), HEAD);
    assertEquals(all.subarray(HEAD.length), bytes);
    assertEquals(out.writes(), 4, "four pieces, the head in the first (a packet of its own would wait)");
    assertEquals(
      out.sizes()[0],
      COPY_BUFFER_BYTES,
      "the head and the file's first bytes fill the first piece",
    );
  });
});

Deno.test("copyFileRange() copies one range from its offset", async () => {
  await withTempDir(async (dir) => {
    const bytes = randomBytes(700_000);
    const path = join(dir, "f");
    await Deno.writeFile(path, bytes);
    const out = recorder();
    const range = { path, start: 123_456, length: 300_001, size: bytes.length };
    assertEquals(await copyFileRange(range, { head: HEAD, write: out.write }), "sent");
    assertEquals(out.bytes().subarray(HEAD.length), bytes.subarray(123_456, 423_457));
  });
});

Deno.test("copyFileRange() writes nothing for a missing file or one of another size", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "f");
    await Deno.writeFile(path, randomBytes(1000));
    const out = recorder();
    const missing = { path: join(dir, "gone"), start: 0, length: 10, size: 10 };
    assertEquals(await copyFileRange(missing, { head: HEAD, write: out.write }), "not_started");
    const changed = { path, start: 0, length: 1001, size: 1001 };
    assertEquals(await copyFileRange(changed, { head: HEAD, write: out.write }), "not_started");
    assertEquals(out.writes(), 0);
  });
});

Deno.test("copyFileRange() stops as failed when the client is gone", async () => {
  await withTempDir(async (dir) => {
    const bytes = randomBytes(4 * COPY_BUFFER_BYTES);
    const path = join(dir, "f");
    await Deno.writeFile(path, bytes);
    const out = recorder(2);
    const range = { path, start: 0, length: bytes.length, size: bytes.length };
    assertEquals(await copyFileRange(range, { head: HEAD, write: out.write }), "failed");
    assertEquals(out.writes(), 2, "the head and one piece, then nothing more was tried");
  });
});
