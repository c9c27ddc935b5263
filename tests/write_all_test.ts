import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { writeAll, writeAllSync } from "../src/write_all.ts";

/** A writer that takes at most `most` bytes a write, keeping them in `taken`. */
function partWriter(most: number) {
  const taken: number[] = [];
  const take = (bytes: Uint8Array) => {
    const part = bytes.subarray(0, most);
    taken.push(...part);
    return part.byteLength;
  };
  return { taken, write: (bytes: Uint8Array) => Promise.resolve(take(bytes)), writeSync: take };
}

Deno.test("writeAll() writes every byte through writes that each take only some", async () => {
  const writer = partWriter(3);
  await writeAll(writer, new Uint8Array([1, 2, 3, 4, 5, 6, 7]));
  assertEquals(writer.taken, [1, 2, 3, 4, 5, 6, 7]);
  await writeAll(writer, new Uint8Array(0));
  assertEquals(writer.taken.length, 7, "nothing to write, no write");
});

Deno.test("writeAll() rejects when a write takes no bytes, rather than asking forever", async () => {
  const error = await assertRejects(() => writeAll(partWriter(0), new Uint8Array(5)));
  assertEquals(error.message, "a write took none of the 5 bytes left");
});

Deno.test("writeAllSync() writes every byte at once, and throws when a write takes none", () => {
  const writer = partWriter(2);
  writeAllSync(writer, new Uint8Array([9, 8, 7, 6, 5]));
  assertEquals(writer.taken, [9, 8, 7, 6, 5]);
  let message = "";
  try {
    writeAllSync(partWriter(0), new Uint8Array(1));
  } catch (error) {
    message = (error as Error).message;
  }
  assert(message.includes("took none of the 1 bytes"), message);
});
