/**
 * Heads for the tests of parseRequestHead() and findHeadEnd(): any bytes written as text, the head or the
 * problem a text parses to.
 *
 * @module
 */

import {
  findHeadEnd,
  type HeadProblem,
  isHeadProblem,
  parseRequestHead,
  type RequestHead,
} from "../../src/server/http1_head.ts";
import { assert, assertEquals } from "./assert.ts";

/** The code units of `text` as bytes (each below 0x100), so that tests can write any byte into a head. */
export function bytesOf(text: string): Uint8Array {
  return Uint8Array.from(text, (char) => char.charCodeAt(0));
}

/** The head parsed from `text`, failing when it is refused. */
export function headOf(text: string): RequestHead {
  const parsed = parseRequestHead(bytesOf(text));
  if (isHeadProblem(parsed)) {
    throw new Error(`refused (${parsed.status} ${parsed.message}): ${JSON.stringify(text)}`);
  }
  return parsed;
}

/** The problem `text` is refused with, failing when it is accepted. */
export function problemOf(text: string): HeadProblem {
  const parsed = parseRequestHead(bytesOf(text));
  if (!isHeadProblem(parsed)) throw new Error(`accepted: ${JSON.stringify(text.slice(0, 200))}`);
  assert(parsed.message.length > 0, "a problem has a message");
  return parsed;
}

/** Fails unless each head in `texts` is refused with `status`. */
export function assertRefused(status: HeadProblem["status"], texts: string[]): void {
  for (const text of texts) {
    assertEquals(problemOf(text).status, status, JSON.stringify(text.slice(0, 200)));
  }
}

/** findHeadEnd() of the bytes of `text`, looking at `length` of them from `from` on. */
export function endOf(text: string, from = 0, length = text.length): number {
  return findHeadEnd(bytesOf(text), { from, length });
}

/** A GET request head without its blank line. */
export const GET = "GET /core/os/x86_64/core.db HTTP/1.1\r\nHost: flexo:7878\r\n";
