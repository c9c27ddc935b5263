/**
 * Refusing HTTP/1.1 request heads: malformed request lines, versions, limits, Host, header lines, line endings
 * and message framing, each with its status; and properties over arbitrary and generated heads.
 */

import fc from "fast-check";
import {
  headerOf,
  isHeadProblem,
  MAX_HEAD_BYTES,
  MAX_HEADER_LINES,
  MAX_REQUEST_LINE_BYTES,
  parseRequestHead,
} from "../../src/server/http1_head.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { assertRefused, bytesOf, endOf, GET, headOf, problemOf } from "../helpers/http1_heads.ts";

Deno.test("parseRequestHead() refuses malformed request lines with 400", () => {
  assertRefused(400, [
    "\r\n",
    "\r\n\r\n",
    " GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
    "GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n",
    "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / http/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.10\r\nHost: a\r\n\r\n",
    "GET / HTTP/x.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\rHost: a\r\n\r\n",
    "GET /\r\n\r\n",
    "GET / HTTP/1.1",
    "/ HTTP/1.1\r\nHost: a\r\n\r\n",
  ]);
});

Deno.test("parseRequestHead() refuses an HTTP/0.9-style request line without a version with 400", () => {
  assertRefused(400, ["GET /\r\n\r\n", "GET /index.html\r\n\r\n", "GET\r\n\r\n"]);
});

Deno.test("parseRequestHead() refuses versions other than HTTP/1.0 and HTTP/1.1 with 505", () => {
  for (const version of ["HTTP/2.0", "HTTP/1.2", "HTTP/1.9", "HTTP/0.9", "HTTP/3.0", "HTTP/9.9"]) {
    const problem = problemOf(`GET / ${version}\r\nHost: a\r\n\r\n`);
    assertEquals(problem.status, 505, version);
  }
});

Deno.test("parseRequestHead() refuses a request line longer than MAX_REQUEST_LINE_BYTES with 414", () => {
  const target = "/" + "a".repeat(MAX_REQUEST_LINE_BYTES);
  assertEquals(problemOf(`GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`).status, 414);
  assertEquals(problemOf(`${"M".repeat(MAX_REQUEST_LINE_BYTES)} / HTTP/1.1\r\nHost: a\r\n\r\n`).status, 414);
  const longest = "/" + "a".repeat(MAX_REQUEST_LINE_BYTES - "GET / HTTP/1.1".length);
  assertEquals(headOf(`GET ${longest} HTTP/1.1\r\nHost: a\r\n\r\n`).target, longest);
});

Deno.test("parseRequestHead() refuses a request line one byte over MAX_REQUEST_LINE_BYTES with 414", () => {
  // The request line is METHOD SP TARGET SP HTTP/1.1 (RFC 9112, section 3), without its CRLF.
  const target = "/" + "a".repeat(MAX_REQUEST_LINE_BYTES + 1 - "GET / HTTP/1.1".length);
  const line = `GET ${target} HTTP/1.1`;
  assertEquals(line.length, MAX_REQUEST_LINE_BYTES + 1);
  assertEquals(problemOf(`${line}\r\nHost: a\r\n\r\n`).status, 414);
});

Deno.test("parseRequestHead() refuses a head larger than MAX_HEAD_BYTES with 431", () => {
  const start = `${GET}X-Fill: `;
  const fill = (size: number) => `${start}${"x".repeat(size - start.length - 4)}\r\n\r\n`;
  assertEquals(fill(MAX_HEAD_BYTES).length, MAX_HEAD_BYTES);
  assertEquals(headerOf(headOf(fill(MAX_HEAD_BYTES)), "x-fill")?.length, MAX_HEAD_BYTES - start.length - 4);
  assertEquals(problemOf(fill(MAX_HEAD_BYTES + 1)).status, 431);
  assertEquals(problemOf(fill(4 * MAX_HEAD_BYTES)).status, 431);
  // Even when it is malformed as well.
  assertEquals(parseRequestHead(new Uint8Array(MAX_HEAD_BYTES + 1)), {
    status: 431,
    message: problemOf(fill(MAX_HEAD_BYTES + 1)).message,
  });
});

Deno.test("parseRequestHead() refuses more than MAX_HEADER_LINES header lines with 431", () => {
  const lines = (count: number) => Array.from({ length: count - 1 }, (_, i) => `X-${i}: ${i}\r\n`).join("");
  const most = headOf(`${GET}${lines(MAX_HEADER_LINES)}\r\n`);
  assertEquals(most.headers.length, MAX_HEADER_LINES);
  assertEquals(problemOf(`${GET}${lines(MAX_HEADER_LINES + 1)}\r\n`).status, 431);
  assertEquals(problemOf(`${GET}${"A: b\r\n".repeat(1000)}\r\n`).status, 431);
});

Deno.test("parseRequestHead() needs exactly one Host in HTTP/1.1", () => {
  assertRefused(400, [
    "GET / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\r\nX-Host: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
    "GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n",
  ]);
  assertEquals(headOf("GET / HTTP/1.1\r\nhOsT: a\r\n\r\n").host, "a");
});

Deno.test("parseRequestHead() refuses header lines that are folded, malformed or hold control characters", () => {
  assertRefused(400, [
    `${GET}X-A: b\r\n  c\r\n\r\n`,
    `${GET}X-A: b\r\n\tc\r\n\r\n`,
    "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
    `${GET}X-A : b\r\n\r\n`,
    `${GET}X-A\t: b\r\n\r\n`,
    `${GET}: b\r\n\r\n`,
    `${GET}X-A b\r\n\r\n`,
    `${GET}X(A): b\r\n\r\n`,
    `${GET}X-A\xe9: b\r\n\r\n`,
    `${GET}X-A: b\x00c\r\n\r\n`,
    `${GET}X-A: b\x01\r\n\r\n`,
    `${GET}X-A: \x1bc\r\n\r\n`,
    `${GET}X-A: b\x7f\r\n\r\n`,
    `${GET}X-A: b\x0bc\r\n\r\n`,
  ]);
  assertEquals(headerOf(headOf(`${GET}X-A: b\tc\r\n\r\n`), "x-a"), "b\tc", "tab is allowed in a value");
});

Deno.test("parseRequestHead() refuses bare LF and bare CR line endings with 400", () => {
  assertRefused(400, [
    "GET / HTTP/1.1\nHost: a\n\n",
    "GET / HTTP/1.1\r\nHost: a\n\n",
    "GET / HTTP/1.1\r\nHost: a\r\n\n",
    "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n\r",
    "GET / HTTP/1.1\r\nHost: a\r\n\r\r",
    "GET / HTTP/1.1\r\nHost: a\r\n",
    "GET / HTTP/1.1\r\nHost: a",
  ]);
  // Heads cut where findHeadEnd says they end, as the connection passes them.
  for (const text of ["GET / HTTP/1.1\nHost: a\n\n", "GET / HTTP/1.1\r\nHost: a\n\nGET / HTTP/1.1\r\n"]) {
    assert(endOf(text) > 0);
    assertEquals(problemOf(text.slice(0, endOf(text))).status, 400);
  }
});

Deno.test("parseRequestHead() refuses non-numeric or conflicting Content-Length, or one beside Transfer-Encoding", () => {
  const post = "POST /x HTTP/1.1\r\nHost: a\r\n";
  assertRefused(400, [
    `${post}Content-Length: x\r\n\r\n`,
    `${post}Content-Length: -1\r\n\r\n`,
    `${post}Content-Length: +1\r\n\r\n`,
    `${post}Content-Length: 1.0\r\n\r\n`,
    `${post}Content-Length: 0x10\r\n\r\n`,
    `${post}Content-Length: 1 2\r\n\r\n`,
    `${post}Content-Length:\r\n\r\n`,
    `${post}Content-Length: 1e3\r\n\r\n`,
    `${post}Content-Length: 5\r\nContent-Length: 6\r\n\r\n`,
    `${post}Content-Length: 5, 6\r\n\r\n`,
    `${post}Content-Length: 0\r\ncontent-length: 1\r\n\r\n`,
    `${post}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n`,
    `${post}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n`,
    `${post}Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n`,
  ]);
  assertEquals(headOf(`${post}Content-Length: 7\r\nContent-Length: 7\r\n\r\n`).hasBody, true);
});

/** The status of any refusal. */
const STATUSES = new Set([400, 414, 431, 505]);

/** Bytes that look enough like a head to get past the request line now and then. */
const HEADISH = fc.array(
  fc.oneof(
    fc.constantFrom(
      "GET",
      " ",
      "/",
      "HTTP/1.1",
      "HTTP/1.0",
      "HTTP/2.0",
      "\r\n",
      "\r",
      "\n",
      ":",
      "\t",
      "Host",
    ),
    fc.constantFrom(..."Content-Length Transfer-Encoding Connection close If-Range Range 5 x".split(" ")),
    fc.string({ unit: "binary-ascii", maxLength: 4 }),
  ),
  { maxLength: 40 },
).map((pieces) => bytesOf(pieces.join("")));

Deno.test("parseRequestHead() never throws on arbitrary bytes (property)", () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), HEADISH), (bytes) => {
      const parsed = parseRequestHead(bytes);
      if (isHeadProblem(parsed)) {
        assert(STATUSES.has(parsed.status), `status ${parsed.status}`);
        assertEquals(typeof parsed.message, "string");
      } else {
        assert(Array.isArray(parsed.headers));
        assert(parsed.minorVersion === 0 || parsed.minorVersion === 1);
      }
    }),
    { numRuns: 2000 },
  );
});

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/;
/** Header values without control characters or surrounding spaces, with bytes 0x80-0xFF now and then. */
const VALUE = fc.oneof(
  fc.constant(""),
  fc.stringMatching(/^[!-~\x80-\xff](?:[ \t!-~\x80-\xff]{0,20}[!-~\x80-\xff])?$/),
);
const FORBIDDEN_NAMES = new Set(["host", "content-length", "transfer-encoding"]);

Deno.test("parseRequestHead() gives back the method, target and headers of generated heads (property)", () => {
  fc.assert(
    fc.property(
      fc.stringMatching(TOKEN),
      fc.stringMatching(/^\/[A-Za-z0-9._~%!$&'()*+,;=:@\/-]{0,30}(?:\?[A-Za-z0-9=&%./-]{0,10})?$/),
      fc.constantFrom<0 | 1>(0, 1),
      fc.stringMatching(/^[a-z0-9.-]{1,10}(?::[0-9]{1,5})?$/),
      fc.array(
        fc.tuple(fc.stringMatching(TOKEN).filter((name) => !FORBIDDEN_NAMES.has(name.toLowerCase())), VALUE),
        { maxLength: 8 },
      ),
      fc.constantFrom("", " ", "\t", "  "),
      (method, target, minor, host, headers, space) => {
        const lines = headers.map(([name, value]) => `${name}:${space}${value}${space}\r\n`).join("");
        const head = headOf(`${method} ${target} HTTP/1.${minor}\r\nHost: ${host}\r\n${lines}\r\n`);
        assertEquals(head.method, method);
        assertEquals(head.target, target);
        assertEquals(head.minorVersion, minor);
        assertEquals(head.host, host);
        assertEquals(head.headers, [
          ["host", host],
          ...headers.map(([name, value]): [string, string] => [name.toLowerCase(), value]),
        ]);
      },
    ),
    { numRuns: 500 },
  );
});
