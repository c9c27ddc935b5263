/**
 * The one error type that carries an HTTP status to the error handler.
 *
 * @module
 */

import { redactUrls } from "../redact_url.ts";

/**
 * The `Cache-Control` of every error answer, the app's (see src/app/error_answer.ts) and the connection layer's
 * refusals: no cache in front may keep one.
 */
export const NOT_STORED = "no-store";

/** An error that the HTTP layer turns into a response with this status and message. */
export class HttpError extends Error {
  /** The HTTP status code to answer with. */
  readonly status: number;
  /** Extra response headers, such as `Allow` for 405 or `Content-Range` for 416. */
  readonly headers: Headers;

  /**
   * @param status HTTP status code (4xx or 5xx).
   * @param message What went wrong and, where useful, what the client can do about it.
   * @param options `headers` to add to the error response; `cause` for logging.
   */
  constructor(status: number, message: string, options: { headers?: HeadersInit; cause?: unknown } = {}) {
    // Shown to the client and logged: a mirror's URL in it must not carry its password (see redact_url.ts).
    super(redactUrls(message), { cause: options.cause });
    this.name = "HttpError";
    this.status = status;
    this.headers = new Headers(options.headers);
  }
}

/** The methods flexo answers, as a 405's `Allow` header names them. */
export const ALLOWED_METHODS = "GET, HEAD";

/**
 * The methods HTTP defines (RFC 9110 section 9.3, and PATCH of RFC 5789): a server knows them, and refuses one
 * it does not allow with 405; any other is unknown to it (501). Methods are case-sensitive: `get` is not `GET`.
 */
const KNOWN_METHODS = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "DELETE",
  "CONNECT",
  "OPTIONS",
  "TRACE",
  "PATCH",
]);

/**
 * The error for a request with a method flexo does not answer: 405 Method Not Allowed with `Allow` (`allow`, by
 * default GET and HEAD) for a method HTTP defines (RFC 9110 section 15.5.6), 501 Not Implemented for one it does
 * not know (section 15.6.2). The one rule for the app's routes and the connection layer's refusal of the methods
 * a `Request` cannot carry (CONNECT, TRACE, TRACK). `advice` replaces the message's "use GET or HEAD".
 */
export function methodError(method: string, options: { allow?: string; advice?: string } = {}): HttpError {
  const allow = options.allow ?? ALLOWED_METHODS;
  const advice = options.advice ?? `use ${allow.replaceAll(", ", " or ")}`;
  return KNOWN_METHODS.has(method)
    ? new HttpError(405, `The method ${method} is not allowed here; ${advice}`, { headers: { Allow: allow } })
    : new HttpError(501, `The method ${method} is not supported; ${advice}`);
}
