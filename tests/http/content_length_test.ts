/** The one Content-Length parser: one or more digits, a safe integer, nothing else. */

import assert from "node:assert/strict";
import { parseContentLength } from "../../src/http/content_length.ts";

Deno.test("parseContentLength() reads non-negative integers only", () => {
  const cases: [string | null | undefined, number | undefined][] = [
    ["0", 0],
    ["123", 123],
    ["52428800", 52428800],
    [" 42\t", 42],
    ["007", 7],
    ["9007199254740991", 9007199254740991],
    [null, undefined],
    [undefined, undefined],
    ["", undefined],
    [" ", undefined],
    ["-1", undefined],
    ["+5", undefined],
    ["1.5", undefined],
    ["1e3", undefined],
    ["0x10", undefined],
    ["12abc", undefined],
    ["1 2", undefined],
    ["12, 12", undefined],
    ["9007199254740992", undefined],
    ["99999999999999999999", undefined],
    ["\u0661", undefined],
  ];
  for (const [value, expected] of cases) {
    assert.equal(parseContentLength(value), expected, JSON.stringify(value));
  }
});
