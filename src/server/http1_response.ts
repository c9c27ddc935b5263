/**
 * Writing HTTP/1.1 response heads: the status line, the app's headers, and the framing (length, chunked, or
 * the end of the connection) that the connection layer chose.
 *
 * @module
 */

import { VERSION } from "../version.ts";

/** Reason phrases of the statuses flexo sends; others get the response's own `statusText`, or none. */
const REASONS: Record<number, string> = {
  200: "OK",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  304: "Not Modified",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  414: "URI Too Long",
  416: "Range Not Satisfiable",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** Headers about the connection or the body's framing: the connection layer sets these itself. */
const OWN_HEADERS = new Set(["connection", "keep-alive", "transfer-encoding", "content-length"]);

/**
 * The `Server` header of every answer (RFC 9110 section 10.2.4), as the Rust flexo sends `Server: flexo`; with
 * the version, which the status page shows anyone who can ask anyway.
 */
const SERVER = `server: flexo/${VERSION}\r\n`;

const ENCODER = new TextEncoder();
/** Anything a head needs more than ASCII for (header values may hold bytes 0x80-0xFF). */
const NON_ASCII = /[^\t\r\n -~]/;

/** How a response body is delimited on the connection. */
export interface Framing {
  /** `Content-Length`; leave out for chunked or connection-delimited bodies and bodiless statuses. */
  length?: number;
  /** `Transfer-Encoding: chunked`. */
  chunked?: boolean;
  /** The connection ends after this response (`Connection: close`). */
  close: boolean;
  /** Say `Connection: keep-alive` (to an HTTP/1.0 client that asked for it). */
  keepAlive?: boolean;
  /** The `Date` header's value (see {@linkcode HttpDates}); the current time when left out. */
  date?: string;
}

/** The `Date` header's value for `now` (milliseconds): RFC 9110's IMF-fixdate of its whole second. */
export function httpDate(now: number = Date.now()): string {
  return new Date(Math.floor(now / 1000) * 1000).toUTCString();
}

/**
 * The `Date` header's value, computed once per second: a listener keeps one for all its connections (a small
 * cache hit would otherwise spend a noticeable part of its time formatting the date).
 */
export class HttpDates {
  #now: () => number;
  #second = -1;
  #text = "";

  /** Dates from the clock `now` (milliseconds). */
  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** The value for the current second. */
  text(): string {
    const second = Math.floor(this.#now() / 1000);
    if (second !== this.#second) {
      this.#second = second;
      this.#text = httpDate(second * 1000);
    }
    return this.#text;
  }
}

/** The reason phrase for `status`. */
export function reasonPhrase(status: number, statusText = ""): string {
  return REASONS[status] ?? statusText;
}

/**
 * The bytes of a response head: `HTTP/1.1 status reason`, the given headers but those about the connection or
 * the framing, the framing's own, a `Date` unless one is given, and flexo's `Server`. Header names and values are written as
 * their code units (Headers allows no characters above U+00FF and no line breaks).
 */
export function responseHead(
  status: { code: number; text?: string },
  headers: Iterable<[string, string]>,
  framing: Framing,
): Uint8Array {
  let head = `HTTP/1.1 ${status.code} ${reasonPhrase(status.code, status.text)}\r\n`;
  let hasDate = false;
  for (const [name, value] of headers) {
    if (OWN_HEADERS.has(name.toLowerCase())) continue;
    if (!hasDate && name.toLowerCase() === "date") hasDate = true;
    head += `${name}: ${value}\r\n`;
  }
  if (framing.length !== undefined) head += `content-length: ${framing.length}\r\n`;
  if (framing.chunked) head += "transfer-encoding: chunked\r\n";
  if (framing.close) head += "connection: close\r\n";
  else if (framing.keepAlive) head += "connection: keep-alive\r\n";
  if (!hasDate) head += `date: ${framing.date ?? httpDate()}\r\n`;
  head += SERVER;
  head += "\r\n";
  return encodeLatin1(head);
}

/** A string's code units as bytes: ASCII through TextEncoder, anything up to U+00FF one byte each. */
export function encodeLatin1(text: string): Uint8Array {
  if (!NON_ASCII.test(text)) return ENCODER.encode(text);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff;
  return bytes;
}

/** Whether a response with `status` carries no body whatever its headers say (1xx, 204, 304). */
export function isBodiless(status: number): boolean {
  return status < 200 || status === 204 || status === 304;
}
