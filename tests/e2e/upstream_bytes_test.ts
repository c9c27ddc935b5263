/**
 * Bytes exactly as stored, whatever the mirror does with encodings and ranges: flexo asks for
 * `Accept-Encoding: identity`, a mirror that compresses anyway is a failed transfer (the next mirror is asked),
 * and so is one that gzips the body as a transfer coding, which flexo never asks for; If-Range travels with Range
 * on pass-through files, and a 404 is the answer when every mirror that answered
 * said 404 while the others refused.
 */

import { gzipSync } from "node:zlib";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";
import { readHead, startRawServer } from "../helpers/fault_tools.ts";

const PKG = "/core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst";
const OTHER = "/iso/latest/archlinux-x86_64.iso.sig";

/** A mirror on 127.0.0.1 that serves `bytes` for every path, compressing as `compress` says. */
function mirror(
  bytes: Uint8Array,
  compress: "when_asked" | "always",
  seen: Headers[] = [],
): { url: string; close(): Promise<void> } {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    seen.push(req.headers);
    const asked = /gzip/.test(req.headers.get("accept-encoding") ?? "");
    if (compress === "always" || asked) {
      const gz = new Uint8Array(gzipSync(bytes));
      return new Response(gz, {
        headers: { "content-encoding": "gzip", "content-length": String(gz.length) },
      });
    }
    return new Response(bytes as Uint8Array<ArrayBuffer>, {
      headers: { "content-length": String(bytes.length) },
    });
  });
  return { url: `http://127.0.0.1:${server.addr.port}/`, close: () => server.shutdown() };
}

/** A base URL on 127.0.0.1 where nothing listens (connections are refused). */
function refusing(): string {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  listener.close();
  return `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`;
}

Deno.test("flexo asks mirrors for identity, so a mirror that compresses when asked (nginx gzip on) gives the exact bytes", async () => {
  const bytes = new Uint8Array(100_000); // compresses well: a decompressed copy would betray itself by its length
  const seen: Headers[] = [];
  const good = mirror(bytes, "when_asked", seen);
  await using proxy = await startTestProxy({ mirrors: [good.url] });
  try {
    for (const path of [PKG, OTHER]) {
      const response = await fetch(`${proxy.url}${path}`, { headers: { "accept-encoding": "identity" } });
      assertEquals(response.status, 200, path);
      assertEquals(response.headers.get("content-length"), String(bytes.length), path);
      assertEquals(new Uint8Array(await response.arrayBuffer()), bytes, path);
    }
    assert(seen.length >= 2);
    for (const headers of seen) assertEquals(headers.get("accept-encoding"), "identity");
  } finally {
    await good.close();
  }
});

Deno.test("a mirror that compresses unasked is a failed transfer: the next mirror gives the file, never a cut one", async () => {
  const bytes = randomBytes(50_000);
  const bad = mirror(bytes, "always");
  const good = mirror(bytes, "when_asked");
  await using proxy = await startTestProxy({ mirrors: [bad.url, good.url] });
  try {
    for (const path of [PKG, OTHER]) {
      const response = await fetch(`${proxy.url}${path}`);
      assertEquals(response.status, 200, path);
      assertEquals(new Uint8Array(await response.arrayBuffer()), bytes, path);
    }
    const alone = await startTestProxy({ mirrors: [bad.url] });
    try {
      const response = await fetch(`${alone.url}${OTHER}`);
      const text = await response.text();
      assertEquals(response.status, 502, text);
      assert(text.includes("Content-Encoding: gzip"), text);
    } finally {
      await alone.close();
    }
  } finally {
    await bad.close();
    await good.close();
  }
});

Deno.test("a mirror that sends Transfer-Encoding: gzip, chunked is a failed transfer: the next mirror gives the file", async () => {
  const bytes = randomBytes(50_000);
  const gz = new Uint8Array(gzipSync(bytes));
  // A raw server: Deno.serve would not send a transfer coding of its own choosing.
  const bad = await startRawServer(async (conn) => {
    await readHead(conn);
    const head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n";
    await conn.write(new TextEncoder().encode(`${head}${gz.length.toString(16)}\r\n`));
    await conn.write(gz);
    await conn.write(new TextEncoder().encode("\r\n0\r\n\r\n"));
    conn.close();
  });
  const badUrl = `http://127.0.0.1:${bad.port}/`;
  const good = mirror(bytes, "when_asked");
  try {
    await using proxy = await startTestProxy({ mirrors: [badUrl, good.url] });
    for (const path of [PKG, OTHER]) {
      const response = await fetch(`${proxy.url}${path}`);
      assertEquals(response.status, 200, path);
      assertEquals(new Uint8Array(await response.arrayBuffer()), bytes, path);
    }
    await using alone = await startTestProxy({ mirrors: [badUrl] });
    const response = await fetch(`${alone.url}${OTHER}`);
    const text = await response.text();
    assertEquals(response.status, 502, text);
    assert(text.includes("Transfer-Encoding: gzip, chunked"), text);
  } finally {
    await bad.close();
    await good.close();
  }
});

Deno.test("pass-through forwards If-Range with Range, so a changed file is never spliced", async () => {
  const seen: Headers[] = [];
  const good = mirror(randomBytes(1000), "when_asked", seen);
  await using proxy = await startTestProxy({ mirrors: [good.url] });
  try {
    const response = await fetch(`${proxy.url}${OTHER}`, {
      headers: { range: "bytes=10-19", "if-range": '"an-old-etag"' },
    });
    await response.body?.cancel();
    const asked = seen.at(-1)!;
    assertEquals(asked.get("range"), "bytes=10-19");
    assertEquals(asked.get("if-range"), '"an-old-etag"');
  } finally {
    await good.close();
  }
});

Deno.test("a 404 from the only mirror that answers is the client's answer, naming every mirror's outcome", async () => {
  const missing = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("no", { status: 404 }),
  );
  const missingUrl = `http://127.0.0.1:${missing.addr.port}/`;
  const refused = refusing();
  await using proxy = await startTestProxy({ mirrors: [refused, missingUrl] });
  try {
    for (const path of ["/core/os/x86_64/core.db.sig", PKG, OTHER]) {
      const response = await fetch(`${proxy.url}${path}`);
      const text = await response.text();
      assertEquals(response.status, 404, `${path}: ${text}`);
      assert(text.includes(missingUrl) && text.includes("404"), text);
    }
  } finally {
    await missing.shutdown();
  }
});
