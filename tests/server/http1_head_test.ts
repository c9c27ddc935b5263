import fc from "fast-check";
import {
  findHeadEnd,
  headerOf,
  type HeadProblem,
  isHeadProblem,
  latin1,
  MAX_HEAD_BYTES,
  MAX_HEADER_LINES,
  MAX_REQUEST_LINE_BYTES,
  parseRequestHead,
  releaseHead,
  type RequestHead,
} from "../../src/server/http1_head.ts";
import { assert, assertEquals } from "../helpers/assert.ts";

/** The code units of `text` as bytes (each below 0x100), so that tests can write any byte into a head. */
function bytesOf(text: string): Uint8Array {
  return Uint8Array.from(text, (char) => char.charCodeAt(0));
}

/** The head parsed from `text`, failing when it is refused. */
function headOf(text: string): RequestHead {
  const parsed = parseRequestHead(bytesOf(text));
  if (isHeadProblem(parsed)) {
    throw new Error(`refused (${parsed.status} ${parsed.message}): ${JSON.stringify(text)}`);
  }
  return parsed;
}

/** The problem `text` is refused with, failing when it is accepted. */
function problemOf(text: string): HeadProblem {
  const parsed = parseRequestHead(bytesOf(text));
  if (!isHeadProblem(parsed)) throw new Error(`accepted: ${JSON.stringify(text.slice(0, 200))}`);
  assert(parsed.message.length > 0, "a problem has a message");
  return parsed;
}

/** Fails unless each head in `texts` is refused with `status`. */
function assertRefused(status: HeadProblem["status"], texts: string[]): void {
  for (const text of texts) {
    assertEquals(problemOf(text).status, status, JSON.stringify(text.slice(0, 200)));
  }
}

/** findHeadEnd() of the bytes of `text`, looking at `length` of them from `from` on. */
function endOf(text: string, from = 0, length = text.length): number {
  return findHeadEnd(bytesOf(text), { from, length });
}

const GET = "GET /core/os/x86_64/core.db HTTP/1.1\r\nHost: flexo:7878\r\n";

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
