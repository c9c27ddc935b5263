/**
 * The one answer to a request that failed: an {@linkcode HttpError} becomes its status and message (counted, and
 * logged at info, or as a warning for a 5xx), anything else a 500 (counted and logged as an error). Both paths of
 * a request use it: hono's error handler (app.ts) and the quick path for misses (quick_misses.ts).
 *
 * No cache in front may keep an error answer: flexo's errors pass (a package not on the mirrors yet, a mirror
 * outage), and a 404 or 405 is cacheable by default (RFC 9111 section 4.2.2), as Varnish, or nginx with
 * `proxy_cache_valid any`, would do; hence {@linkcode NOT_STORED} on every one.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { HttpError, NOT_STORED } from "../http/http_error.ts";
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
      headers.set("Cache-Control", NOT_STORED);
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
    return new Response("Internal error; see the proxy's log\n", {
      status: 500,
      headers: { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": NOT_STORED },
    });
  };
}
