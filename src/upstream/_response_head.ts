/**
 * Reading a mirror's HTTP/1.x response head (RFC 9112): the status, the headers, and how the body that follows is
 * delimited. Strict where a wrong guess would corrupt a file (two different lengths, a length that is not a
 * number), lenient where HTTP says a client may be (a bare LF as line end).
 *
 * @module
 */

import { parseContentLength } from "../http/content_length.ts";
import { latin1 } from "../http/head_bytes.ts";

/** The largest response head read (status line and headers); a larger one fails the request. */
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;

/** How a response's body is delimited (RFC 9112 section 6.3). */
export type BodyFraming =
  /** No body: a HEAD request's answer, 1xx, 204 and 304. */
  | { type: "none" }
  /** Exactly `length` bytes (`Content-Length`). */
  | { type: "length"; length: number }
  /** Chunks (`Transfer-Encoding: chunked`). */
  | { type: "chunked" }
  /** Until the mirror closes the connection (neither of the above). */
  | { type: "close" };

/** One parsed response head. */
export interface ResponseHead {
  status: number;
  statusText: string;
  /**
   * The header fields as sent (names as written, values trimmed), checked as `Headers` checks them: the
   * `Response` made of them builds its `Headers` once (a `Headers` made here too, and copied into the
   * response's, cost a cold miss about 0.1 ms).
   */
  headers: [string, string][];
  framing: BodyFraming;
  /** Whether the connection may carry another request once this body has been read whole. */
  keepAlive: boolean;
}

/** A mirror's answer that is not HTTP/1.x, or that leaves unclear where its body ends. */
export class ResponseHeadError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = "ResponseHeadError";
  }
}

const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/;

/** A field name (RFC 9110 section 5.1): what `Headers` accepts. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** What `Headers` refuses in a (trimmed) field value. */
const FORBIDDEN_IN_VALUE = /[\0\r\n]/;

/**
 * Parses a response head (its bytes up to and including the empty line) to a request made with `method`.
 *
 * @example
 * ```ts
 * const bytes = new TextEncoder().encode("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
 * const head = parseResponseHead(bytes, "GET");
 * // head.status === 200, head.framing = { type: "length", length: 5 }, head.keepAlive === true
 * ```
 * @throws {ResponseHeadError} when it is not an HTTP/1.x response head, or its framing is ambiguous.
 */
export function parseResponseHead(bytes: Uint8Array, method: string): ResponseHead {
  const lines = latin1(bytes).split("\n");
  const statusLine = lines[0].endsWith("\r") ? lines[0].slice(0, -1) : lines[0];
  const match = STATUS_LINE.exec(statusLine);
  if (match === null) {
    throw new ResponseHeadError(
      `sent an invalid response, not HTTP/1.x: ${JSON.stringify(statusLine.slice(0, 80))}`,
    );
  }
  const minor = Number(match[1]);
  const status = Number(match[2]);
  let headers: [string, string][] = [];
  // The fields that decide the framing, several lines joined as `Headers.get()` joins them.
  let connection: string | undefined;
  let transferEncoding: string | undefined;
  let contentLength: string | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i].endsWith("\r") ? lines[i].slice(0, -1) : lines[i];
    if (line === "") break;
    const colon = line.indexOf(":");
    // A folded line (starting with a space) or a name with a space before its colon: RFC 9112 section 5.
    if (
      colon <= 0 || line[0] === " " || line[0] === "\t" || line[colon - 1] === " " || line[colon - 1] === "\t"
    ) {
      throw new ResponseHeadError(`sent a malformed header line: ${JSON.stringify(line.slice(0, 80))}`);
    }
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    if (!TOKEN.test(name) || FORBIDDEN_IN_VALUE.test(value)) {
      throw new ResponseHeadError(`sent an invalid header line: ${JSON.stringify(line.slice(0, 80))}`);
    }
    headers.push([name, value]);
    switch (name.toLowerCase()) {
      case "connection":
        connection = connection === undefined ? value : `${connection}, ${value}`;
        break;
      case "content-length":
        contentLength = contentLength === undefined ? value : `${contentLength}, ${value}`;
        break;
      case "transfer-encoding":
        transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
        break;
    }
  }
  const connectionTokens = connection?.toLowerCase() ?? "";
  let keepAlive = minor === 1
    ? !/(?:^|,)\s*close\s*(?:,|$)/.test(connectionTokens)
    : /(?:^|,)\s*keep-alive\s*(?:,|$)/.test(connectionTokens);
  let framing: BodyFraming;
  const codings = transferCodings(transferEncoding);
  if (method === "HEAD" || status < 200 || status === 204 || status === 304) {
    framing = { type: "none" };
  } else if (codings.length > 0) {
    // flexo sends no TE, so chunked is the only coding a mirror may use (RFC 9112 section 7.4). Any other
    // (gzip, compress, deflate) would be stored as the file's bytes: the answer is refused, not guessed at.
    if (codings.length !== 1 || codings[0] !== "chunked") {
      throw new ResponseHeadError(
        `sent its body with Transfer-Encoding: ${transferEncoding}, which flexo did not ask for and does not ` +
          "decode (only chunked)",
      );
    }
    framing = { type: "chunked" };
    if (contentLength !== undefined) {
      // A Content-Length beside it is not the body's (RFC 9112 section 6.3): removed, as an intermediary must,
      // so that nobody passes it on or holds the body to it; and the connection is not reused.
      keepAlive = false;
      headers = headers.filter(([name]) => name.toLowerCase() !== "content-length");
    }
  } else if (contentLength !== undefined) {
    // Repeated fields come joined ("5, 5"): all must be the same number.
    const values = contentLength.split(",").map(parseContentLength);
    const length = values[0];
    if (length === undefined || values.some((value) => value !== length)) {
      throw new ResponseHeadError(`sent an invalid Content-Length: ${contentLength}`);
    }
    framing = { type: "length", length };
    if (values.length > 1) {
      // One field for them, where they were: "5, 5" (as `Headers` joins them) would be no length to the caller.
      const first = headers.findIndex(([name]) => name.toLowerCase() === "content-length");
      headers = headers.filter(([name], i) => i === first || name.toLowerCase() !== "content-length");
      headers[first] = [headers[first][0], String(length)];
    }
  } else {
    framing = { type: "close" };
    keepAlive = false;
  }
  return { status, statusText: match[3] ?? "", headers, framing, keepAlive };
}

/** The transfer codings a Transfer-Encoding field names, lower case, without "identity" (which codes nothing). */
function transferCodings(field: string | undefined): string[] {
  if (field === undefined) return [];
  return field.split(",").map((coding) => coding.trim().toLowerCase()).filter((coding) =>
    coding !== "" && coding !== "identity"
  );
}
