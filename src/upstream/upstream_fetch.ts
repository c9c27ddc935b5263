/**
 * flexo's HTTP/1.1 client to mirrors: a `fetch` for the GET and HEAD requests of downloads, over kept-alive
 * connections of its own.
 *
 * On a kept connection it writes the request before `fetch()` returns; Deno's `fetch` sends it only once the
 * JavaScript turn that made it has ended, after the rest of that turn's work (a download creating its partial
 * file and its integrity check). A cold miss's request reached the mirror 0.55-0.75 ms sooner, and a cold
 * package cost the main thread about 0.2 ms less (BENCHMARKS.md, session eight). The contract is `fetch`'s, so
 * the download code and its tests do not know which one they use; what this client does not do itself goes to
 * the runtime's `fetch` (the `fallback`):
 * - methods other than GET and HEAD, and requests with a body;
 * - `redirect` other than `"follow"`;
 * - everything while a proxy is set in the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, in either
 *   case), which the runtime's `fetch` honours.
 *
 * It asks for nothing compressed and decodes nothing: a body comes exactly as the mirror sent it, with its
 * `Content-Encoding` for the caller to judge. `Response.url` and `redirected` are not set.
 *
 * @example
 * ```ts
 * const client = createUpstreamClient();
 * const response = await client.fetch("https://mirror.example/core/os/x86_64/core.db");
 * await response.body?.cancel();
 * client.close();
 * ```
 *
 * @module
 */

import { bodyStream, ConnectionReader } from "./_body_stream.ts";
import { type Connect, ConnectionPool, denoConnect, type PooledConnection } from "./_connection_pool.ts";
import type { SocketReadNow } from "../http/socket_read_now.ts";
import { MAX_RESPONSE_HEAD_BYTES, parseResponseHead, type ResponseHead } from "./_response_head.ts";
import { findHeadEnd } from "../http/head_bytes.ts";
import { closeQuietly } from "../close_quietly.ts";
import { writeAll } from "../write_all.ts";

/** Options of {@linkcode createUpstreamClient}. */
export interface UpstreamClientOptions {
  /** For what this client does not do itself (see the module's comment). Default: the runtime's `fetch`. */
  fallback?: typeof fetch;
  /** Opens connections. Default: `Deno.connect`, and `Deno.startTls` for https. */
  connect?: Connect;
  /** Certificates (PEM) trusted besides the runtime's store, for https mirrors (with the default `connect`). */
  caCerts?: string[];
  /** Whether requests go through a proxy (then all go to `fallback`). Default: set in the environment. */
  proxied?: boolean;
  /** Idle connections kept per origin. Default 8. */
  maxIdlePerOrigin?: number;
  /** A connection idle longer is not used again. Default 20 s. */
  idleMs?: number;
  /** Clock in milliseconds. Default `performance.now`. */
  now?: () => number;
  /**
   * Reads of what a plain (http) connection's socket holds now, looked up once per connection after its first
   * request went out (main.ts makes it from libc's `recv`); bodies are read with it when their bytes are there
   * already. Default: none (every read waits in the runtime's event loop).
   */
  socketReads?: (conn: Deno.Conn) => SocketReadNow | undefined;
  /**
   * Shuts a TCP connection's socket down under the runtime (main.ts makes it from libc's `shutdown`), with the
   * default `connect`: a TLS handshake that an abort gave up on otherwise keeps its socket open until the mirror
   * answers. Default: none (a silent https mirror keeps one socket per timed-out request).
   */
  shutdownSocket?: (conn: Deno.Conn) => void;
}

/** A `fetch` with its own connections, and how to close them. */
export interface UpstreamClient {
  fetch: typeof fetch;
  /** Idle connections kept now. */
  readonly idleConnections: number;
  /** Closes the idle connections; requests after it still work, without keeping theirs. */
  close(): void;
}

/** Redirects followed at most, as browsers' `fetch`. */
const MAX_REDIRECTS = 20;

/** Bytes read for a response head at first; a larger head grows the buffer up to the limit. */
const HEAD_BUFFER_BYTES = 16 * 1024;

const PROXY_VARIABLES = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"];

/** Whether the environment sets a proxy (false when it cannot be read). */
function proxyInEnvironment(): boolean {
  try {
    return PROXY_VARIABLES.some((name) => (Deno.env.get(name) ?? "") !== "");
  } catch {
    return false;
  }
}

/** A reused connection that the mirror had closed: the request is sent again on a new one. */
class StaleConnection extends Error {}

/**
 * Makes an upstream client.
 *
 * @example
 * ```ts
 * const client = createUpstreamClient({ proxied: false });
 * const app = createApp(config, { fetch: client.fetch });
 * ```
 */
export function createUpstreamClient(options: UpstreamClientOptions = {}): UpstreamClient {
  const fallback = options.fallback ?? globalThis.fetch;
  const connect = options.connect ??
    denoConnect({ caCerts: options.caCerts, shutdownSocket: options.shutdownSocket });
  const proxied = options.proxied ?? proxyInEnvironment();
  const pool = new ConnectionPool({
    maxIdlePerOrigin: options.maxIdlePerOrigin ?? 8,
    idleMs: options.idleMs ?? 20_000,
    now: options.now ?? (() => performance.now()),
  });

  /** Sends one request on one connection (retrying once on a new one if a kept one was found closed). */
  const exchange = async (
    method: string,
    url: URL,
    headers: Headers,
    signal: AbortSignal | null | undefined,
  ): Promise<Response> => {
    const origin = url.protocol + "//" + url.host;
    const request = requestBytes(method, url, headers);
    for (let attempt = 0;; attempt++) {
      signal?.throwIfAborted();
      let connection = attempt === 0 ? pool.take(origin) : undefined;
      const reused = connection !== undefined;
      connection ??= await open(origin, url, signal);
      try {
        return await respond(connection, request, method, reused, signal);
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (error instanceof StaleConnection && attempt === 0) continue;
        throw error instanceof StaleConnection ? new TypeError(`${url.host} closed the connection`) : error;
      }
    }
  };

  const open = async (origin: string, url: URL, signal: AbortSignal | null | undefined) => {
    const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    const tls = url.protocol === "https:";
    const port = url.port === "" ? (tls ? 443 : 80) : Number(url.port);
    const connecting = connect({ tls, hostname, port }, signal).catch((error) => {
      throw new TypeError(`connecting to ${url.host} failed`, { cause: error });
    });
    // An abort answers at once; a connection that comes all the same (a TLS handshake goes on) is closed.
    const conn = await untilAborted(connecting, signal, (late) => closeQuietly(late));
    return { conn, origin, idleSince: 0 } satisfies PooledConnection;
  };

  const respond = async (
    connection: PooledConnection,
    request: Uint8Array,
    method: string,
    reused: boolean,
    signal: AbortSignal | null | undefined,
  ): Promise<Response> => {
    const { conn } = connection;
    // An abort that came while the connection was opening (in the microtasks after it opened) fired no listener.
    if (signal?.aborted) {
      closeQuietly(conn);
      throw signal.reason;
    }
    let aborted = false;
    const unread: { reader?: ConnectionReader } = {};
    const onAbort = () => {
      aborted = true;
      // The bytes read already are not given either: the body's next read fails with the abort's reason.
      unread.reader?.discard();
      closeQuietly(conn);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const settle = () => signal?.removeEventListener("abort", onAbort);
    let head: ResponseHead;
    let buffer: Uint8Array;
    let bodyStart: number;
    let end: number;
    try {
      // A kept connection the mirror has closed may fail the write already.
      await writeAll(conn, request).catch((error) => {
        throw reused && !aborted ? new StaleConnection() : error;
      });
      // Once per connection, while the mirror answers: not on the way of the request, nor of the head.
      if (connection.readsNow === undefined) {
        connection.readsNow = connection.origin.startsWith("http:")
          ? options.socketReads?.(conn) ?? null
          : null;
      }
      ({ head, buffer, bodyStart, end } = await readHead(conn, method, reused, connection.buffer));
      connection.buffer = buffer;
    } catch (error) {
      settle();
      closeQuietly(conn);
      throw aborted ? signal!.reason : error;
    }
    const reader = unread.reader = new ConnectionReader(
      conn,
      buffer,
      bodyStart,
      end,
      connection.readsNow ?? undefined,
    );
    // Once: a connection given back to the pool (a body read whole) is another request's from then on, even
    // when the Response for this one cannot be made after all.
    let ended = false;
    const bodyEnd = {
      done: (reusable: boolean) => {
        if (ended) return;
        ended = true;
        settle();
        if (reusable && !aborted) pool.give(connection);
        else closeQuietly(conn);
      },
      broken: () => {
        if (ended) return;
        ended = true;
        settle();
        closeQuietly(conn);
      },
      failure: (error: unknown) => aborted ? signal!.reason : error,
    };
    let body: ReadableStream<Uint8Array> | null = null;
    if (head.framing.type === "none") bodyEnd.done(head.keepAlive && end === bodyStart);
    else body = bodyStream(reader, head.framing, head.keepAlive, bodyEnd);
    try {
      return new Response(body, { status: head.status, statusText: head.statusText, headers: head.headers });
    } catch (error) {
      bodyEnd.broken();
      throw new TypeError(`answered a response that cannot be used (${(error as Error).message})`);
    }
  };

  const clientFetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request ? input : undefined;
    const method = (init?.method ?? request?.method ?? "GET").toUpperCase();
    const redirect = init?.redirect ?? request?.redirect ?? "follow";
    if (
      proxied || (method !== "GET" && method !== "HEAD") || redirect !== "follow" || init?.body != null ||
      (request?.body ?? null) !== null
    ) {
      return await fallback(input, init);
    }
    let url = new URL(request ? request.url : input instanceof URL ? input.href : String(input));
    if (url.protocol !== "http:" && url.protocol !== "https:") return await fallback(input, init);
    let headers = init?.headers instanceof Headers
      ? init.headers
      : new Headers(init?.headers ?? request?.headers);
    const signal = init?.signal ?? request?.signal;
    let method_ = method;
    for (let redirects = 0;; redirects++) {
      const response = await exchange(method_, url, withCredentials(url, headers), signal);
      const location = response.headers.get("location");
      if (![301, 302, 303, 307, 308].includes(response.status) || location === null) return response;
      await response.body?.cancel();
      if (redirects >= MAX_REDIRECTS) {
        throw new TypeError(`more than ${MAX_REDIRECTS} redirects from ${url.host}`);
      }
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw new TypeError(`${url.host} redirected to an invalid URL: ${location}`);
      }
      if (next.protocol !== "http:" && next.protocol !== "https:") {
        throw new TypeError(`${url.host} redirected to a URL that is not http(s): ${next.protocol}`);
      }
      if (response.status === 303 && method_ !== "HEAD") method_ = "GET";
      if (next.origin !== url.origin) {
        // Credentials are for the origin they were given for (as fetch does).
        headers = new Headers(headers);
        headers.delete("authorization");
        headers.delete("cookie");
      }
      url = next;
    }
  };

  return {
    fetch: clientFetch as typeof fetch,
    get idleConnections() {
      return pool.idleCount;
    },
    close: () => pool.close(),
  };
}

/** The headers with `Authorization: Basic` for the URL's user and password, when it has them and none is set. */
function withCredentials(url: URL, headers: Headers): Headers {
  if (url.username === "" && url.password === "") return headers;
  if (headers.has("authorization")) return headers;
  const copy = new Headers(headers);
  const pair = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  copy.set("authorization", `Basic ${btoa(String.fromCharCode(...new TextEncoder().encode(pair)))}`);
  return copy;
}

/** Headers the client writes itself, or that would change the framing of a request without a body. */
const OWN_HEADERS = new Set(["host", "connection", "keep-alive", "content-length", "transfer-encoding"]);

/** The request's head as bytes: one write. */
function requestBytes(method: string, url: URL, headers: Headers): Uint8Array {
  let text = `${method} ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
  for (const [name, value] of headers) {
    if (!OWN_HEADERS.has(name)) text += `${name}: ${value}\r\n`;
  }
  if (!headers.has("accept")) text += "accept: */*\r\n";
  text += "\r\n";
  // Header values are byte strings (code units up to 255): one byte each.
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/**
 * Reads the response head (after any 1xx interim ones). A kept connection that ends or fails before the first
 * byte was closed by the mirror meanwhile: {@linkcode StaleConnection}.
 */
async function readHead(
  conn: Deno.Conn,
  method: string,
  reused: boolean,
  kept: Uint8Array | undefined,
): Promise<{ head: ResponseHead; buffer: Uint8Array; bodyStart: number; end: number }> {
  let buffer = kept ?? new Uint8Array(HEAD_BUFFER_BYTES);
  let start = 0;
  let end = 0;
  let received = false;
  // Bytes from `start` on searched already for the head's end: each is looked at once, not again after every
  // read (a mirror dripping a 64 KiB head a byte per read cost the main thread seconds).
  let searched = 0;
  while (true) {
    const headEnd = findHeadEnd(buffer.subarray(start, end), { from: searched - 3, length: end - start });
    searched = end - start;
    if (headEnd >= 0) {
      const head = parseResponseHead(buffer.subarray(start, start + headEnd), method);
      // A 408 on a kept connection is the mirror's goodbye to it (written while it was idle), not an answer
      // to this request: asked again on a new one, as RFC 9110 section 15.5.9 allows.
      if (head.status === 408 && reused) throw new StaleConnection();
      if (head.status >= 200) return { head, buffer, bodyStart: start + headEnd, end };
      if (head.status === 101) throw new TypeError("switched protocols (101), which flexo did not ask for");
      // 100 Continue, 103 Early Hints: the answer follows.
      start += headEnd;
      searched = 0;
      continue;
    }
    if (end - start >= MAX_RESPONSE_HEAD_BYTES) {
      throw new TypeError(`sent a response head larger than ${MAX_RESPONSE_HEAD_BYTES} bytes`);
    }
    if (end === buffer.length) {
      const next = new Uint8Array(
        start === 0 ? Math.min(buffer.length * 2, MAX_RESPONSE_HEAD_BYTES) : buffer.length,
      );
      next.set(buffer.subarray(start, end));
      end -= start;
      start = 0;
      buffer = next;
    }
    let read: number | null;
    try {
      read = await conn.read(buffer.subarray(end));
    } catch (error) {
      if (reused && !received) throw new StaleConnection();
      throw error;
    }
    if (read === null) {
      if (reused && !received) throw new StaleConnection();
      throw new TypeError("closed the connection before its answer was whole");
    }
    received = true;
    end += read;
    // Bytes before a kept connection's answer that cannot begin one are the previous answer's (a body longer
    // than its Content-Length, a body after a HEAD's head), come after it was read whole: that answer, not
    // this one, is at fault, and the request is asked again on a new connection.
    if (reused && start === 0 && !startsLikeStatusLine(buffer, end)) throw new StaleConnection();
  }
}

const STATUS_LINE_START = [0x48, 0x54, 0x54, 0x50, 0x2f]; // "HTTP/"

/** Whether the first `end` bytes of `buffer` are, or begin with, "HTTP/". */
function startsLikeStatusLine(buffer: Uint8Array, end: number): boolean {
  for (let i = 0; i < Math.min(end, STATUS_LINE_START.length); i++) {
    if (buffer[i] !== STATUS_LINE_START[i]) return false;
  }
  return true;
}

/** `promise`, or the signal's reason as soon as it is aborted; what the promise gives after that goes to `late`. */
function untilAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal | null | undefined,
  late: (value: T) => void,
): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      reject(signal.reason);
      promise.then(late, () => {});
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
