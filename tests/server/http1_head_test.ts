/**
 * Reading HTTP/1.1 request heads: finding a head's end, bytes as code units, and what parseRequestHead() reads
 * from an accepted head. Refused heads and the properties over arbitrary bytes are in
 * http1_head_refusals_test.ts.
 */

import fc from "fast-check";
import {
  findHeadEnd,
  headerOf,
  type HeadProblem,
  isHeadProblem,
  latin1,
  parseRequestHead,
  releaseHead,
} from "../../src/server/http1_head.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { bytesOf, endOf, GET, headOf } from "../helpers/http1_heads.ts";

Deno.test("findHeadEnd() finds the end of a CRLF head, or -1 while it is incomplete", () => {
  const text = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  assertEquals(endOf(text), text.length);
  for (let length = 0; length < text.length; length++) {
    assertEquals(endOf(text, 0, length), -1, `${length} bytes`);
  }
  assertEquals(endOf(""), -1);
  assertEquals(endOf("\r\n"), -1);
});

Deno.test("findHeadEnd() stops at the first head and ignores bytes past length", () => {
  const first = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
  const pipelined = first + "GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
  assertEquals(endOf(pipelined), first.length);
  // The empty line is in the buffer but not yet among the bytes read.
  assertEquals(endOf(pipelined, 0, first.length - 1), -1);
  const spare = new Uint8Array(64);
  spare.set(bytesOf("GET / HTTP/1.1\r\nHost: a\r\n"));
  assertEquals(findHeadEnd(spare, { from: 0, length: 25 }), -1, "zeros after length are not looked at");
});

Deno.test("findHeadEnd() finds the end of heads with bare LF line endings, so they can be refused", () => {
  const heads = [
    "GET / HTTP/1.1\nHost: a\n\n",
    "GET / HTTP/1.1\r\nHost: a\n\n",
    "GET / HTTP/1.1\r\nHost: a\r\n\n",
  ];
  heads.push("GET / HTTP/1.1\r\nHost: a\n\r\n", "\n\n");
  for (const text of heads) assertEquals(endOf(text), text.length, JSON.stringify(text));
  // A lone CR between lines is no empty line.
  assertEquals(endOf("GET / HTTP/1.1\r\nHost: a\r\r\n"), -1);
});

Deno.test("findHeadEnd() resumes a scan across reads with from = previous length - 3", () => {
  const heads = [
    "GET / HTTP/1.1\r\nHost: a\r\n\r\nrest",
    "GET / HTTP/1.0\n\nrest",
    "GET / HTTP/1.1\r\nX: y\r\n\n",
  ];
  for (const text of heads) {
    const whole = endOf(text);
    assert(whole > 0);
    // Every way of splitting the bytes into two reads finds the same end.
    for (let first = 0; first <= text.length; first++) {
      const early = endOf(text, -3, first);
      assertEquals(early >= 0 ? early : endOf(text, first - 3), whole, `split at ${first}`);
    }
  }
});

Deno.test("findHeadEnd() finds the same end however the bytes arrive (property)", () => {
  const piece = fc.constantFrom("\r", "\n", "\r\n", "a", "Host: x", " ");
  fc.assert(
    fc.property(
      fc.array(piece, { maxLength: 30 }),
      fc.array(fc.nat(40), { maxLength: 6 }),
      (pieces, cuts) => {
        const bytes = bytesOf(pieces.join(""));
        const whole = findHeadEnd(bytes, { from: 0, length: bytes.length });
        let scanned = 0;
        let found = -1;
        const reads = cuts.map((cut) => Math.min(cut, bytes.length)).sort((a, b) => a - b);
        for (const filled of [...reads, bytes.length]) {
          found = findHeadEnd(bytes, { from: scanned - 3, length: filled });
          if (found >= 0) break;
          scanned = filled;
        }
        assertEquals(found, whole);
      },
    ),
  );
});

Deno.test("latin1() maps each byte to the code unit of the same value", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const text = latin1(all);
  assertEquals(text.length, 256);
  for (let i = 0; i < 256; i++) assertEquals(text.charCodeAt(i), i);
  assertEquals(latin1(bytesOf("GET /x"), 4), "/x");
  assertEquals(latin1(bytesOf("GET /x"), 0, 3), "GET");
  assertEquals(latin1(bytesOf("abc"), 1, 1), "");
  assertEquals(latin1(new Uint8Array([0xc3, 0xa9])), "\u00c3\u00a9", "no UTF-8 decoding");
  // Longer than one piece of 4096 bytes.
  const long = Uint8Array.from({ length: 10_000 }, (_, i) => i % 256);
  const longText = latin1(long, 3, 9_999);
  assertEquals(longText.length, 9_996);
  for (let i = 0; i < longText.length; i++) {
    if (longText.charCodeAt(i) !== (i + 3) % 256) throw new Error(`code unit ${i} differs`);
  }
});

Deno.test("parseRequestHead() reads a GET head", () => {
  const head = headOf(
    "GET /core/os/x86_64/core.db?x=1 HTTP/1.1\r\nHost:  flexo:7878 \r\nUser-Agent: pacman/7.0.0 (Linux)\r\n" +
      "Accept: */*\r\nX-Dup: 1\r\nx-dup:\t2\t\r\nX-Empty:\r\n\r\n",
  );
  assertEquals(head.method, "GET");
  assertEquals(head.target, "/core/os/x86_64/core.db?x=1");
  assertEquals(head.minorVersion, 1);
  assertEquals(head.host, "flexo:7878");
  assertEquals(head.close, false);
  assertEquals(head.hasBody, false);
  assertEquals(head.conditional, false);
  assertEquals(head.headers, [
    ["host", "flexo:7878"],
    ["user-agent", "pacman/7.0.0 (Linux)"],
    ["accept", "*/*"],
    ["x-dup", "1"],
    ["x-dup", "2"],
    ["x-empty", ""],
  ]);
  assert(head.headers === head.headers, "the list is made once");
});

Deno.test("parseRequestHead() keeps the method and target as sent", () => {
  const targets = ["/a/../b", "/a/%2e%2e/b", "/%2E./x", "/./x//y", "/a?b=../c#d", "http://other/x", "*"];
  for (const target of targets) {
    assertEquals(headOf(`GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`).target, target);
  }
  for (const method of ["HEAD", "get", "PROPFIND", "M-SEARCH", "!#$%&'*+-.^_`|~"]) {
    assertEquals(headOf(`${method} / HTTP/1.1\r\nHost: a\r\n\r\n`).method, method);
  }
});

Deno.test("parseRequestHead() reads header lines from the bytes until releaseHead(), and keeps a list made before", () => {
  const bytes = bytesOf("GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n");
  const head = parseRequestHead(bytes);
  assert(!isHeadProblem(head));
  assertEquals(head.headers, [["host", "a"], ["x-a", "b"]]);
  releaseHead(head);
  bytes.fill(0x7a);
  assertEquals(head.headers, [["host", "a"], ["x-a", "b"]], "the list made before the release");
  assertEquals([head.method, head.target, head.host], ["GET", "/x", "a"]);
  const unread = parseRequestHead(bytesOf("GET /y HTTP/1.1\r\nHost: a\r\n\r\n"));
  assert(!isHeadProblem(unread));
  releaseHead(unread);
  let thrown: unknown;
  try {
    unread.headers;
  } catch (error) {
    thrown = error;
  }
  assert(
    thrown instanceof Error && /released/.test(thrown.message),
    `asking after the release throws: ${thrown}`,
  );
  assertEquals(unread.target, "/y", "what was parsed at once stays");
});

Deno.test("parseRequestHead() keeps bytes 0x80-0xFF in values as the same code units", () => {
  const head = headOf("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xe9 \xc3\xa9\xff\x80\r\n\r\n");
  assertEquals(headerOf(head, "x-name"), "caf\u00e9 \u00c3\u00a9\u00ff\u0080");
});

Deno.test("parseRequestHead() reads HTTP/1.0: no Host needed, closing unless keep-alive is asked for", () => {
  const plain = headOf("GET /x HTTP/1.0\r\n\r\n");
  assertEquals([plain.minorVersion, plain.host, plain.close], [0, undefined, true]);
  assertEquals(plain.headers, []);
  assertEquals(headOf("GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").close, false);
  assertEquals(headOf("GET /x HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n").close, false);
  assertEquals(headOf("GET /x HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").close, true);
  assertEquals(headOf("GET /x HTTP/1.0\r\nHost: h\r\nConnection: upgrade\r\n\r\n").close, true);
  assertEquals(headOf("GET /x HTTP/1.0\r\nHost: h\r\n\r\n").host, "h");
});

Deno.test("parseRequestHead() closes on Connection: close, also in a token list, in any case", () => {
  for (const value of ["close", "Close", "CLOSE", "keep-alive, close", "upgrade,close", " TE , Close "]) {
    assertEquals(headOf(`${GET}Connection: ${value}\r\n\r\n`).close, true, value);
  }
  for (const value of ["keep-alive", "upgrade", "closed", "", "x-close"]) {
    assertEquals(headOf(`${GET}Connection: ${value}\r\n\r\n`).close, false, value);
  }
  assertEquals(headOf(`${GET}CONNECTION: close\r\n\r\n`).close, true);
  assertEquals(headOf(`${GET}Connection: keep-alive\r\nConnection: close\r\n\r\n`).close, true);
});

Deno.test("parseRequestHead() tells whether a body is announced", () => {
  const cases: [string, boolean][] = [
    ["", false],
    ["Content-Length: 0\r\n", false],
    ["Content-Length: 000\r\n", false],
    ["Content-Length: 1\r\n", true],
    ["content-length: 12345\r\n", true],
    ["Content-Length: 5\r\nContent-Length: 5\r\n", true],
    ["Content-Length: 5, 5\r\n", true],
    ["Content-Length: 0\r\nContent-Length: 0\r\n", false],
    ["Transfer-Encoding: chunked\r\n", true],
    ["TRANSFER-ENCODING: gzip, chunked\r\n", true],
  ];
  for (const [lines, hasBody] of cases) {
    assertEquals(headOf(`POST /x HTTP/1.1\r\nHost: a\r\n${lines}\r\n`).hasBody, hasBody, lines);
  }
});

Deno.test("parseRequestHead() marks heads with Range or an If-* header as conditional", () => {
  const conditional = [
    "Range: bytes=0-",
    "range: bytes=5-",
    'If-None-Match: "abc"',
    "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT",
    'If-Range: "abc"',
    "If-Match: *",
    "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT",
    "IF-SOMETHING-NEW: 1",
    "if-x: 1",
  ];
  for (const line of conditional) assertEquals(headOf(`${GET}${line}\r\n\r\n`).conditional, true, line);
  const others = [
    "Iffy: 1",
    "If: 1",
    "If-: 1",
    "Ifx-y: 1",
    "X-If-Range: 1",
    "Ranges: 1",
    "Rang: 1",
    "Accept: 1",
  ];
  for (const line of others) assertEquals(headOf(`${GET}${line}\r\n\r\n`).conditional, false, line);
  assertEquals(headOf(`${GET}Accept: */*\r\nRange: bytes=1-2\r\nX-A: b\r\n\r\n`).conditional, true);
});

Deno.test("isHeadProblem() tells problems from heads and requests", () => {
  const head = parseRequestHead(bytesOf(`${GET}\r\n`));
  const problem = parseRequestHead(bytesOf("nonsense"));
  assertEquals(isHeadProblem(head), false);
  assertEquals(isHeadProblem(problem), true);
  assertEquals(isHeadProblem(new Request("http://a/")), false);
  assertEquals(isHeadProblem({ status: 400, message: "x" } as HeadProblem), true);
});

Deno.test("headerOf() gives a header's value, several lines joined with a comma", () => {
  const head = headOf(`${GET}Accept: a\r\nX-Dup: 1\r\nX-DUP: 2\r\nx-dup: 3\r\n\r\n`);
  assertEquals(headerOf(head, "accept"), "a");
  assertEquals(headerOf(head, "x-dup"), "1, 2, 3");
  assertEquals(headerOf(head, "host"), "flexo:7878");
  assertEquals(headerOf(head, "x-missing"), undefined);
  assertEquals(headerOf(head, "Accept"), undefined, "names are looked up in lower case");
});
