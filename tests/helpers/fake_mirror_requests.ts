/**
 * The fake mirror's side of HTTP/1.1 requests: reading request heads from a raw TCP connection (pipelined
 * requests included), keep-alive and path decoding.
 *
 * @module
 */

/** A request head as the client sent it. */
export interface ParsedRequest {
  /** HTTP method. */
  method: string;
  /** The request target exactly as sent. */
  target: string;
  /** E.g. `HTTP/1.1`. */
  version: string;
  /** Header names in lower case; repeated headers are joined with ", ". */
  headers: Record<string, string>;
}

const MAX_HEADER_BYTES = 64 * 1024;
const READ_CHUNK = 64 * 1024;

/** Reads HTTP/1.1 requests from a connection, keeping bytes of pipelined requests. */
export class RequestReader {
  #buffer = new Uint8Array(0);
  #conn: Deno.TcpConn;

  /** Reads requests from `conn`. */
  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  /**
   * The next request's head; its `Content-Length` body is read and dropped. Null when the client closed the
   * connection between requests.
   *
   * @throws {Error} for a malformed or oversized head, a chunked body, or a connection closed inside a request.
   */
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

/** True when the client wants to send another request on the same connection. */
export function wantsKeepAlive(request: ParsedRequest): boolean {
  const connection = (request.headers["connection"] ?? "").toLowerCase();
  if (request.version === "HTTP/1.0") return connection.includes("keep-alive");
  return !connection.includes("close");
}

/** The percent-decoded path without query, or undefined when it cannot be decoded. */
export function decodePath(target: string): string | undefined {
  const pathOnly = target.split("?")[0];
  try {
    return decodeURIComponent(pathOnly);
  } catch {
    return undefined;
  }
}
