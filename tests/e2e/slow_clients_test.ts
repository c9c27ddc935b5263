/**
 * Slow and misbehaving clients against the real program (`main.ts` in its own process, so that its descriptors
 * and memory are measured apart from the tests running beside this one): a client that sends its request a byte at a time, one
 * that connects and says nothing, one that stops reading in the middle of a download. None of them may block the
 * others, make the proxy's memory grow, or stop a download they started; a client that stops reading is
 * back-pressured (the proxy reads the file no further than the socket takes) and its file is closed when it
 * goes away.
 *
 * Connections that never complete a request head (or stay idle after a response) are closed after
 * `client_timeout_secs`; until then they cost one descriptor and a few KiB each.
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { type FakeMirror, startFakeMirror } from "../helpers/fake_mirror.ts";
import { startFlexo, writeTestConfig } from "../helpers/flexo_process.ts";
import { withinMs } from "../helpers/proxy_server.ts";
import { randomBytes, sha256 } from "../helpers/bytes.ts";
import { waitFor } from "../helpers/wait.ts";

const SMALL = "/core/os/x86_64/small-1.0-1-x86_64.pkg.tar.zst";
const BIG = "/core/os/x86_64/big-1.0-1-x86_64.pkg.tar.zst";
const BIG_SIZE = 96 * 1024 * 1024;
const MIB = 1024 * 1024;
const encoder = new TextEncoder();

/** The proxy process. */
interface Proxy {
  url: string;
  port: number;
  pid: number;
  /** Its cache directory. */
  dir: string;
}

interface Setup {
  proxy: Proxy;
  mirror: FakeMirror;
  small: Uint8Array;
  bigSha256: string;
}

/** A mirror with SMALL and BIG (BIG paced so that its download takes about two seconds) and a proxy. */
async function withSetup(
  fn: (setup: Setup) => Promise<void>,
  options: {
    clientTimeoutSecs?: number;
    maxOpenFiles?: number;
    sendfile?: boolean;
    maxConnections?: number;
  } = {},
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "flexo-slow-mirror-" });
  const small = randomBytes(200_000);
  const big = randomBytes(BIG_SIZE);
  const bigSha256 = sha256(big);
  await Deno.mkdir(join(root, dirname(BIG)), { recursive: true });
  await Deno.writeFile(join(root, SMALL), small);
  await Deno.writeFile(join(root, BIG), big);
  const mirror = await startFakeMirror(root, { match: BIG, bytesPerSecond: 48 * MIB });
  const work = await Deno.makeTempDir({ prefix: "flexo-slow-proxy-" });
  const dir = join(work, "cache");
  const config = await writeTestConfig(work, { cacheDir: dir, mirror: mirror.url });
  if (options.clientTimeoutSecs !== undefined) {
    await Deno.writeTextFile(config, `\nclient_timeout_secs = ${options.clientTimeoutSecs}\n`, {
      append: true,
    });
  }
  if (options.maxConnections !== undefined) {
    await Deno.writeTextFile(config, `\nmax_connections = ${options.maxConnections}\n`, { append: true });
  }
  if (options.sendfile !== undefined) {
    await Deno.writeTextFile(config, `\nsendfile = ${options.sendfile}\n`, { append: true });
  }
  const process = await startFlexo(config, { maxOpenFiles: options.maxOpenFiles });
  const proxy = { url: process.url, port: process.port, pid: process.pid, dir };
  try {
    await withinMs(fn({ proxy, mirror, small, bigSha256 }), 40_000, "the test did not finish within 40 s");
  } finally {
    await process.stop();
    await mirror.close();
    await Deno.remove(root, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
}

/**
 * Opens `saysNothing` connections that send nothing, then `stopsHalfway` each that stop in the middle of the
 * request line and in the middle of the headers; adds them all to `into` (so that the caller closes them).
 */
async function openSilentConnections(
  port: number,
  into: Deno.Conn[],
  options: { saysNothing: number; stopsHalfway: number },
): Promise<void> {
  for (let i = 0; i < options.saysNothing; i++) {
    into.push(await Deno.connect({ hostname: "127.0.0.1", port }));
  }
  for (const part of ["GET /core/os/x86_64/sm", `GET ${SMALL} HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: by`]) {
    for (let i = 0; i < options.stopsHalfway; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      into.push(conn);
      await conn.write(encoder.encode(part));
    }
  }
}

/** Opens `count` connections that each ask for BIG, read its first `readFirst` bytes and then stop reading. */
async function openStalledReaders(port: number, count: number, readFirst: number): Promise<Deno.Conn[]> {
  const stalled: Deno.Conn[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      stalled.push(conn);
      await conn.write(encoder.encode(`GET ${BIG} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
      await readBytes(conn, readFirst);
    }
    return stalled;
  } catch (error) {
    for (const conn of stalled) conn.close();
    throw error;
  }
}

/** Fetches SMALL through the proxy and checks the bytes; returns the milliseconds it took. */
async function timedGood(setup: Setup): Promise<number> {
  const started = performance.now();
  const response = await fetch(setup.proxy.url + SMALL, { signal: AbortSignal.timeout(5_000) });
  const body = new Uint8Array(await response.arrayBuffer());
  assertEquals(response.status, 200);
  assertEquals(body, setup.small);
  return performance.now() - started;
}

/** The SHA-256 and length of a whole body read through fetch. */
async function hashOf(response: Response): Promise<{ sha256: string; length: number }> {
  const hash = createHash("sha256");
  let length = 0;
  for await (const chunk of response.body!) {
    hash.update(chunk);
    length += chunk.byteLength;
  }
  return { sha256: hash.digest("hex"), length };
}

/** Open descriptors of the proxy that point below its cache directory, with their file positions. */
function descriptorsBelow(proxy: Proxy): { path: string; position: number }[] {
  const found: { path: string; position: number }[] = [];
  for (const entry of Deno.readDirSync(`/proc/${proxy.pid}/fd`)) {
    try {
      const path = Deno.readLinkSync(`/proc/${proxy.pid}/fd/${entry.name}`);
      if (!path.startsWith(proxy.dir + "/")) continue;
      const info = Deno.readTextFileSync(`/proc/${proxy.pid}/fdinfo/${entry.name}`);
      found.push({ path, position: Number(/^pos:\s*(\d+)/m.exec(info)?.[1] ?? NaN) });
    } catch {
      // closed in between
    }
  }
  return found;
}

/** Open descriptors of the proxy. */
function openDescriptors(proxy: Proxy): number {
  let count = 0;
  for (const _ of Deno.readDirSync(`/proc/${proxy.pid}/fd`)) count++;
  return count;
}

/** The proxy's resident memory in bytes. */
function rssOf(proxy: Proxy): number {
  const status = Deno.readTextFileSync(`/proc/${proxy.pid}/status`);
  return Number(/^VmRSS:\s*(\d+) kB/m.exec(status)?.[1]) * 1024;
}

/** Reads from `conn` until `total` bytes arrived or the server closed; returns everything read. */
async function readBytes(conn: Deno.Conn, total: number): Promise<Uint8Array> {
  const out = new Uint8Array(total);
  let offset = 0;
  while (offset < total) {
    const n = await conn.read(out.subarray(offset));
    if (n === null) break;
    offset += n;
  }
  return out.subarray(0, offset);
}

/** The body of a raw HTTP response (everything after the blank line that ends the head). */
function bodyOf(response: Uint8Array): Uint8Array {
  for (let i = 0; i + 3 < response.length; i++) {
    if (response[i] === 13 && response[i + 1] === 10 && response[i + 2] === 13 && response[i + 3] === 10) {
      return response.subarray(i + 4);
    }
  }
  throw new Error("the response has no end of head");
}

Deno.test("a client sending its request a byte at a time blocks nobody and is answered correctly", async () => {
  await withSetup(async (setup) => {
    const { proxy } = setup;
    const rssBefore = rssOf(proxy);
    const request =
      `GET ${SMALL} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: trickle\r\nConnection: close\r\n\r\n`;
    // Thirty of them at once, each taking about 1.5 s for its request.
    const trickles = Array.from({ length: 30 }, async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      try {
        for (const byte of encoder.encode(request)) {
          await conn.write(new Uint8Array([byte]));
          await new Promise((resolve) => setTimeout(resolve, 15));
        }
        const answer = await readBytes(conn, 1024 * 1024);
        const text = new TextDecoder().decode(answer.subarray(0, 200));
        assert(text.startsWith("HTTP/1.1 200"), `the trickling client got ${text}`);
        assertEquals(bodyOf(answer), setup.small, "the trickling client's body is the file");
      } finally {
        conn.close();
      }
    });
    // Meanwhile normal clients are served at once.
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (let i = 0; i < 5; i++) {
      const ms = await timedGood(setup);
      assert(ms < 2_000, `a normal client waited ${Math.round(ms)} ms behind trickling clients`);
    }
    await Promise.all(trickles);
    const grown = rssOf(proxy) - rssBefore;
    assert(grown < 64 * MIB, `RSS grew by ${(grown / MIB).toFixed(1)} MiB with trickling clients`);
  });
});

Deno.test("clients that connect and say nothing block nobody and cost no memory", async () => {
  await withSetup(async (setup) => {
    const { proxy } = setup;
    await timedGood(setup); // cached now
    const fdsBefore = openDescriptors(proxy);
    const rssBefore = rssOf(proxy);
    const silent: Deno.Conn[] = [];
    try {
      await openSilentConnections(proxy.port, silent, { saysNothing: 300, stopsHalfway: 20 });
      await new Promise((resolve) => setTimeout(resolve, 300));
      for (let i = 0; i < 10; i++) {
        const ms = await timedGood(setup);
        assert(ms < 2_000, `a normal client waited ${Math.round(ms)} ms behind silent connections`);
      }
      const grown = rssOf(proxy) - rssBefore;
      assert(grown < 32 * MIB, `RSS grew by ${(grown / MIB).toFixed(1)} MiB for 340 silent connections`);
      assertEquals(setup.mirror.requests.length, 1, "no silent connection made an upstream request");
      // They are held open (until client_timeout_secs, 60 s here), one descriptor each.
      assert(openDescriptors(proxy) >= fdsBefore + 300, "the proxy holds the silent connections");
    } finally {
      for (const conn of silent) conn.close();
    }
    // Once the clients close them, the proxy lets them go.
    await waitFor("releasing the silent connections", () => openDescriptors(proxy) <= fdsBefore + 4, 5_000);
    await timedGood(setup);
  });
});

Deno.test("a client that stops reading is back-pressured, its download completes and others get the file", async () => {
  await withSetup(async (setup) => {
    const { proxy } = setup;
    const rssBefore = rssOf(proxy);
    const stalled = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    try {
      await stalled.write(encoder.encode(`GET ${BIG} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
      const first = await readBytes(stalled, 64 * 1024);
      assert(new TextDecoder().decode(first.subarray(0, 12)).startsWith("HTTP/1.1 200"));
      // It reads nothing more. The download it started runs on at the mirror's pace...
      const joined = fetch(proxy.url + BIG, { signal: AbortSignal.timeout(20_000) }).then(hashOf);
      const started = performance.now();
      await waitFor(
        "the download completing into the cache",
        async () => (await Deno.stat(join(proxy.dir, BIG)).catch(() => undefined))?.size === BIG_SIZE,
        15_000,
      );
      const downloadMs = performance.now() - started;
      // ...and a second client gets the whole file while the first one is still stuck.
      const other = await joined;
      assertEquals(other, { sha256: setup.bigSha256, length: BIG_SIZE }, "the other client got the file");
      assertEquals(setup.mirror.countRequests(BIG, { method: "GET" }), 1, "one upstream transfer");
      // A cache hit is not held up either.
      const hit = await fetch(proxy.url + BIG, { signal: AbortSignal.timeout(10_000) }).then(hashOf);
      assertEquals(hit.sha256, setup.bigSha256);
      // The stalled response still holds the file open (it may continue reading), but has read only as far as
      // the socket took: the unread rest of the file was not pulled into memory.
      // (The other readers close their files as their responses end.)
      await waitFor(
        "the other readers closing the file",
        () => descriptorsBelow(proxy).length === 1,
        3_000,
      );
      const open = descriptorsBelow(proxy);
      assertEquals(open.length, 1, `only the stalled response has the file open: ${JSON.stringify(open)}`);
      assert(
        open[0].position < 16 * MIB,
        `the stalled response read ${
          (open[0].position / MIB).toFixed(1)
        } MiB of the file ahead of its client`,
      );
      // (Memory is checked alone in the next test: the other clients' reads leave garbage behind here.)
      const grown = rssOf(proxy) - rssBefore;
      assert(
        grown < BIG_SIZE,
        `RSS grew by ${(grown / MIB).toFixed(1)} MiB (download took ${downloadMs} ms)`,
      );
    } finally {
      stalled.close();
    }
    // ...and lets it go once the client disconnects.
    await waitFor(
      "the stalled client's file being closed",
      () => descriptorsBelow(proxy).length === 0,
      5_000,
    );
    await timedGood(setup);
  });
});

Deno.test("ten clients that stop reading in the middle of a download do not make the proxy's memory grow", async () => {
  await withSetup(async (setup) => {
    const { proxy } = setup;
    await timedGood(setup);
    const rssBefore = rssOf(proxy);
    let stalled: Deno.Conn[] = [];
    try {
      stalled = await openStalledReaders(proxy.port, 10, 64 * 1024);
      await waitFor(
        "the download completing into the cache",
        async () => (await Deno.stat(join(proxy.dir, BIG)).catch(() => undefined))?.size === BIG_SIZE,
        15_000,
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      // A download alone raises RSS by up to about 80 MiB (buffers and garbage of a fast transfer, the same for
      // any file size); ten clients holding the unread rest of a 96 MiB file would need ten times that.
      const grown = rssOf(proxy) - rssBefore;
      assert(
        grown < 160 * MIB,
        `RSS grew by ${(grown / MIB).toFixed(1)} MiB while ten clients left ${BIG_SIZE / MIB} MiB unread`,
      );
      const open = descriptorsBelow(proxy);
      assertEquals(open.length, 10, `each stalled response has the file open: ${JSON.stringify(open)}`);
      for (const { position } of open) {
        assert(position < 16 * MIB, `a stalled response read ${(position / MIB).toFixed(1)} MiB ahead`);
      }
    } finally {
      for (const conn of stalled) conn.close();
    }
    await waitFor(
      "the stalled clients' files being closed",
      () => descriptorsBelow(proxy).length === 0,
      5_000,
    );
  });
});

for (const sendfile of [true, false]) {
  const how = sendfile ? "sent with sendfile" : "copied through JavaScript";
  Deno.test(`a client that stops reading a cached file (${how}) lets it go when it disconnects; others are served`, async () => {
    await withSetup(async (setup) => {
      const { proxy } = setup;
      const warm = await fetch(proxy.url + BIG).then(hashOf);
      assertEquals(warm.sha256, setup.bigSha256);
      const rssBefore = rssOf(proxy);
      let stalled: Deno.Conn[] = [];
      try {
        stalled = await openStalledReaders(proxy.port, 10, 16 * 1024);
        await new Promise((resolve) => setTimeout(resolve, 500));
        const ms = await timedGood(setup);
        assert(ms < 2_000, `a normal client waited ${Math.round(ms)} ms behind stalled readers`);
        const grown = rssOf(proxy) - rssBefore;
        assert(
          grown < 64 * MIB,
          `RSS grew by ${(grown / MIB).toFixed(1)} MiB for ten stalled readers`,
        );
        // (The small file's download and reader may still be closing; only the big file's readers count.)
        const open = descriptorsBelow(proxy).filter((d) => d.path.endsWith(BIG));
        assertEquals(open.length, 10, `each stalled reader has its file open once: ${JSON.stringify(open)}`);
        // Copied through JavaScript, a file is read only as far ahead as the socket takes; with sendfile nothing is
        // read into the process at all (the kernel copies from the page cache), and the position stays 0.
        for (const { position } of open) {
          assert(
            position < 16 * MIB,
            `a stalled reader read ${(position / MIB).toFixed(1)} MiB ahead of its client`,
          );
        }
      } finally {
        for (const conn of stalled) conn.close();
      }
      await waitFor(
        "the stalled readers' files being closed",
        () => descriptorsBelow(proxy).length === 0,
        5_000,
      );
    }, { sendfile });
  });
}

Deno.test("connections that never complete a request, or stay idle after one, are closed after client_timeout_secs", async () => {
  await withSetup(async (setup) => {
    const { proxy } = setup;
    await timedGood(setup); // cached now
    const fdsBefore = openDescriptors(proxy);
    const connections: Deno.Conn[] = [];
    try {
      await openSilentConnections(proxy.port, connections, { saysNothing: 50, stopsHalfway: 10 });
      // A keep-alive connection that got its answer and then says nothing more.
      const idle = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      connections.push(idle);
      await idle.write(encoder.encode(`HEAD ${SMALL} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
      const head = new TextDecoder().decode(await readBytes(idle, 12));
      assert(head.startsWith("HTTP/1.1 200"), `the idle client's answer: ${head}`);
      const started = performance.now();
      // Every one of them is closed by the server (end of stream, or a reset for the half requests).
      const ends = await withinMs(
        Promise.all(connections.map((conn) => readUntilClosed(conn))),
        10_000,
        "the server kept connections open past client_timeout_secs",
      );
      const ms = performance.now() - started;
      assert(ms >= 1_500, `closed after ${Math.round(ms)} ms, before the 2 s timeout`);
      for (const end of ends) assert(!/^HTTP\/1\.1 [23]/.test(end), `a timed-out connection got: ${end}`);
      await waitFor(
        "releasing the timed-out connections",
        () => openDescriptors(proxy) <= fdsBefore + 4,
        5_000,
      );
      await timedGood(setup);
    } finally {
      for (const conn of connections) {
        try {
          conn.close();
        } catch {
          // closed by the test already
        }
      }
    }
  }, { clientTimeoutSecs: 2 });
});

Deno.test("a download that takes longer than client_timeout_secs is not cut off", async () => {
  await withSetup(async (setup) => {
    const response = await fetch(setup.proxy.url + BIG);
    assertEquals(response.status, 200);
    const { sha256, length } = await hashOf(response);
    assertEquals(length, BIG_SIZE);
    assertEquals(sha256, setup.bigSha256);
  }, { clientTimeoutSecs: 1 });
});

Deno.test("more connections than the proxy has descriptors for do not stop it; it serves again once they go", async () => {
  await withSetup(async (setup) => {
    const { proxy } = setup;
    await timedGood(setup); // cached now
    const flood: Deno.Conn[] = [];
    try {
      // Beyond the limit the proxy's accept fails ("too many open files"); the kernel queues the rest.
      for (let i = 0; i < 200; i++) {
        flood.push(await Deno.connect({ hostname: "127.0.0.1", port: proxy.port }));
      }
      await waitFor("the proxy to run out of descriptors", () => openDescriptors(proxy) >= 120, 5_000);
    } finally {
      for (const conn of flood) conn.close();
    }
    // Deno.serve ends its accept loop, and the process, on that error; flexo waits and accepts again.
    await waitFor("the proxy to serve again", async () => {
      try {
        await timedGood(setup);
        return true;
      } catch {
        return false;
      }
    }, 10_000);
    // A cap above the limit (the default stays below it), so that accepting does fail.
  }, { maxOpenFiles: 128, maxConnections: 1_000 });
});

/** Reads from `conn` until the server closes it; returns what was read (a reset counts as closed). */
async function readUntilClosed(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  while (true) {
    try {
      const n = await conn.read(buffer);
      if (n === null) return text;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) return text;
      throw error;
    }
  }
}
