/**
 * Cache-Control for downstream caches, over a socket: package files and their signatures are immutable,
 * databases and their signatures must be revalidated; on every path that serves them (downloading, cached, the
 * quick path for repeated hits, HEAD asked of the mirror, 304), the quick path's head identical to the full
 * path's.
 */

import { dirname, join } from "node:path";
import { IMMUTABLE, REVALIDATE } from "../../src/app/responses.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";
import { testDatabase } from "../helpers/test_database.ts";
import { isHeadProblem, parseRequestHead } from "../../src/server/http1_head.ts";
import { encodeLatin1 } from "../../src/server/http1_response.ts";
import { parseResponse, rawRequest, type RawResponse } from "../helpers/sockets.ts";

const FILES: Record<string, string> = {
  "/core/os/x86_64/tiny-1-1-x86_64.pkg.tar.zst": IMMUTABLE,
  "/core/os/x86_64/tiny-1-1-x86_64.pkg.tar.zst.sig": IMMUTABLE,
  "/core/os/x86_64/core.db": REVALIDATE,
  "/core/os/x86_64/core.db.sig": REVALIDATE,
  "/core/os/x86_64/core.files": REVALIDATE,
};

async function setup(mirrorHeaders: Record<string, string> = {}) {
  const root = await Deno.makeTempDir({ prefix: "flexo-cache-control-mirror-" });
  for (const path of Object.keys(FILES)) {
    await Deno.mkdir(join(root, dirname(path)), { recursive: true });
    // A database must parse as one (the proxy checks it before releasing its last byte).
    if (/\.(db|files)$/.test(path)) await Deno.writeFile(join(root, path), testDatabase());
    else await Deno.writeTextFile(join(root, path), `bytes of ${path}`);
  }
  const mirror = await startFakeMirror(root, { headers: mirrorHeaders });
  const proxy = await startTestProxy({ mirrors: [mirror.url] });
  return {
    proxy,
    async [Symbol.asyncDispose]() {
      await proxy.close();
      await mirror.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

/** The headers of `response` without Date (which differs from second to second), sorted by name. */
function withoutDate(response: RawResponse): [string, string][] {
  return [...response.headers].filter(([name]) => name !== "date").sort(([a], [b]) => a < b ? -1 : 1);
}

Deno.test("Cache-Control: packages and their signatures immutable, databases and theirs no-cache, on every path", async () => {
  await using s = await setup();
  for (const [path, expected] of Object.entries(FILES)) {
    const seen: [string, string | undefined][] = [];
    const ask = async (name: string, method: string, headers: Record<string, string> = {}) => {
      const response = await rawRequest(s.proxy.port, method, path, headers);
      seen.push([`${name} ${response.status}`, response.headers.get("cache-control")]);
      return response;
    };
    await ask("HEAD asked of the mirror", "HEAD");
    await ask("GET while downloading", "GET");
    await s.proxy.app.downloads.idle();
    const cached = await ask("GET from the cache", "GET");
    await ask("HEAD from the cache", "HEAD");
    await ask("GET with a range", "GET", { Range: "bytes=0-1" });
    await ask("GET not modified", "GET", { "If-Modified-Since": cached.headers.get("last-modified")! });
    const status = (name: string, code: number) => `${name} ${code}`;
    // A database's signature is always answered whole (see src/app/database_signature.ts).
    const whole = path.endsWith(".db.sig");
    assertEquals(seen, [
      [status("HEAD asked of the mirror", 200), expected],
      [status("GET while downloading", 200), expected],
      [status("GET from the cache", 200), expected],
      [status("HEAD from the cache", 200), expected],
      [status("GET with a range", whole ? 200 : 206), expected],
      [status("GET not modified", whole ? 200 : 304), expected],
    ], path);
  }
});

Deno.test("the quick path's head for a repeated hit is the full path's, Cache-Control included", async () => {
  await using s = await setup();
  for (const path of Object.keys(FILES).filter((path) => FILES[path] === IMMUTABLE)) {
    await rawRequest(s.proxy.port, "GET", path);
    await s.proxy.app.downloads.idle();
    // From the cache by the full path (Connection: close keeps a request off the quick path), which also
    // remembers the path for the quick one.
    const full = await rawRequest(s.proxy.port, "GET", path);
    const head = parseRequestHead(encodeLatin1(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
    assert(!isHeadProblem(head));
    const answer = s.proxy.app.quickAnswer(head, { files: false });
    assert(answer instanceof Uint8Array, `${path}: the quick path did not answer`);
    const quick = parseResponse(new TextDecoder("latin1").decode(answer));
    // The quick head is a keep-alive answer; the full one says close.
    full.headers.delete("connection");
    assertEquals(withoutDate(quick), withoutDate(full), path);
    assertEquals(quick.body, full.body, path);
    assertEquals(quick.headers.get("cache-control"), IMMUTABLE, path);
  }
});

Deno.test("createApp() answers a file with one Content-Type, asked of the mirror, downloading or cached, whatever the mirror says", async () => {
  // The mirror's own type (each mirror has its own, or none) was passed on while downloading, and the file
  // name's said once cached: a client or a cache in front saw a file change type.
  await using s = await setup({ "content-type": "application/x-zstd-compressed-tar" });
  for (const path of Object.keys(FILES)) {
    const seen: [string, string | undefined][] = [];
    const ask = async (name: string, method: string, headers: Record<string, string> = {}) => {
      const response = await rawRequest(s.proxy.port, method, path, headers);
      seen.push([name, response.headers.get("content-type")]);
    };
    await ask("HEAD asked of the mirror", "HEAD");
    await ask("GET while downloading", "GET");
    await s.proxy.app.downloads.idle();
    await ask("GET from the cache", "GET");
    await ask("HEAD from the cache", "HEAD");
    const type = path.endsWith(".sig") ? "application/pgp-signature" : "application/octet-stream";
    assertEquals(seen, [
      ["HEAD asked of the mirror", type],
      ["GET while downloading", type],
      ["GET from the cache", type],
      ["HEAD from the cache", type],
    ], path);
  }
});
