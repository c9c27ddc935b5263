/**
 * No response waits for the client's acknowledgement of an earlier segment (Nagle's algorithm meeting a delayed
 * ACK cost pacman ~40 ms per file on a kept-alive connection): accepted sockets have TCP_NODELAY, and a response
 * head goes out in one write with the start of its body on every path, so a client's first read holds both.
 * These assert the mechanism, not a time: a stall of 40 ms would be a timing window, and flaky.
 */

import { join } from "node:path";
import { listenForClients } from "../../src/server/client_connections.ts";
import { LINUX, openLibc } from "../../src/server/libc.ts";
import { isHeadProblem, parseRequestHead, type RequestHead } from "../../src/server/http1_head.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { makeRepo } from "../helpers/make_repo.ts";
import { startTestProxy, withinMs } from "../helpers/proxy_server.ts";
import { fileSender } from "../helpers/sockets.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { waitFor } from "../helpers/wait.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const REPO_DIR = "flexotest/os/x86_64";

/** TCP_NODELAY of this process's socket with these addresses (found by them), or undefined when none has them. */
function noDelayOf(addresses: { remoteAddr: Deno.Addr; localAddr: Deno.Addr }): number | undefined {
  const opened = openLibc();
  if (!opened.ok) throw new Error(opened.reason);
  const socket = fileSender().findSocket(addresses as Deno.Conn);
  if (socket === undefined) return undefined;
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  const failed = opened.libc.getsockopt(
    socket.fd,
    LINUX.IPPROTO_TCP,
    LINUX.TCP_NODELAY,
    new Uint8Array(value.buffer),
    new Uint8Array(length.buffer),
  );
  return failed === 0 ? value[0] : undefined;
}

/** Sends a GET on `conn` and returns what the first read brings (up to 256 KiB). */
async function firstRead(conn: Deno.Conn, path: string): Promise<Uint8Array> {
  await conn.write(encoder.encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
  const buffer = new Uint8Array(256 * 1024);
  const n = await withinMs(conn.read(buffer), 10_000, `no answer to ${path}`);
  assert(n !== null, `the connection closed without an answer to ${path}`);
  return buffer.subarray(0, n);
}

/** The head (as text) and the body bytes that came with it in `bytes`. */
function split(bytes: Uint8Array): { head: string; body: Uint8Array } {
  const text = decoder.decode(bytes.subarray(0, Math.min(bytes.length, 4096)));
  const end = text.indexOf("\r\n\r\n");
  assert(end >= 0, `the first read holds no complete head: ${JSON.stringify(text.slice(0, 200))}`);
  return { head: text.slice(0, end), body: bytes.subarray(end + 4) };
}

Deno.test("listenForClients() sets TCP_NODELAY on every accepted connection", async () => {
  const listener = listenForClients(() => new Response("hello"), {
    hostname: "127.0.0.1",
    port: 0,
    timeoutMs: 10_000,
    onError: () => new Response("error", { status: 500 }),
  });
  try {
    for (let i = 0; i < 3; i++) {
      const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
      try {
        // The option is set as the connection is accepted: wait until the listener has it.
        await waitFor("the connection to be accepted", () => listener.connections === 1);
        // The server's socket has the client's address as its peer and the listener's as its own.
        const server = { remoteAddr: client.localAddr, localAddr: client.remoteAddr };
        assertEquals(noDelayOf(server), 1, "TCP_NODELAY is set on the accepted socket");
        // The check can tell: the client's own socket (Deno.connect leaves Nagle's algorithm on) reads 0.
        assertEquals(noDelayOf(client), 0, "TCP_NODELAY is not set on the client's socket");
      } finally {
        client.close();
      }
      await waitFor("the connection to close", () => listener.connections === 0);
    }
  } finally {
    await listener.shutdown();
  }
});

/** A repository of two small packages on a fake mirror, a proxy in front of it, and a kept-alive connection. */
async function withProxy(
  options: { config?: Record<string, unknown>; cached?: boolean },
  fn: (context: {
    conn: Deno.Conn;
    files: { fileName: string; bytes: Uint8Array }[];
    mirror: Awaited<ReturnType<typeof startFakeMirror>>;
    proxy: Awaited<ReturnType<typeof startTestProxy>>;
  }) => Promise<void>,
): Promise<void> {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "mirror"), {
      repo: "flexotest",
      packages: [{ name: "one", version: "1.0-1", size: 20_000 }, {
        name: "two",
        version: "1.0-1",
        size: 40_000,
      }],
    });
    await using mirror = await startFakeMirror(join(dir, "mirror"));
    await using proxy = await startTestProxy({ mirrors: [mirror.url], config: options.config });
    const files = await Promise.all(repo.packages.map(async (pkg) => ({
      fileName: pkg.fileName,
      bytes: await Deno.readFile(join(dir, "mirror", REPO_DIR, pkg.fileName)),
    })));
    if (options.cached) {
      // In the cache before the proxy has seen any request for them: the first request takes the full path.
      await Deno.mkdir(join(proxy.dir, REPO_DIR), { recursive: true });
      for (const file of files) await Deno.writeFile(join(proxy.dir, REPO_DIR, file.fileName), file.bytes);
    }
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    try {
      await fn({ conn, files, mirror, proxy });
    } finally {
      conn.close();
    }
  });
}

for (const sendfile of [true, false]) {
  Deno.test(`a cached file's head and whole body come in the client's first read (sendfile ${sendfile})`, async () => {
    await withProxy({ cached: true, config: { sendfile } }, async ({ conn, files }) => {
      // Both files on one kept-alive connection, as pacman fetches them: the second is where a stall would be.
      for (const file of files) {
        const { head, body } = split(await firstRead(conn, `/${REPO_DIR}/${file.fileName}`));
        assert(head.startsWith("HTTP/1.1 200"), head);
        assertEquals(body.length, file.bytes.length, `all of ${file.fileName} in the first read`);
        assertEquals(body, file.bytes);
      }
    });
  });
}

Deno.test("a passed-through file's head comes with the start of its body in the client's first read", async () => {
  await withTempDir(async (dir) => {
    const bytes = randomBytes(30_000);
    await Deno.mkdir(join(dir, "iso", "latest"), { recursive: true });
    await Deno.writeFile(join(dir, "iso", "latest", "sha256sums.txt"), bytes);
    await using mirror = await startFakeMirror(dir);
    await using proxy = await startTestProxy({ mirrors: [mirror.url] });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    try {
      for (let i = 0; i < 2; i++) {
        const { head, body } = split(await firstRead(conn, "/iso/latest/sha256sums.txt"));
        assert(head.startsWith("HTTP/1.1 200"), head);
        assert(body.length > 0, "body bytes in the first read");
        assertEquals(body, bytes.subarray(0, body.length));
        // Read the rest so that the next request starts clean.
        let got = body.length;
        const buffer = new Uint8Array(64 * 1024);
        while (got < bytes.length) got += (await conn.read(buffer)) ?? Infinity;
      }
    } finally {
      conn.close();
    }
  });
});

for (const sendfile of [true, false]) {
  Deno.test(`a client joining a download gets its head with the bytes on disk in its first read (sendfile ${sendfile})`, async () => {
    await withProxy({ config: { sendfile } }, async ({ conn, files, mirror, proxy }) => {
      const file = files[1];
      // The mirror sends a part of the file and then nothing: the download runs with those bytes on disk.
      mirror.faults = { match: file.fileName, stallAfterBytes: 10_000 };
      const first = fetch(`${proxy.url}/${REPO_DIR}/${file.fileName}`).then((r) => r.body?.cancel()).catch(
        () => {},
      );
      await waitFor("the download to have bytes on disk", () => {
        const running = [...proxy.app.downloads.list()].find((d) => d.finalPath.endsWith(file.fileName));
        return (running?.written ?? 0) >= 10_000;
      });
      const { head, body } = split(await firstRead(conn, `/${REPO_DIR}/${file.fileName}`));
      assert(head.startsWith("HTTP/1.1 200"), head);
      assert(body.length > 0, "body bytes in the first read");
      assertEquals(body, file.bytes.subarray(0, body.length));
      await mirror.close();
      await first;
    });
  });
}

Deno.test("a database revalidation leaves package hits to the quick path", async () => {
  await withProxy({ cached: true }, async ({ conn, files, proxy }) => {
    const path = `/${REPO_DIR}/${files[0].fileName}`;
    // Once through the full path, so that the path is known.
    split(await firstRead(conn, path));
    const head = requestHead(path);
    assert(proxy.app.quickAnswer(head, { files: true }) !== undefined, "a known hit is answered quickly");
    const db = await fetch(`${proxy.url}/${REPO_DIR}/flexotest.db`);
    assertEquals(db.status, 200);
    await db.arrayBuffer();
    const revalidated = await fetch(`${proxy.url}/${REPO_DIR}/flexotest.db`, {
      headers: { "if-modified-since": db.headers.get("last-modified")! },
    });
    await revalidated.body?.cancel();
    assertEquals(revalidated.status, 304);
    assert(proxy.app.quickAnswer(head, { files: true }) !== undefined, "still answered quickly after it");
  });
});

Deno.test("a file a download has just committed is answered by the quick path at its next request", async () => {
  await withProxy({}, async ({ files, proxy }) => {
    const path = `/${REPO_DIR}/${files[1].fileName}`;
    const response = await fetch(`${proxy.url}${path}`);
    assertEquals(new Uint8Array(await response.arrayBuffer()), files[1].bytes);
    await proxy.app.downloads.idle();
    assert(proxy.app.quickAnswer(requestHead(path), { files: true }) !== undefined, "answered quickly");
  });
});

function requestHead(path: string): RequestHead {
  const bytes = encoder.encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  const head = parseRequestHead(bytes, bytes.length, {});
  if (isHeadProblem(head)) throw new Error(head.message);
  return head;
}
