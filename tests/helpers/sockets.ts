/**
 * Real TCP connections on 127.0.0.1 for the sendfile tests: a file sender, connected pairs, reading to the end.
 *
 * @module
 */

import { FileSender } from "../../src/server/sendfile.ts";
import { openLibc } from "../../src/server/libc.ts";
import { concat } from "../../src/byte_reader.ts";

/** A sender on this machine's libc; fails the test when there is none. */
export function fileSender(): FileSender {
  const opened = openLibc();
  if (!opened.ok) throw new Error(opened.reason);
  return new FileSender(opened.libc);
}

/** Both ends of one TCP connection: the server's (accepted) and the client's. */
export interface ConnectedPair {
  server: Deno.Conn;
  client: Deno.Conn;
}

/** A listener on 127.0.0.1 and a way to get connected pairs from it. */
export function pairs(): { connect(): Promise<ConnectedPair>; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  return {
    async connect() {
      const [client, server] = await Promise.all([
        Deno.connect({ hostname: "127.0.0.1", port }),
        listener.accept(),
      ]);
      return { server, client };
    },
    close: () => listener.close(),
  };
}

/** Runs `fn` with one connected pair, then closes both ends (those `fn` left open) and the listener. */
export async function withConnection(fn: (pair: ConnectedPair) => Promise<void>): Promise<void> {
  const net = pairs();
  const pair = await net.connect();
  try {
    await fn(pair);
  } finally {
    for (const conn of [pair.server, pair.client]) {
      try {
        conn.close();
      } catch {
        // closed by the test
      }
    }
    net.close();
  }
}

/** Everything a connection receives until the other side ends it (a reset counts as the end). */
export async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(256 * 1024);
  try {
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      parts.push(buffer.slice(0, n));
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
  }
  return concat(parts);
}

/**
 * Sends `text` (a raw request, or several) to `127.0.0.1:port` on a new connection and returns everything the
 * server sends until it closes, as Latin-1 text. End the last request with `Connection: close`, or the server
 * keeps the connection open.
 */
export async function rawExchange(port: number, text: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(text));
    return new TextDecoder("latin1").decode(await readAll(conn));
  } finally {
    conn.close();
  }
}

/** One HTTP response as read off a socket. */
export interface RawResponse {
  status: number;
  /** Header names in lower case. */
  headers: Map<string, string>;
  /** Everything after the head, as Latin-1 text. */
  body: string;
}

/**
 * Sends one request (`method target`, the `headers` given and `Connection: close`) to `127.0.0.1:port` and
 * parses the one response it gets.
 */
export async function rawRequest(
  port: number,
  method: string,
  target: string,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  const lines = Object.entries({ Host: "127.0.0.1", ...headers }).map(([name, value]) =>
    `${name}: ${value}\r\n`
  );
  return parseResponse(
    await rawExchange(port, `${method} ${target} HTTP/1.1\r\n${lines.join("")}Connection: close\r\n\r\n`),
  );
}

/** Parses one whole response (head and body, as Latin-1 text). */
export function parseResponse(text: string): RawResponse {
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) throw new Error(`no complete response head in ${JSON.stringify(text.slice(0, 200))}`);
  const [statusLine, ...headerLines] = text.slice(0, end).split("\r\n");
  const map = new Map<string, string>();
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    map.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status: Number(statusLine.split(" ")[1]), headers: map, body: text.slice(end + 4) };
}

/**
 * The bytes the kernel holds unsent or unacknowledged in the send queue of the TCP socket from 127.0.0.1:`port`
 * (a server) to 127.0.0.1:`peerPort` (its client), read from `/proc/net/tcp`; undefined when there is no such
 * socket. On loopback, bytes stay queued only while the client's receive buffer is full: a queue above 0 that
 * stays there means the server's writes to that client are held back.
 */
export function sendQueue(port: number, peerPort: number): number | undefined {
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, "0");
  const local = `0100007F:${hex(port)}`;
  const remote = `0100007F:${hex(peerPort)}`;
  for (const line of Deno.readTextFileSync("/proc/net/tcp").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] === local && fields[2] === remote) return parseInt(fields[4].split(":")[0], 16);
  }
  return undefined;
}
