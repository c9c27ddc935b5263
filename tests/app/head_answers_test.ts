/**
 * HEAD over a socket: it carries the Content-Length its GET has, for the admin pages and every 4xx answer
 * (finding 8 of issue 16); it ignores Range (finding 9, RFC 9110 section 14.2); and a Range with whitespace
 * inside its range-spec is ignored as the grammar says (finding 10).
 */

import { dirname, join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";
import { rawRequest } from "../helpers/sockets.ts";

const PKG = "/core/os/x86_64/tiny-1-1-x86_64.pkg.tar.zst";
const UNCACHED = "/core/os/x86_64/other-1-1-x86_64.pkg.tar.zst";
const BYTES = "PACKAGE-BYTES";

/** A fake mirror with UNCACHED, and a proxy in front of it with PKG in its cache. */
async function setup() {
  const root = await Deno.makeTempDir({ prefix: "flexo-head-mirror-" });
  await Deno.mkdir(join(root, dirname(UNCACHED)), { recursive: true });
  await Deno.writeTextFile(join(root, UNCACHED), "UNCACHED-PACKAGE-BYTES");
  const mirror = await startFakeMirror(root);
  const proxy = await startTestProxy({ mirrors: [mirror.url] });
  await Deno.mkdir(dirname(join(proxy.dir, PKG)), { recursive: true });
  await Deno.writeTextFile(join(proxy.dir, PKG), BYTES);
  return {
    proxy,
    mirror,
    async [Symbol.asyncDispose]() {
      await proxy.close();
      await mirror.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

Deno.test("HEAD of an error answer carries the Content-Length of its GET", async () => {
  await using s = await setup();
  const targets = [
    "/core/os/x86_64/missing-1-1-x86_64.pkg.tar.zst", // 404 from the mirror
    "/core/os/x86_64/%2e%2e/x86_64/tiny-1-1-x86_64.pkg.tar.zst", // 400 from the path check
  ];
  for (const target of targets) {
    const get = await rawRequest(s.proxy.port, "GET", target);
    const head = await rawRequest(s.proxy.port, "HEAD", target);
    assert(get.status >= 400 && get.status < 500, `${target}: ${get.status}`);
    assertEquals(head.status, get.status, target);
    assertEquals(get.headers.get("content-length"), String(get.body.length), target);
    assertEquals(head.headers.get("content-length"), String(get.body.length), target);
    assertEquals(head.body, "", target);
  }
});

Deno.test("HEAD of /, /status and /metrics carries a Content-Length like its GET's", async () => {
  await using s = await setup();
  for (const target of ["/", "/status", "/metrics"]) {
    const get = await rawRequest(s.proxy.port, "GET", target);
    const head = await rawRequest(s.proxy.port, "HEAD", target);
    assertEquals([get.status, head.status], [200, 200], target);
    assertEquals(head.body, "", target);
    const length = Number(head.headers.get("content-length"));
    // The pages show live numbers (uptime, request counts), so their length may change by a few bytes.
    assert(
      Number.isInteger(length) && Math.abs(length - get.body.length) <= 64,
      `${target}: HEAD says ${head.headers.get("content-length")}, GET has ${get.body.length} bytes`,
    );
  }
});

Deno.test("HEAD ignores Range: for a cached file, and for one asked of the mirror", async () => {
  await using s = await setup();
  for (const [target, size] of [[PKG, BYTES.length], [UNCACHED, "UNCACHED-PACKAGE-BYTES".length]] as const) {
    for (const range of ["bytes=0-3", "bytes=100-200", "bytes=-2"]) {
      const head = await rawRequest(s.proxy.port, "HEAD", target, { Range: range });
      assertEquals(
        [head.status, head.headers.get("content-length"), head.headers.has("content-range")],
        [200, String(size), false],
        `${target} ${range}`,
      );
    }
  }
  // The mirror was not asked for a range either.
  assert(
    s.mirror.requests.every((request) => request.range === undefined),
    JSON.stringify(s.mirror.requests),
  );
  // GET still honours it.
  const get = await rawRequest(s.proxy.port, "GET", PKG, { Range: "bytes=0-3" });
  assertEquals([get.status, get.body], [206, "PACK"]);
});

Deno.test("a Range with whitespace inside its range-spec is ignored: the whole file with 200", async () => {
  await using s = await setup();
  for (const range of ["bytes=0 - 3", "bytes = 0-3", "bytes=0- 3"]) {
    const get = await rawRequest(s.proxy.port, "GET", PKG, { Range: range });
    assertEquals([get.status, get.body], [200, BYTES], range);
  }
  const spaced = await rawRequest(s.proxy.port, "GET", PKG, { Range: "bytes=0-3 , " });
  assertEquals([spaced.status, spaced.body], [206, "PACK"]);
});
