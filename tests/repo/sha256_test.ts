import { createHash } from "node:crypto";
import { sha256Hex } from "../../src/repo/sha256.ts";
import { assertEquals } from "../helpers/assert.ts";

Deno.test("sha256Hex() gives node:crypto's SHA-256 for every length around the block and padding edges", () => {
  const data = crypto.getRandomValues(new Uint8Array(1100));
  for (const length of [0, 1, 3, 55, 56, 63, 64, 65, 119, 120, 566, 1100]) {
    const bytes = data.subarray(0, length);
    assertEquals(sha256Hex(bytes), createHash("sha256").update(bytes).digest("hex"), `${length} bytes`);
  }
});

Deno.test("sha256Hex() gives the first digits of the digest when asked for fewer", () => {
  const bytes = new TextEncoder().encode("abc");
  assertEquals(sha256Hex(bytes, 32), "ba7816bf8f01cfea414140de5dae2223");
  assertEquals(sha256Hex(bytes, 5), "ba781");
});
