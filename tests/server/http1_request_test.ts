import {
  type HeadProblem,
  isHeadProblem,
  parseRequestHead,
  type RequestHead,
} from "../../src/server/http1_head.ts";
import { requestFromHead } from "../../src/server/http1_request.ts";
import { checkAuthority, rawTargetOf, targetPath } from "../../src/http/client_request.ts";
import { assert, assertEquals } from "../helpers/assert.ts";

const LOCAL = { localHost: "127.0.0.1:7878" };

/** The head parsed from `text` (code units as bytes), failing when it is refused. */
function headOf(text: string): RequestHead {
  const parsed = parseRequestHead(Uint8Array.from(text, (char) => char.charCodeAt(0)));
  if (isHeadProblem(parsed)) {
    throw new Error(`refused (${parsed.status} ${parsed.message}): ${JSON.stringify(text)}`);
  }
  return parsed;
}

/** The request made from the head in `text`, failing when it is a problem. */
function requestOf(text: string, options = LOCAL): Request {
  const req = requestFromHead(headOf(text), options);
  if (isHeadProblem(req)) throw new Error(`problem (${req.status} ${req.message}): ${JSON.stringify(text)}`);
  return req;
}

/** The problem the head in `text` gives, failing when it gives a request. */
function problemOf(text: string): HeadProblem {
  const req = requestFromHead(headOf(text), LOCAL);
  if (!isHeadProblem(req)) throw new Error(`accepted as ${req.method} ${req.url}: ${JSON.stringify(text)}`);
  assert(req.message.length > 0, "a problem has a message");
  return req;
}

Deno.test("requestFromHead() makes an http://HOST URL of an origin-form target", () => {
  const req = requestOf("GET /core/os/x86_64/core.db?x=1 HTTP/1.1\r\nHost: flexo.lan:7878\r\n\r\n");
  assert(req instanceof Request);
  assertEquals(req.method, "GET");
  assertEquals(req.url, "http://flexo.lan:7878/core/os/x86_64/core.db?x=1");
  assertEquals(rawTargetOf(req), "/core/os/x86_64/core.db?x=1");
  assertEquals(requestOf("HEAD / HTTP/1.1\r\nHost: [::1]:7878\r\n\r\n").url, "http://[::1]:7878/");
  assertEquals(requestOf("HEAD /x HTTP/1.1\r\nHost: flexo\r\n\r\n").method, "HEAD");
});

Deno.test("requestFromHead() keeps the raw target that Request normalises", () => {
  const cases: [string, string][] = [
    ["/a/../b", "http://h/b"],
    ["/a/%2e%2e/b", "http://h/b"],
    ["/core/os/x86_64/../../../etc/passwd", "http://h/etc/passwd"],
    ["/./x//y", "http://h/x//y"],
  ];
  for (const [target, url] of cases) {
    const req = requestOf(`GET ${target} HTTP/1.1\r\nHost: h\r\n\r\n`);
    assertEquals(req.url, url, target);
    assertEquals(rawTargetOf(req), target);
  }
});

Deno.test("requestFromHead() uses localHost for an HTTP/1.0 request without Host", () => {
  const req = requestOf("GET /core/os/x86_64/core.db HTTP/1.0\r\n\r\n");
  assertEquals(req.url, "http://127.0.0.1:7878/core/os/x86_64/core.db");
  assertEquals(rawTargetOf(req), "/core/os/x86_64/core.db");
  assertEquals(req.headers.get("host"), null);
  assertEquals(requestOf("GET /x HTTP/1.0\r\n\r\n", { localHost: "[::1]:80" }).url, "http://[::1]/x");
  assertEquals(requestOf("GET /x HTTP/1.0\r\nHost: named\r\n\r\n").url, "http://named/x");
});

Deno.test("requestFromHead() takes an absolute-form target as the URL", () => {
  const req = requestOf("GET http://other/x HTTP/1.1\r\nHost: flexo\r\n\r\n");
  assertEquals(req.url, "http://other/x");
  assertEquals(rawTargetOf(req), "http://other/x");
  assertEquals(req.headers.get("host"), "flexo");
  const dotted = requestOf("GET http://other:8080/a/../b?q HTTP/1.1\r\nHost: flexo\r\n\r\n");
  assertEquals(dotted.url, "http://other:8080/b?q");
  assertEquals(rawTargetOf(dotted), "http://other:8080/a/../b?q");
  assertEquals(requestOf("GET HTTPS://Other/x HTTP/1.1\r\nHost: flexo\r\n\r\n").url, "https://other/x");
  assertEquals(requestOf("GET http://other HTTP/1.0\r\n\r\n").url, "http://other/");
});

Deno.test("requestFromHead() refuses asterisk-form, authority-form and other targets with 400", () => {
  for (
    const target of [
      "*",
      "example.com:443",
      "other:80",
      "core/os/x86_64/core.db",
      "ftp://other/x",
      "http:/x",
      "?x",
    ]
  ) {
    assertEquals(problemOf(`OPTIONS ${target} HTTP/1.1\r\nHost: a\r\n\r\n`).status, 400, target);
  }
  assertEquals(problemOf("GET http://a%20b/x HTTP/1.1\r\nHost: a\r\n\r\n").status, 400, "no URL accepts it");
  assertEquals(problemOf("GET http://a:99999/x HTTP/1.1\r\nHost: a\r\n\r\n").status, 400);
});

Deno.test("requestFromHead() refuses a Host that no URL accepts with 400", () => {
  for (const host of ["a b", "a:99999", "a:port", "%zz", "a<b", "[::1", "a^b"]) {
    assertEquals(problemOf(`GET /x HTTP/1.1\r\nHost: ${host}\r\n\r\n`).status, 400, host);
  }
});

Deno.test("requestFromHead() keeps the target's path and the Host as the URL's for every Host checkAuthority() lets through", () => {
  // A Host value that is no URL authority must not move the target's path: with `Host:` (empty), the URL
  // would be http:///core/os/x86_64/core.db, whose host is "core"; with `Host: a#` the path would be a fragment.
  const moved: string[] = [];
  for (const host of ["", "a#", "a?b", "a/b", "a\\b", "u@h", "a/metrics#"]) {
    const head = headOf(`GET /core/os/x86_64/core.db HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    // The connection checks the authority of every request before it makes one (see http1_connection.ts).
    const refused = checkAuthority(head, { hostname: "127.0.0.1", port: 7878 });
    if (refused !== undefined) {
      assertEquals(refused.status, 400, JSON.stringify(host));
      continue;
    }
    const req = requestFromHead(head, LOCAL);
    if (isHeadProblem(req)) {
      assertEquals(req.status, 400, JSON.stringify(host));
      continue;
    }
    const url = new URL(req.url);
    if (url.pathname !== "/core/os/x86_64/core.db" || url.host !== host) {
      moved.push(`Host: ${JSON.stringify(host)} gives ${req.url}`);
    }
  }
  assertEquals(moved, []);
});

Deno.test("requestFromHead() answers CONNECT and TRACE with 405 and Allow, and the unknown methods Request refuses or respells with 501", () => {
  // RFC 9110 15.5.6 and 15.6.2: a method HTTP defines and the server does not allow is 405 with Allow; one it
  // does not know is 501. Methods are case-sensitive: trace and get are unknown ones.
  for (const [method, target] of [["CONNECT", "mirror.example:443"], ["CONNECT", "/"], ["TRACE", "/"]]) {
    const problem = problemOf(`${method} ${target} HTTP/1.1\r\nHost: a\r\n\r\n`);
    assertEquals([problem.status, problem.headers], [405, [["allow", "GET, HEAD"]]], `${method} ${target}`);
  }
  for (const method of ["TRACK", "connect", "trace", "get", "Head"]) {
    const problem = problemOf(`${method} / HTTP/1.1\r\nHost: a\r\n\r\n`);
    assertEquals(problem.status, 501, method);
  }
  assertEquals(requestOf("PROPFIND /x HTTP/1.1\r\nHost: a\r\n\r\n").method, "PROPFIND");
  assertEquals(requestOf("DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n").method, "DELETE");
});

Deno.test("requestFromHead() passes the headers on to the Request", () => {
  const req = requestOf(
    "GET /x HTTP/1.1\r\nHost: flexo\r\nUser-Agent: pacman/7.0.0\r\nRange: bytes=10-\r\n" +
      "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\nX-Dup: 1\r\nx-dup: 2\r\nX-Latin: caf\xe9\r\n\r\n",
  );
  assertEquals(req.headers.get("host"), "flexo");
  assertEquals(req.headers.get("user-agent"), "pacman/7.0.0");
  assertEquals(req.headers.get("range"), "bytes=10-");
  assertEquals(req.headers.get("if-modified-since"), "Thu, 01 Jan 1970 00:00:00 GMT");
  assertEquals(req.headers.get("x-dup"), "1, 2");
  assertEquals(req.headers.get("x-latin"), "caf\u00e9");
  assertEquals(req.body, null);
});

Deno.test("requestFromHead() accepts a head made elsewhere", () => {
  const head: RequestHead = {
    method: "GET",
    target: "/core/os/x86_64/core.db",
    minorVersion: 1,
    host: "mirror.local",
    close: false,
    hasBody: false,
    conditional: false,
    headers: [["host", "mirror.local"], ["accept", "*/*"]],
  };
  const req = requestFromHead(head, LOCAL);
  assert(!isHeadProblem(req));
  assertEquals(req.url, "http://mirror.local/core/os/x86_64/core.db");
  assertEquals(req.headers.get("accept"), "*/*");
  assertEquals(rawTargetOf(req), head.target);
});

Deno.test("rawTargetOf() is undefined for requests made elsewhere", () => {
  assertEquals(rawTargetOf(new Request("http://a/a/../b")), undefined);
  assertEquals(rawTargetOf(new Request("http://a/x", { method: "HEAD" })), undefined);
  assertEquals(rawTargetOf(requestOf("GET /a/../b HTTP/1.1\r\nHost: a\r\n\r\n")), "/a/../b");
});

Deno.test("targetPath() keeps the path of a URL or target exactly as sent", () => {
  assertEquals(targetPath("http://h/core/os/x86_64/%2e%2e/a?x=1#y"), "/core/os/x86_64/%2e%2e/a");
  assertEquals(targetPath("http://h"), "/");
  assertEquals(targetPath("http://h//etc/passwd"), "//etc/passwd");
  assertEquals(targetPath("http://h/a#b?c"), "/a");
  assertEquals(targetPath("http://h/a?b#c"), "/a");
  assertEquals(targetPath("/core/os/x86_64/../a?x=1"), "/core/os/x86_64/../a", "an origin-form target");
  assertEquals(targetPath("/nothing?u=http://h/core/x"), "/nothing", "a URL in the query is not the path");
  assertEquals(targetPath("http://h?/core/x"), "/", "an absolute URL whose authority ends at ?");
  assertEquals(targetPath("*"), "/");
});
