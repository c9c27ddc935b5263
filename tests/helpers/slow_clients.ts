/**
 * The setup of the slow-client tests: the real program (`main.ts` in its own process, so that its descriptors and
 * memory are measured apart from the tests running beside it) behind a fake mirror with a small and a big
 * package, and the clients and measures they use (descriptors and their file positions, RSS, socket queues).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { assertEquals } from "./assert.ts";
import { type FakeMirror, startFakeMirror } from "./fake_mirror.ts";
import { startFlexo, writeTestConfig } from "./flexo_process.ts";
import { withinMs } from "./proxy_server.ts";
import { randomBytes, sha256 } from "./bytes.ts";
import { sendQueue } from "./sockets.ts";
import { waitFor } from "./wait.ts";

/** A small package, unpaced. */
export const SMALL = "/core/os/x86_64/small-1.0-1-x86_64.pkg.tar.zst";
/** A big package, paced at the mirror. */
export const BIG = "/core/os/x86_64/big-1.0-1-x86_64.pkg.tar.zst";
/** BIG's size. */
export const BIG_SIZE = 96 * 1024 * 1024;
/** A mebibyte. */
export const MIB = 1024 * 1024;
/** One encoder for request heads. */
export const encoder = new TextEncoder();

/** The proxy process. */
export interface Proxy {
  url: string;
  port: number;
  pid: number;
  /** Its cache directory. */
  dir: string;
}

/** What each test gets: the proxy, its mirror, SMALL's bytes and BIG's SHA-256. */
export interface Setup {
  proxy: Proxy;
  mirror: FakeMirror;
  small: Uint8Array;
  bigSha256: string;
}

/** A mirror with SMALL and BIG (BIG paced so that its download takes about two seconds) and a proxy. */
export async function withSetup(
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
export async function openSilentConnections(
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
export async function openStalledReaders(
  port: number,
  count: number,
  readFirst: number,
): Promise<Deno.Conn[]> {
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
export async function timedGood(setup: Setup): Promise<number> {
  const started = performance.now();
  const response = await fetch(setup.proxy.url + SMALL, { signal: AbortSignal.timeout(5_000) });
  const body = new Uint8Array(await response.arrayBuffer());
  assertEquals(response.status, 200);
  assertEquals(body, setup.small);
  return performance.now() - started;
}

/** The SHA-256 and length of a whole body read through fetch. */
export async function hashOf(response: Response): Promise<{ sha256: string; length: number }> {
  const hash = createHash("sha256");
  let length = 0;
  for await (const chunk of response.body!) {
    hash.update(chunk);
    length += chunk.byteLength;
  }
  return { sha256: hash.digest("hex"), length };
}

/**
 * Open descriptors of the proxy that point at files of its cache directory, with their file positions: flexo's
 * own state under `.flexo/` (the directory's lock, held while it runs) left out.
 */
export function descriptorsBelow(proxy: Proxy): { path: string; position: number }[] {
  const found: { path: string; position: number }[] = [];
  for (const entry of Deno.readDirSync(`/proc/${proxy.pid}/fd`)) {
    try {
      const path = Deno.readLinkSync(`/proc/${proxy.pid}/fd/${entry.name}`);
      if (!path.startsWith(proxy.dir + "/") || path.startsWith(`${proxy.dir}/.flexo/`)) continue;
      const info = Deno.readTextFileSync(`/proc/${proxy.pid}/fdinfo/${entry.name}`);
      found.push({ path, position: Number(/^pos:\s*(\d+)/m.exec(info)?.[1] ?? NaN) });
    } catch {
      // closed in between
    }
  }
  return found;
}

/**
 * Waits until the proxy's socket to each of `clients` has bytes it cannot send (the client's receive buffer is
 * full): from then on a response that respects back-pressure reads no further, while one that does not keeps
 * reading the file into memory.
 */
export async function saturated(proxy: Proxy, clients: Deno.Conn[]): Promise<void> {
  const ports = clients.map((conn) => (conn.localAddr as Deno.NetAddr).port);
  await waitFor(
    "the stalled clients' sockets to fill up",
    () => ports.every((port) => (sendQueue(proxy.port, port) ?? 0) > 0),
    10_000,
  );
}

/** Open descriptors of the proxy. */
export function openDescriptors(proxy: Proxy): number {
  let count = 0;
  for (const _ of Deno.readDirSync(`/proc/${proxy.pid}/fd`)) count++;
  return count;
}

/** The proxy's resident memory in bytes. */
export function rssOf(proxy: Proxy): number {
  const status = Deno.readTextFileSync(`/proc/${proxy.pid}/status`);
  return Number(/^VmRSS:\s*(\d+) kB/m.exec(status)?.[1]) * 1024;
}

/** Reads from `conn` until `total` bytes arrived or the server closed; returns everything read. */
export async function readBytes(conn: Deno.Conn, total: number): Promise<Uint8Array> {
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
export function bodyOf(response: Uint8Array): Uint8Array {
  for (let i = 0; i + 3 < response.length; i++) {
    if (response[i] === 13 && response[i + 1] === 10 && response[i + 2] === 13 && response[i + 3] === 10) {
      return response.subarray(i + 4);
    }
  }
  throw new Error("the response has no end of head");
}

/** Reads from `conn` until the server closes it; returns what was read (a reset counts as closed). */
export async function readUntilClosed(conn: Deno.Conn): Promise<string> {
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
