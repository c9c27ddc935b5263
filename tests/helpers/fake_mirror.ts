/**
 * A local HTTP/1.1 mirror for tests that serves files below a directory and misbehaves on demand.
 *
 * It is a small server on a raw TCP listener (127.0.0.1, port 0) rather than `Deno.serve`, so that it can
 * stall after the headers, cut a body short after `Content-Length` was sent, or delimit a body by closing
 * the connection: faults a real mirror shows and a proxy must survive.
 *
 * @module
 */

import { join, normalize, sep } from "node:path";

/**
 * Faults injected into responses. Without `match` a rule applies to every request; the first matching
 * rule of `mirror.faults` wins. Body faults (`bytesPerSecond`, `stallAfterBytes`, `dropAfterBytes`,
 * `corruptBytes`) apply to every body the rule's responses carry.
 */
export interface FaultOptions {
  /** Decoded request path this rule applies to: a string matches as a path suffix, a RegExp is tested. */
  match?: string | RegExp;
  /** Apply the rule to only this many matching requests, then behave normally. */
  times?: number;
  /** Wait this long before sending the response headers. */
  delayMs?: number;
  /** Throttle the body to this many bytes per second. */
  bytesPerSecond?: number;
  /** Send the headers and this many body bytes, then hang without closing until the client gives up. */
  stallAfterBytes?: number;
  /** Send the headers and this many body bytes, then close the connection (a truncated body). */
  dropAfterBytes?: number;
  /** Answer with this status and a short text body instead of the file, e.g. 404 or 500. */
  status?: number;
  /** Leave out `Content-Length`: the body ends when the connection closes. */
  omitContentLength?: boolean;
  /** Answer 302 with `Location` = this base URL + the request path (without its leading `/`). */
  redirectTo?: string;
  /** Answer a Range request with 200 and the whole file. */
  ignoreRange?: boolean;
  /** Flip (XOR 0xff) this many body bytes, spread evenly over the body. */
  corruptBytes?: number;
  /** Answer 200 `text/html` with an error page instead of the file (a captive portal or broken mirror). */
  htmlErrorPage?: boolean;
}

/** A request the mirror received. */
export interface RecordedRequest {
  /** HTTP method. */
  method: string;
  /** Percent-decoded path without query, e.g. `/core/os/x86_64/big-1:2.0-1-x86_64.pkg.tar.zst`. */
  path: string;
  /** The request target exactly as sent. */
  rawPath: string;
  /** The `Range` header, if any. */
  range?: string;
  /** All request headers, names in lower case. */
  headers: Record<string, string>;
}

/** A running fake mirror. */
export interface FakeMirror {
  /** Base URL ending with `/`, e.g. `http://127.0.0.1:40123/`. */
  readonly url: string;
  /** The TCP port. */
  readonly port: number;
  /** The directory served. */
  readonly rootDir: string;
  /** Faults in effect; change them at any time. One rule or a list (first match wins). */
  faults: FaultOptions | FaultOptions[];
  /** Every request received, in order. */
  readonly requests: RecordedRequest[];
  /** Number of TCP connections accepted so far. */
  readonly connections: number;
  /** Counts recorded requests whose decoded path ends with `pathSuffix` (optionally of one method). */
  countRequests(pathSuffix: string, options?: { method?: string }): number;
  /** Forgets the recorded requests. */
  clearRequests(): void;
  /** Closes the listener and every connection, including stalled ones. */
  close(): Promise<void>;
  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

interface ParsedRequest {
  method: string;
  target: string;
  version: string;
  headers: Record<string, string>;
}

interface MirrorResponse {
  status: number;
  headers: Record<string, string>;
  /** The body as a file slice or bytes; absent for no body. */
  body?: { file: string; start: number; length: number } | Uint8Array;
}

const encoder = new TextEncoder();
const MAX_HEADER_BYTES = 64 * 1024;
const READ_CHUNK = 64 * 1024;
const HTML_ERROR_PAGE =
  "<!DOCTYPE html>\n<html><head><title>Error</title></head><body><h1>Something went wrong" +
  "</h1></body></html>\n";
/** Reason phrases; clients ignore them, so other statuses just say "Status". */
const REASONS: Record<number, string> = {
  200: "OK",
  206: "Partial Content",
  302: "Found",
  304: "Not Modified",
};

/**
 * Starts a fake mirror serving the files below `rootDir` (GET and HEAD, single Range requests,
 * `If-Modified-Since`, `Last-Modified` from the file's mtime), with optional faults.
 *
 * @param rootDir Directory to serve (e.g. the `dir` of a repository made by `makeRepo`).
 * @param options Initial faults; change them later through `mirror.faults`.
 */
export function startFakeMirror(rootDir: string, options: FaultOptions = {}): Promise<FakeMirror> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  const closing = new AbortController();
  const openConns = new Set<Deno.TcpConn>();
  const handlers = new Set<Promise<void>>();
  const usesLeft = new WeakMap<FaultOptions, number>();
  const port = listener.addr.port;
  let accepted = 0;

  const mirror: FakeMirror = {
    url: `http://127.0.0.1:${port}/`,
    port,
    rootDir,
    faults: options,
    requests: [],
    get connections() {
      return accepted;
    },
    countRequests(pathSuffix, countOptions = {}) {
      return mirror.requests.filter((request) =>
        request.path.endsWith(pathSuffix) && (!countOptions.method || request.method === countOptions.method)
      ).length;
    },
    clearRequests() {
      mirror.requests.length = 0;
    },
    async close() {
      if (closing.signal.aborted) return;
      closing.abort();
      listener.close();
      for (const conn of openConns) closeQuietly(conn);
      await acceptLoop;
      await Promise.all([...handlers]);
    },
    [Symbol.asyncDispose]() {
      return mirror.close();
    },
  };

  function ruleFor(path: string): FaultOptions {
    const rules = Array.isArray(mirror.faults) ? mirror.faults : [mirror.faults];
    for (const rule of rules) {
      const matches = rule.match === undefined ||
        (typeof rule.match === "string" ? path.endsWith(rule.match) : rule.match.test(path));
      if (!matches) continue;
      if (rule.times === undefined) return rule;
      const left = usesLeft.get(rule) ?? rule.times;
      if (left <= 0) continue;
      usesLeft.set(rule, left - 1);
      return rule;
    }
    return {};
  }

  async function serveConnection(conn: Deno.TcpConn): Promise<void> {
    const reader = new RequestReader(conn);
    try {
      while (!closing.signal.aborted) {
        const request = await reader.next();
        if (!request) return;
        const path = decodePath(request.target);
        mirror.requests.push({
          method: request.method,
          path: path ?? request.target,
          rawPath: request.target,
          range: request.headers["range"],
          headers: request.headers,
        });
        const rule = ruleFor(path ?? request.target);
        const keepAlive = wantsKeepAlive(request) && !rule.omitContentLength;
        if (rule.delayMs) await sleep(rule.delayMs, closing.signal);
        const response = await respond(rootDir, request, path, rule);
        const headOnly = request.method === "HEAD";
        const finished = await send(conn, response, { headOnly, rule, keepAlive, signal: closing.signal });
        if (!finished || !keepAlive) return;
      }
    } catch {
      // The client went away or the mirror is closing: nothing to report.
    } finally {
      openConns.delete(conn);
      closeQuietly(conn);
    }
  }

  const acceptLoop = (async () => {
    try {
      for await (const conn of listener) {
        accepted++;
        openConns.add(conn);
        const handler = serveConnection(conn);
        handlers.add(handler);
        handler.finally(() => handlers.delete(handler));
      }
    } catch {
      // listener closed
    }
  })();

  return Promise.resolve(mirror);
}

/** Reads HTTP/1.1 requests from a connection, keeping bytes of pipelined requests. */
class RequestReader {
  #buffer = new Uint8Array(0);
  #conn: Deno.TcpConn;

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  async next(): Promise<ParsedRequest | null> {
    while (true) {
      const end = indexOfHeaderEnd(this.#buffer);
      if (end >= 0) {
        const head = new TextDecoder().decode(this.#buffer.subarray(0, end));
        this.#buffer = this.#buffer.subarray(end + 4);
        const request = parseHead(head);
        const bodyLength = Number(request.headers["content-length"] ?? 0);
        if (request.headers["transfer-encoding"] || !Number.isSafeInteger(bodyLength) || bodyLength < 0) {
          throw new Error("request bodies other than Content-Length are not supported");
        }
        await this.#skip(bodyLength);
        return request;
      }
      if (this.#buffer.length > MAX_HEADER_BYTES) throw new Error("request head too large");
      const chunk = await this.#read();
      if (!chunk) {
        if (this.#buffer.length > 0) throw new Error("connection closed inside a request head");
        return null;
      }
    }
  }

  async #skip(length: number): Promise<void> {
    while (this.#buffer.length < length) {
      if (!(await this.#read())) throw new Error("connection closed inside a request body");
    }
    this.#buffer = this.#buffer.subarray(length);
  }

  async #read(): Promise<boolean> {
    const chunk = new Uint8Array(READ_CHUNK);
    const n = await this.#conn.read(chunk);
    if (n === null) return false;
    const joined = new Uint8Array(this.#buffer.length + n);
    joined.set(this.#buffer);
    joined.set(chunk.subarray(0, n), this.#buffer.length);
    this.#buffer = joined;
    return true;
  }
}

function indexOfHeaderEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) return i;
  }
  return -1;
}

function parseHead(head: string): ParsedRequest {
  const [requestLine, ...headerLines] = head.split("\r\n");
  const [method, target, version] = requestLine.split(" ");
  if (!method || !target || !version?.startsWith("HTTP/")) {
    throw new Error(`bad request line: ${requestLine}`);
  }
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { method, target, version, headers };
}

function wantsKeepAlive(request: ParsedRequest): boolean {
  const connection = (request.headers["connection"] ?? "").toLowerCase();
  if (request.version === "HTTP/1.0") return connection.includes("keep-alive");
  return !connection.includes("close");
}

/** The percent-decoded path without query, or undefined when it cannot be decoded. */
function decodePath(target: string): string | undefined {
  const pathOnly = target.split("?")[0];
  try {
    return decodeURIComponent(pathOnly);
  } catch {
    return undefined;
  }
}

function textResponse(
  status: number,
  text: string,
  contentType = "text/plain; charset=utf-8",
): MirrorResponse {
  return { status, headers: { "content-type": contentType }, body: encoder.encode(text) };
}

async function respond(
  rootDir: string,
  request: ParsedRequest,
  path: string | undefined,
  rule: FaultOptions,
): Promise<MirrorResponse> {
  if (request.method !== "GET" && request.method !== "HEAD") {
    return { ...textResponse(405, "method not allowed\n"), headers: { allow: "GET, HEAD" } };
  }
  if (rule.redirectTo !== undefined) {
    const location = new URL(request.target.replace(/^\/+/, ""), rule.redirectTo).href;
    return { status: 302, headers: { location }, body: new Uint8Array() };
  }
  if (rule.status !== undefined) return textResponse(rule.status, `fake mirror status ${rule.status}\n`);
  if (rule.htmlErrorPage) return textResponse(200, HTML_ERROR_PAGE, "text/html; charset=utf-8");
  const file = path === undefined ? undefined : resolveInside(rootDir, path);
  if (!file) return textResponse(400, "bad path\n");
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(file);
  } catch {
    return textResponse(404, "not found\n");
  }
  if (!stat.isFile) return textResponse(404, "not found\n");

  const size = stat.size;
  const mtime = stat.mtime ?? new Date(0);
  const headers: Record<string, string> = {
    "content-type": "application/octet-stream",
    "last-modified": mtime.toUTCString(),
    "accept-ranges": "bytes",
  };
  const since = Date.parse(request.headers["if-modified-since"] ?? "");
  if (!Number.isNaN(since) && Math.floor(mtime.getTime() / 1000) <= Math.floor(since / 1000)) {
    return { status: 304, headers };
  }
  const rangeHeader = request.headers["range"];
  if (rangeHeader !== undefined && !rule.ignoreRange) {
    const range = parseRange(rangeHeader, size);
    if (range === "unsatisfiable") {
      return {
        status: 416,
        headers: { ...headers, "content-range": `bytes */${size}` },
        body: new Uint8Array(),
      };
    }
    if (range) {
      headers["content-range"] = `bytes ${range.start}-${range.end}/${size}`;
      return {
        status: 206,
        headers,
        body: { file, start: range.start, length: range.end - range.start + 1 },
      };
    }
  }
  return { status: 200, headers, body: { file, start: 0, length: size } };
}

/** Maps a decoded URL path to a file below rootDir; undefined for anything that could escape it. */
function resolveInside(rootDir: string, path: string): string | undefined {
  if (!path.startsWith("/") || path.includes("\0") || path.split("/").includes("..")) return undefined;
  const resolved = normalize(join(rootDir, path));
  const root = normalize(rootDir).replace(/\/+$/, "");
  return resolved.startsWith(root + sep) ? resolved : undefined;
}

/** A single byte range, null when the header is not one (ignored), or "unsatisfiable". */
function parseRange(header: string, size: number): { start: number; end: number } | null | "unsatisfiable" {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === "" && match[2] === "")) return null;
  if (match[1] === "") {
    const suffix = Number(match[2]);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (match[2] !== "" && Number(match[2]) < start) return null;
  if (start >= size) return "unsatisfiable";
  return { start, end };
}

/** Sends a response with the rule's body faults; false when the connection must not be reused. */
async function send(
  conn: Deno.TcpConn,
  response: MirrorResponse,
  options: { headOnly: boolean; rule: FaultOptions; keepAlive: boolean; signal: AbortSignal },
): Promise<boolean> {
  const { headOnly, rule, keepAlive, signal } = options;
  const body = response.body;
  const length = body?.length ?? 0;
  const headers: Record<string, string> = {
    date: new Date().toUTCString(),
    server: "flexo-fake-mirror",
    ...response.headers,
    connection: keepAlive ? "keep-alive" : "close",
  };
  if (!rule.omitContentLength && response.status !== 304) headers["content-length"] = String(length);
  const head = `HTTP/1.1 ${response.status} ${REASONS[response.status] ?? "Status"}\r\n` +
    Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("") + "\r\n";
  await writeAll(conn, encoder.encode(head));
  if (headOnly || body === undefined) return true;

  const limit = rule.stallAfterBytes ?? rule.dropAfterBytes;
  const flips = corruptionOffsets(length, rule.corruptBytes ?? 0);
  const started = Date.now();
  let sent = 0;
  for await (const original of bodyChunks(body, rule.bytesPerSecond)) {
    let chunk = original;
    if (flips.length > 0) chunk = corrupt(chunk, sent, flips);
    if (limit !== undefined && sent + chunk.length >= limit) {
      await writeAll(conn, chunk.subarray(0, limit - sent));
      sent = limit;
      break;
    }
    if (rule.bytesPerSecond) {
      await sleep(started + (sent / rule.bytesPerSecond) * 1000 - Date.now(), signal);
    }
    await writeAll(conn, chunk);
    sent += chunk.length;
  }
  if (limit === undefined || sent < limit) return true;
  if (rule.stallAfterBytes !== undefined) await waitUntilClientGivesUp(conn, signal);
  return false;
}

async function* bodyChunks(
  body: NonNullable<MirrorResponse["body"]>,
  bytesPerSecond: number | undefined,
): AsyncGenerator<Uint8Array> {
  const chunkSize = bytesPerSecond
    ? Math.max(1, Math.min(READ_CHUNK, Math.floor(bytesPerSecond / 20)))
    : READ_CHUNK;
  if (body instanceof Uint8Array) {
    for (let offset = 0; offset < body.length; offset += chunkSize) {
      yield body.subarray(offset, offset + chunkSize);
    }
    return;
  }
  const file = await Deno.open(body.file, { read: true });
  try {
    await file.seek(body.start, Deno.SeekMode.Start);
    let remaining = body.length;
    while (remaining > 0) {
      const buffer = new Uint8Array(Math.min(chunkSize, remaining));
      const n = await file.read(buffer);
      if (n === null) throw new Error(`${body.file} became shorter while it was being sent`);
      remaining -= n;
      yield buffer.subarray(0, n);
    }
  } finally {
    file.close();
  }
}

function corruptionOffsets(length: number, count: number): number[] {
  const n = Math.min(count, length);
  return Array.from({ length: n }, (_, i) => Math.floor(((i + 0.5) * length) / n));
}

function corrupt(chunk: Uint8Array, chunkOffset: number, flips: number[]): Uint8Array {
  const copy = chunk.slice();
  for (const offset of flips) {
    const index = offset - chunkOffset;
    if (index >= 0 && index < copy.length) copy[index] ^= 0xff;
  }
  return copy;
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let rest = bytes;
  while (rest.length > 0) rest = rest.subarray(await conn.write(rest));
}

/** Resolves when the client closes its side or the mirror closes. */
async function waitUntilClientGivesUp(conn: Deno.TcpConn, signal: AbortSignal): Promise<void> {
  const buffer = new Uint8Array(1024);
  const eof = (async () => {
    try {
      while ((await conn.read(buffer)) !== null) {
        // discard whatever the client still sends
      }
    } catch {
      // reset or closed by close()
    }
  })();
  await Promise.race([eof, abortPromise(signal)]);
}

function abortPromise(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function closeQuietly(conn: Deno.TcpConn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
