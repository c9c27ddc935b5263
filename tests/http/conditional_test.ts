/**
 * Conditional requests over a socket (finding 4 of issue 16): If-Match and If-Unmodified-Since give 412 when
 * they fail, evaluated in the order of RFC 9110 section 13.2.2 with If-None-Match, If-Modified-Since and Range;
 * and the order itself, with evaluatePreconditions().
 */

import { dirname, join } from "node:path";
import { evaluatePreconditions, makeEtag } from "../../src/http/range.ts";
import { assertEquals } from "../helpers/assert.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";
import { rawRequest } from "../helpers/sockets.ts";

const PKG = "/core/os/x86_64/tiny-1-1-x86_64.pkg.tar.zst";
const BYTES = "PACKAGE-BYTES";
const MTIME = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
const BEFORE = "Thu, 01 Jan 2026 00:00:00 GMT";
const AFTER = "Sat, 03 Jan 2026 00:00:00 GMT";

/** The proxy (its only mirror refuses connections) with PKG in its cache, modified at MTIME. */
async function proxyWithPackage() {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  closed.close();
  const proxy = await startTestProxy({
    mirrors: [`http://127.0.0.1:${(closed.addr as Deno.NetAddr).port}/`],
  });
  const path = join(proxy.dir, PKG);
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeTextFile(path, BYTES);
  await Deno.utime(path, MTIME, MTIME);
  return proxy;
}

Deno.test("If-Match and If-Unmodified-Since give 412 when they fail, in RFC 9110 order, over a socket", async () => {
  await using proxy = await proxyWithPackage();
  const etag = makeEtag(BYTES.length, MTIME);
  const cases: [string, Record<string, string>, number][] = [
    ["If-Match with another tag", { "If-Match": '"other"' }, 412],
    ["If-Match with a weak copy of the tag", { "If-Match": `W/${etag}` }, 412],
    ["If-Match with the tag", { "If-Match": etag }, 200],
    ["If-Match with the tag in a list", { "If-Match": `"a", ${etag}` }, 200],
    ["If-Match: *", { "If-Match": "*" }, 200],
    ["If-Unmodified-Since before the mtime", { "If-Unmodified-Since": BEFORE }, 412],
    ["If-Unmodified-Since after the mtime", { "If-Unmodified-Since": AFTER }, 200],
    ["If-Unmodified-Since that is not a date", { "If-Unmodified-Since": "yesterday" }, 200],
    ["If-Match holds, so If-Unmodified-Since is not looked at", {
      "If-Match": etag,
      "If-Unmodified-Since": BEFORE,
    }, 200],
    ["If-Match fails before If-None-Match would give 304", { "If-Match": '"x"', "If-None-Match": etag }, 412],
    ["If-Unmodified-Since fails before If-Modified-Since", {
      "If-Unmodified-Since": BEFORE,
      "If-Modified-Since": AFTER,
    }, 412],
    ["If-Match holds, then If-None-Match gives 304", { "If-Match": etag, "If-None-Match": etag }, 304],
    ["If-Match fails before a Range", { "If-Match": '"x"', Range: "bytes=0-3" }, 412],
    ["If-Match holds, then the Range", { "If-Match": etag, Range: "bytes=0-3" }, 206],
  ];
  const got: [string, number][] = [];
  for (const [name, headers] of cases) {
    const response = await rawRequest(proxy.port, "GET", PKG, headers);
    got.push([name, response.status]);
    if (response.status === 412) {
      assertEquals(response.body.length, Number(response.headers.get("content-length")));
    }
  }
  assertEquals(got, cases.map(([name, , status]) => [name, status]));
  // HEAD is answered the same way.
  assertEquals((await rawRequest(proxy.port, "HEAD", PKG, { "If-Match": '"x"' })).status, 412);
  assertEquals((await rawRequest(proxy.port, "HEAD", PKG, { "If-Unmodified-Since": BEFORE })).status, 412);
});

Deno.test("evaluatePreconditions() without a strong tag or a modification time", () => {
  const request = (headers: Record<string, string>) => new Request("http://a/x", { headers });
  // A download in progress has no ETag: If-Match can only hold as "*".
  const downloading = { lastModified: MTIME };
  assertEquals(evaluatePreconditions(request({ "If-Match": '"x"' }), downloading), {
    type: "failed",
    header: "If-Match",
  });
  assertEquals(evaluatePreconditions(request({ "If-Match": "*" }), downloading), { type: "proceed" });
  // Without a modification time, If-Unmodified-Since is ignored (RFC 9110 section 13.1.4).
  assertEquals(evaluatePreconditions(request({ "If-Unmodified-Since": BEFORE }), {}), { type: "proceed" });
  assertEquals(evaluatePreconditions(request({ "If-Unmodified-Since": BEFORE }), downloading), {
    type: "failed",
    header: "If-Unmodified-Since",
  });
  assertEquals(evaluatePreconditions(request({}), downloading), { type: "proceed" });
});
