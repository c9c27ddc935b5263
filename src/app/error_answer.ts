/**
 * The one answer to a request that failed: an {@linkcode HttpError} becomes its status and message (counted, and
 * logged at info, or as a warning for a 5xx), anything else a 500 (counted and logged as an error). Both paths of
 * a request use it: hono's error handler (app.ts) and the quick path for misses (quick_misses.ts).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { HttpError } from "../http/http_error.ts";
import { describeError } from "../logging.ts";
import type { CountedResult, Stats } from "../status/stats.ts";

const requestLog = getLogger(["flexo", "request"]);
const errorLog = getLogger(["flexo", "error"]);

/**
 * Answers a failed request: `error` is what it failed on, `method` and `path` (as sent) what it asked for, and
 * `forwardedFor` the client a trusted proxy (`trusted_proxies`) named, when there is one.
 */
export type ErrorAnswer = (
  error: unknown,
  request: { method: string; path: string; forwardedFor?: string },
) => Response;

/** The error answer that counts in `stats` (errors dated by `now`, milliseconds). */
export function errorAnswer(stats: Stats, now: () => number): ErrorAnswer {
  return (error, { method, path, forwardedFor }) => {
    // Behind a balancer, the client it named, as in the request log's other lines (request_log.ts).
    const logged = forwardedFor === undefined ? path : `${path} (for ${forwardedFor})`;
    if (error instanceof HttpError) {
      const result: CountedResult = error.status === 404
        ? "NOT FOUND"
        : error.status < 500
        ? "CLIENT ERROR"
        : "UPSTREAM ERROR";
      stats.recordRequest(result);
      if (error.status >= 500) stats.recordError(now(), `${path}: ${error.message}`);
      const level = error.status >= 500 ? "warn" : "info";
      requestLog[level]("{method} {path} {status} {message}", {
        method,
        path: logged,
        status: error.status,
        message: error.message,
      });
      const headers = new Headers(error.headers);
      headers.set("Content-Type", "text/plain; charset=utf-8");
      // Also for HEAD: the body gives the length, and the server sends no body for HEAD.
      return new Response(`${error.message}\n`, { status: error.status, headers });
    }
    stats.recordRequest("INTERNAL ERROR");
    stats.recordError(now(), `${path}: ${describeError(error)}`);
    errorLog.error("{method} {path} failed: {error}", {
      method,
      path: logged,
      error: describeError(error, { stack: true }),
    });
    return new Response("Internal error; see the proxy's log\n", { status: 500 });
  };
}
