import fc from "fast-check";
import { latin1 } from "../../src/server/http1_head.ts";
import {
  encodeLatin1,
  httpDate,
  HttpDates,
  isBodiless,
  reasonPhrase,
  responseHead,
} from "../../src/server/http1_response.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { VERSION } from "../../src/version.ts";

const DATE = "Thu, 01 Jan 1970 00:00:00 GMT";
const SERVER = `server: flexo/${VERSION}`;
/** RFC 7231's IMF-fixdate (RFC 9110, section 5.6.7). */
const IMF_FIXDATE =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** The lines of a response head, without the empty line that ends it; fails unless it ends with one. */
function linesOf(head: Uint8Array): string[] {
  const text = latin1(head);
  assert(text.endsWith("\r\n\r\n"), `ends with an empty line: ${JSON.stringify(text)}`);
  const lines = text.slice(0, -4).split("\r\n");
  for (const line of lines) assert(line.length > 0 && !line.includes("\n") && !line.includes("\r"), line);
  return lines;
}

Deno.test("responseHead() writes the status line, the headers in order and the framing", () => {
  const head = responseHead(
    { code: 200 },
    [["content-type", "application/octet-stream"], ["date", DATE], ["x-a", "1"], ["x-a", "2"]],
    { length: 1234, close: false },
  );
  assertEquals(
    latin1(head),
    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ndate: " + DATE +
      "\r\nx-a: 1\r\nx-a: 2\r\n" +
      "content-length: 1234\r\n" + SERVER + "\r\n\r\n",
  );
});

Deno.test("responseHead() writes the reason phrase of the status, or the response's own text", () => {
  const statusLine = (code: number, text?: string) =>
    linesOf(responseHead({ code, text }, [], { close: false }))[0];
  assertEquals(statusLine(200), "HTTP/1.1 200 OK");
  assertEquals(statusLine(206), "HTTP/1.1 206 Partial Content");
  assertEquals(statusLine(304), "HTTP/1.1 304 Not Modified");
  assertEquals(statusLine(404, "Nope"), "HTTP/1.1 404 Not Found");
  assertEquals(statusLine(416), "HTTP/1.1 416 Range Not Satisfiable");
  assertEquals(statusLine(505), "HTTP/1.1 505 HTTP Version Not Supported");
  assertEquals(statusLine(299, "Custom Thing"), "HTTP/1.1 299 Custom Thing");
  // The reason phrase may be empty; the space before it stays (RFC 9112, section 4).
  assertEquals(statusLine(299), "HTTP/1.1 299 ");
  assertEquals(statusLine(418, ""), "HTTP/1.1 418 ");
});

Deno.test("responseHead() drops the app's connection and framing headers and writes its own", () => {
  const appHeaders: [string, string][] = [
    ["connection", "keep-alive"],
    ["Keep-Alive", "timeout=5"],
    ["Transfer-Encoding", "gzip, chunked"],
    ["content-length", "999"],
    ["CONTENT-LENGTH", "998"],
    ["x-kept", "yes"],
    ["date", DATE],
  ];
  const cases: [Parameters<typeof responseHead>[2], string[]][] = [
    [{ length: 10, close: false }, ["content-length: 10"]],
    [{ length: 0, close: false }, ["content-length: 0"]],
    [{ chunked: true, close: false }, ["transfer-encoding: chunked"]],
    [{ close: true }, ["connection: close"]],
    [{ length: 5, close: true }, ["content-length: 5", "connection: close"]],
    [{ chunked: true, close: false, keepAlive: true }, [
      "transfer-encoding: chunked",
      "connection: keep-alive",
    ]],
    [{ length: 5, close: false, keepAlive: true }, ["content-length: 5", "connection: keep-alive"]],
    [{ length: 5, close: true, keepAlive: true }, ["content-length: 5", "connection: close"]],
    [{ close: false }, []],
  ];
  for (const [framing, own] of cases) {
    const lines = linesOf(responseHead({ code: 200 }, appHeaders, framing));
    assertEquals(
      lines,
      ["HTTP/1.1 200 OK", "x-kept: yes", `date: ${DATE}`, ...own, SERVER],
      JSON.stringify(framing),
    );
  }
});

Deno.test("responseHead() writes the headers of a Response", () => {
  const response = new Response("hello", {
    status: 206,
    headers: { "Content-Range": "bytes 0-4/10", "Content-Length": "5", "X-Latin": "caf\u00e9" },
  });
  const head = responseHead({ code: response.status, text: response.statusText }, response.headers, {
    length: 5,
    close: false,
  });
  const lines = linesOf(head);
  assertEquals(lines[0], "HTTP/1.1 206 Partial Content");
  assert(lines.includes("content-range: bytes 0-4/10"));
  assert(lines.includes("x-latin: caf\u00e9"));
  assertEquals(lines.filter((line) => line.startsWith("content-length:")), ["content-length: 5"]);
  // 0xE9 is one byte on the wire, not UTF-8's two.
  const at = latin1(head).indexOf("caf");
  assertEquals([head[at + 3], head[at + 4]], [0xe9, 0x0d]);
});

Deno.test("responseHead() adds a Date header unless the response has one", () => {
  const before = httpDate();
  const lines = linesOf(
    responseHead({ code: 404 }, [["content-type", "text/plain"]], { length: 3, close: false }),
  );
  const after = httpDate();
  const dates = lines.filter((line) => line.startsWith("date: "));
  assertEquals(dates.length, 1);
  const date = dates[0].slice("date: ".length);
  assert(date === before || date === after, `${date} is now`);
  assert(IMF_FIXDATE.test(date), date);
  for (const name of ["date", "Date", "DATE"]) {
    const given = linesOf(responseHead({ code: 200 }, [[name, DATE]], { close: false }));
    assertEquals(given, ["HTTP/1.1 200 OK", `${name}: ${DATE}`, SERVER], name);
  }
});

Deno.test("responseHead() names flexo and its version in a Server header on every answer", () => {
  // RFC 9110 section 10.2.4, as the Rust flexo sends Server: flexo; refusals and errors go through here too.
  for (const code of [200, 206, 304, 404, 405, 502]) {
    const lines = linesOf(responseHead({ code }, [["date", DATE]], { length: 0, close: code >= 400 }));
    assertEquals(lines.filter((line) => /^server:/i.test(line)), [SERVER], String(code));
  }
  assert(/^server: flexo\/\d+\.\d+\.\d+/.test(SERVER), SERVER);
});

Deno.test("httpDate() writes RFC 7231 IMF-fixdate", () => {
  assertEquals(httpDate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  assertEquals(httpDate(Date.UTC(2024, 1, 5, 3, 4, 5)), "Mon, 05 Feb 2024 03:04:05 GMT");
  assertEquals(httpDate(Date.UTC(2000, 11, 31, 23, 59, 59, 999)), "Sun, 31 Dec 2000 23:59:59 GMT");
  assertEquals(httpDate(784111777000), "Sun, 06 Nov 1994 08:49:37 GMT", "RFC 9110's example");
  assert(IMF_FIXDATE.test(httpDate()), httpDate());
  const now = Date.now();
  const date = httpDate();
  assert(Math.abs(Date.parse(date) - now) <= 1000, `${date} is now`);
});

Deno.test("httpDate() gives the same string within one second and the next one after it", () => {
  const second = Date.UTC(2025, 5, 1, 12, 0, 0);
  const text = httpDate(second);
  for (const ms of [0, 1, 500, 999]) assertEquals(httpDate(second + ms), text, `+${ms} ms`);
  assertEquals(httpDate(second + 1000), "Sun, 01 Jun 2025 12:00:01 GMT");
  assertEquals(httpDate(second - 1), "Sun, 01 Jun 2025 11:59:59 GMT", "also for an earlier second");
  assertEquals(httpDate(second + 999), text);
});

Deno.test("httpDate() is the Date of its whole second (property)", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: Date.UTC(9999, 11, 31) }), (now) => {
      const date = httpDate(now);
      assert(IMF_FIXDATE.test(date), date);
      assertEquals(Date.parse(date), Math.floor(now / 1000) * 1000);
    }),
  );
});

Deno.test("encodeLatin1() writes each code unit up to 0xFF as one byte", () => {
  assertEquals(encodeLatin1(""), new Uint8Array(0));
  assertEquals(
    encodeLatin1("HTTP/1.1 200 OK\r\n\t~"),
    new Uint8Array([...new TextEncoder().encode("HTTP/1.1 200 OK\r\n\t~")]),
  );
  assertEquals(encodeLatin1("caf\u00e9"), new Uint8Array([0x63, 0x61, 0x66, 0xe9]));
  assertEquals(encodeLatin1("\u0080\u00ff\u007f\u0000"), new Uint8Array([0x80, 0xff, 0x7f, 0x00]));
  const all = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));
  assertEquals(encodeLatin1(all), Uint8Array.from({ length: 256 }, (_, i) => i));
});

Deno.test("encodeLatin1() is undone by latin1() (property)", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 0xff }), { maxLength: 300 }), (units) => {
      const text = String.fromCharCode(...units);
      const bytes = encodeLatin1(text);
      assertEquals(bytes, Uint8Array.from(units));
      assertEquals(latin1(bytes), text);
    }),
  );
});

Deno.test("isBodiless() is true for 1xx, 204 and 304", () => {
  for (const status of [100, 101, 102, 103, 199, 204, 304]) {
    assertEquals(isBodiless(status), true, `${status}`);
  }
  for (const status of [200, 201, 202, 203, 205, 206, 300, 301, 302, 303, 307, 400, 404, 416, 500, 503]) {
    assertEquals(isBodiless(status), false, `${status}`);
  }
});

Deno.test("reasonPhrase() gives the standard phrase, else the given text, else nothing", () => {
  const known: [number, string][] = [
    [200, "OK"],
    [204, "No Content"],
    [206, "Partial Content"],
    [301, "Moved Permanently"],
    [302, "Found"],
    [304, "Not Modified"],
    [400, "Bad Request"],
    [403, "Forbidden"],
    [404, "Not Found"],
    [405, "Method Not Allowed"],
    [408, "Request Timeout"],
    [413, "Content Too Large"],
    [414, "URI Too Long"],
    [416, "Range Not Satisfiable"],
    [431, "Request Header Fields Too Large"],
    [500, "Internal Server Error"],
    [501, "Not Implemented"],
    [502, "Bad Gateway"],
    [503, "Service Unavailable"],
    [504, "Gateway Timeout"],
    [505, "HTTP Version Not Supported"],
  ];
  for (const [status, phrase] of known) {
    assertEquals(reasonPhrase(status), phrase);
    assertEquals(reasonPhrase(status, "Something Else"), phrase, "the standard phrase wins");
  }
  assertEquals(reasonPhrase(299, "Custom"), "Custom");
  assertEquals(reasonPhrase(418), "");
  assertEquals(reasonPhrase(418, ""), "");
});

Deno.test("HttpDates.text() formats the date once per second of its clock", () => {
  let now = Date.UTC(2025, 5, 1, 12, 0, 0, 10);
  const dates = new HttpDates(() => now);
  const first = dates.text();
  assertEquals(first, "Sun, 01 Jun 2025 12:00:00 GMT");
  now += 500;
  assert(dates.text() === first, "the same string object within the second");
  now += 1000;
  assertEquals(dates.text(), "Sun, 01 Jun 2025 12:00:01 GMT");
});
