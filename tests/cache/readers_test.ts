import assert from "node:assert/strict";
import { Readers } from "../../src/cache/readers.ts";

Deno.test("Readers counts the clients of each path until each has ended, once", () => {
  const readers = new Readers();
  assert.equal(readers.has("/c/a"), false);
  const first = readers.begin("/c/a");
  const second = readers.begin("/c/a");
  assert.equal(readers.has("/c/a"), true);
  assert.equal(readers.has("/c/b"), false);
  first();
  first(); // a second call of the same release changes nothing
  assert.equal(readers.has("/c/a"), true, "the second client still reads it");
  second();
  assert.equal(readers.has("/c/a"), false);
});
