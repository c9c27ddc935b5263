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
