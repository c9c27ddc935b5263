/**
 * Reading HTTP/1.x request heads from the bytes a client sent (RFC 9112), strictly: flexo answers GET and HEAD
 * of files, so anything ambiguous about where a request ends (bare CR or LF, folded header lines, two different
 * lengths, a length beside a transfer coding) is refused with a 4xx instead of being guessed at.
 *
 * @module
 */

import { parseContentLength } from "../http/content_length.ts";
import { findHeadEnd, latin1 } from "../http/head_bytes.ts";

export { findHeadEnd, latin1 };

/** The largest request head accepted (request line and headers); a larger one is answered 431. */
export const MAX_HEAD_BYTES = 16 * 1024;

/** The longest request line accepted; a longer one is answered 414. */
export const MAX_REQUEST_LINE_BYTES = 8 * 1024;

/** The most header lines accepted in one request; more are answered 431. */
export const MAX_HEADER_LINES = 100;

/** One request head, as parsed by {@linkcode parseRequestHead}. */
export interface RequestHead {
  /** The method exactly as sent (case matters in HTTP). */
  readonly method: string;
  /** The request target exactly as sent: `/path?query`, or an absolute URL. */
  readonly target: string;
  /** The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minorVersion: 0 | 1;
  /** The `Host` header, if there was one. */
  readonly host: string | undefined;
  /** Whether the connection ends after the response: `Connection: close`, or HTTP/1.0 without keep-alive. */
  readonly close: boolean;
  /** Whether the request announces a body (a `Content-Length` above 0, or a `Transfer-Encoding`). */
  readonly hasBody: boolean;
  /** Whether the request has a `Range` header or a conditional one (`If-...`). */
  readonly conditional: boolean;
  /** Header lines in order; names in lower case, values without surrounding spaces. Made on first use. */
  readonly headers: [string, string][];
}

/** Why a head was refused: the status to answer with and a message for the client and the log. */
export interface HeadProblem {
  status: 400 | 405 | 414 | 431 | 501 | 505;
  message: string;
  /** Headers of the answer besides its framing (a 405's `Allow`). */
  headers?: [string, string][];
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
/** For the request target and Host, which are checked to be ASCII: the fastest decoder, same code units. */
const UTF8 = new TextDecoder();

/** 1 for the bytes of a token (method, header name): RFC 9110's tchar. */
const TOKEN = new Uint8Array(256);
for (const char of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  TOKEN[char.charCodeAt(0)] = 1;
}

/** Whether the bytes from `start` to `end` spell `name` (lower case), ignoring ASCII case. */
function nameIs(bytes: Uint8Array, start: number, end: number, name: string): boolean {
  if (end - start !== name.length) return false;
  for (let i = 0; i < name.length; i++) {
    if ((bytes[start + i] | 0x20) !== name.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * A parsed head. Its header list is made when first asked for, from the bytes that were parsed, which the caller
 * keeps unchanged until {@linkcode releaseHead}: most requests (cache hits answered at once) never need it.
 */
class ParsedHead implements RequestHead {
  #bytes: Uint8Array | undefined;
  #linesStart: number;
  #linesEnd: number;
  #headers: [string, string][] | undefined;

  constructor(
    readonly method: string,
    readonly target: string,
    readonly minorVersion: 0 | 1,
    readonly host: string | undefined,
    readonly close: boolean,
    readonly hasBody: boolean,
    readonly conditional: boolean,
    bytes: Uint8Array,
    linesStart: number,
    linesEnd: number,
  ) {
    this.#bytes = bytes;
    this.#linesStart = linesStart;
    this.#linesEnd = linesEnd;
  }

  get headers(): [string, string][] {
    if (this.#headers !== undefined) return this.#headers;
    const lines = this.#bytes;
    if (lines === undefined) {
      throw new Error(
        "The header lines of a released request head were asked for: read them before releaseHead()",
      );
    }
    const headers: [string, string][] = [];
    // The lines were checked by parseRequestHead: NAME ":" OWS VALUE OWS CRLF each.
    const end = this.#linesEnd;
    let i = this.#linesStart;
    while (i < end) {
      const nameStart = i;
      while (i < end && lines[i] !== COLON) i++;
      const name = latin1(lines, nameStart, i).toLowerCase();
      i++;
      while (i < end && (lines[i] === SP || lines[i] === HTAB)) i++;
      const valueStart = i;
      while (i < end && lines[i] !== CR) i++;
      let valueEnd = i;
      while (valueEnd > valueStart && (lines[valueEnd - 1] === SP || lines[valueEnd - 1] === HTAB)) {
        valueEnd--;
      }
      headers.push([name, latin1(lines, valueStart, valueEnd)]);
      i += 2;
    }
    this.#headers = headers;
    return headers;
  }

  /** Lets go of the parsed bytes; the header list stays if it was made. */
  release(): void {
    this.#bytes = undefined;
  }
}

/**
 * Says that the bytes `head` was parsed from may change now (the connection reads the next request into them).
 * Its header list must have been asked for before, if it is needed: afterwards asking for it throws.
 */
export function releaseHead(head: RequestHead): void {
  if (head instanceof ParsedHead) head.release();
}

/**
 * Parses the head in the first `end` bytes of `bytes` (request line, header lines and the empty line that ends
 * them, as found by {@linkcode findHeadEnd}) in one pass over its bytes. Returns a {@linkcode HeadProblem} for anything this
 * server does not accept. The head reads its header lines from `bytes` when they are first asked for: keep the
 * bytes unchanged until {@linkcode releaseHead}. With the `previous` head of the same connection, a target or
 * Host the same as its own is not decoded again (a client sends the same Host on every request).
 */
export function parseRequestHead(
  bytes: Uint8Array,
  end: number = bytes.length,
  options: { previous?: RequestHead } = {},
): RequestHead | HeadProblem {
  const previous = options.previous;
  const length = end;
  if (length > MAX_HEAD_BYTES) {
    return { status: 431, message: `The request head is larger than ${MAX_HEAD_BYTES} bytes` };
  }
  const malformedLine = {
    status: 400,
    message: "Malformed request line: send METHOD TARGET HTTP/1.1",
  } as const;
  let i = targetEnd(bytes, length);
  if (i < 0) return malformedLine;
  if (i + 9 > MAX_REQUEST_LINE_BYTES) return LINE_TOO_LONG;
  const targetStart = bytes.indexOf(SP) + 1;
  if (i === targetStart || bytes[i] !== SP) return malformedLine;
  const method = methodOf(bytes, targetStart - 1);
  const target = previous !== undefined && spells(bytes, targetStart, i, previous.target)
    ? previous.target
    : UTF8.decode(bytes.subarray(targetStart, i));
  i++;
  // HTTP/d.d CRLF
  if (
    i + 10 > length || bytes[i] !== 0x48 || bytes[i + 1] !== 0x54 || bytes[i + 2] !== 0x54 ||
    bytes[i + 3] !== 0x50 || bytes[i + 4] !== 0x2f || !isDigit(bytes[i + 5]) || bytes[i + 6] !== 0x2e ||
    !isDigit(bytes[i + 7]) || bytes[i + 8] !== CR || bytes[i + 9] !== LF
  ) {
    return malformedLine;
  }
  const major = bytes[i + 5] - 0x30;
  const minor = bytes[i + 7] - 0x30;
  if (major !== 1 || minor > 1) {
    return { status: 505, message: `HTTP/${major}.${minor} is not supported; use HTTP/1.1` };
  }
  const minorVersion = minor === 1 ? 1 : 0;
  i += 10;
  const linesStart = i;
  let lineCount = 0;
  let host: string | undefined;
  let hosts = 0;
  let contentLength: number | undefined;
  let transferEncoding = false;
  /** The last transfer coding named in the Transfer-Encoding lines so far (lower case). */
  let lastCoding = "";
  let closeAsked = false;
  let keepAliveAsked = false;
  let conditional = false;
  // The head ends with an empty line: CR LF.
  while (i < length - 2) {
    if (++lineCount > MAX_HEADER_LINES) {
      return { status: 431, message: `More than ${MAX_HEADER_LINES} header lines` };
    }
    const nameStart = i;
    if (bytes[i] === SP || bytes[i] === HTAB) {
      return { status: 400, message: "Folded header lines are not accepted" };
    }
    while (i < length && TOKEN[bytes[i]] === 1) i++;
    if (i === nameStart || bytes[i] !== COLON) {
      return { status: 400, message: "Malformed header line: send NAME: VALUE" };
    }
    const nameEnd = i++;
    while (i < length && (bytes[i] === SP || bytes[i] === HTAB)) i++;
    const valueStart = i;
    while (i < length && bytes[i] !== CR) {
      const byte = bytes[i];
      // Control characters other than tab (a bare LF among them) end nothing and belong in no value.
      if ((byte < SP && byte !== HTAB) || byte === 0x7f) {
        return { status: 400, message: "A header line holds a control character or a bare line feed" };
      }
      i++;
    }
    if (bytes[i + 1] !== LF) return { status: 400, message: "A header line ends without CRLF" };
    let valueEnd = i;
    while (valueEnd > valueStart && (bytes[valueEnd - 1] === SP || bytes[valueEnd - 1] === HTAB)) valueEnd--;
    i += 2;
    const first = bytes[nameStart] | 0x20;
    if (first === 0x68 /* h */ && nameIs(bytes, nameStart, nameEnd, "host")) {
      // Anything but a plain host name or address is refused later; those are ASCII.
      host = previous?.host !== undefined && spells(bytes, valueStart, valueEnd, previous.host)
        ? previous.host
        : UTF8.decode(bytes.subarray(valueStart, valueEnd));
      hosts++;
    } else if (first === 0x63 /* c */ && nameIs(bytes, nameStart, nameEnd, "content-length")) {
      // Several identical values (or one list of them) mean one length; different ones are refused.
      for (const item of latin1(bytes, valueStart, valueEnd).split(",")) {
        const value = parseContentLength(item);
        if (value === undefined) return { status: 400, message: "Content-Length is not a number" };
        if (contentLength !== undefined && contentLength !== value) {
          return { status: 400, message: "Two different Content-Length headers" };
        }
        contentLength = value;
      }
    } else if (first === 0x63 /* c */ && nameIs(bytes, nameStart, nameEnd, "connection")) {
      for (const token of latin1(bytes, valueStart, valueEnd).toLowerCase().split(",")) {
        const option = token.trim();
        if (option === "close") closeAsked = true;
        else if (option === "keep-alive") keepAliveAsked = true;
      }
    } else if (first === 0x74 /* t */ && nameIs(bytes, nameStart, nameEnd, "transfer-encoding")) {
      transferEncoding = true;
      for (const token of latin1(bytes, valueStart, valueEnd).split(",")) {
        const coding = token.trim().toLowerCase();
        if (coding !== "") lastCoding = coding;
      }
    } else if (
      (first === 0x72 /* r */ && nameIs(bytes, nameStart, nameEnd, "range")) ||
      (first === 0x69 /* i */ && nameEnd - nameStart > 3 && (bytes[nameStart + 1] | 0x20) === 0x66 &&
        bytes[nameStart + 2] === 0x2d)
    ) {
      conditional = true;
    }
  }
  if (i !== length - 2 || bytes[i] !== CR || bytes[i + 1] !== LF) {
    return { status: 400, message: "The request head does not end with an empty line (CRLF)" };
  }
  if (hosts > 1) return { status: 400, message: "More than one Host header" };
  if (minorVersion === 1 && hosts === 0) {
    return { status: 400, message: "HTTP/1.1 requests need a Host header" };
  }
  if (transferEncoding && lastCoding !== "chunked") {
    // The body's length cannot be known (RFC 9112 section 6.3).
    return {
      status: 400,
      message: "Transfer-Encoding must end with chunked; send the body chunked or with a Content-Length",
    };
  }
  if (transferEncoding && contentLength !== undefined) {
    return { status: 400, message: "Content-Length and Transfer-Encoding together" };
  }
  return new ParsedHead(
    method,
    target,
    minorVersion,
    host,
    closeAsked || (minorVersion === 0 && !keepAliveAsked),
    transferEncoding || (contentLength !== undefined && contentLength > 0),
    conditional,
    bytes,
    linesStart,
    length - 2,
  );
}

const LINE_TOO_LONG: HeadProblem = {
  status: 414,
  message: `The request line is longer than ${MAX_REQUEST_LINE_BYTES} bytes; use a shorter path`,
};

/**
 * Where the target of the request line at the start of the first `length` bytes of `bytes` ends (at `length`
 * when the line is not all there), or -1 when it does not start with a method and a space. The request line is
 * the target and " HTTP/1.x" after it.
 */
function targetEnd(bytes: Uint8Array, length: number): number {
  let i = 0;
  while (i < length && TOKEN[bytes[i]] === 1) i++;
  if (i === 0 || bytes[i] !== SP) return -1;
  i++;
  while (i < length && bytes[i] > SP && bytes[i] < 0x7f) i++;
  return i;
}

/**
 * The refusal of a head that has not ended within {@linkcode MAX_HEAD_BYTES}, the first `length` bytes of
 * `bytes`: 414 when its request line is too long already (as {@linkcode parseRequestHead} answers a long line
 * that ends in time), else 431.
 */
export function unfinishedHeadProblem(bytes: Uint8Array, length: number): HeadProblem {
  if (targetEnd(bytes, length) + 9 > MAX_REQUEST_LINE_BYTES) return LINE_TOO_LONG;
  return { status: 431, message: `The request head is larger than ${MAX_HEAD_BYTES} bytes` };
}

/** Whether the bytes from `start` to `end` are the code units of `text`. */
function spells(bytes: Uint8Array, start: number, end: number, text: string): boolean {
  if (end - start !== text.length) return false;
  for (let i = 0; i < text.length; i++) {
    if (bytes[start + i] !== text.charCodeAt(i)) return false;
  }
  return true;
}

/** The method of a request line whose method ends at `end`: the usual ones without making a new string. */
function methodOf(bytes: Uint8Array, end: number): string {
  if (end === 3 && bytes[0] === 0x47 && bytes[1] === 0x45 && bytes[2] === 0x54) return "GET";
  if (end === 4 && bytes[0] === 0x48 && bytes[1] === 0x45 && bytes[2] === 0x41 && bytes[3] === 0x44) {
    return "HEAD";
  }
  return latin1(bytes, 0, end);
}

function isDigit(byte: number): boolean {
  return byte >= 0x30 && byte <= 0x39;
}

/** Whether `parsed` is a problem rather than what was asked for (a head, or a `Request`). */
export function isHeadProblem<T extends object>(parsed: T | HeadProblem): parsed is HeadProblem {
  return !(parsed instanceof Request) && !(parsed instanceof ParsedHead) && "status" in parsed;
}

/** The value of header `name` (lower case) in `head`, or undefined; several lines are joined with ", ". */
export function headerOf(head: RequestHead, name: string): string | undefined {
  let found: string | undefined;
  for (const [key, value] of head.headers) {
    if (key === name) found = found === undefined ? value : `${found}, ${value}`;
  }
  return found;
}
