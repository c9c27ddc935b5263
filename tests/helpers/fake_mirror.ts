/**
 * A local HTTP/1.1 mirror for tests that serves files below a directory and misbehaves on demand.
 *
 * It is a small server on a raw TCP listener (127.0.0.1, port 0) rather than `Deno.serve`, so that it can
 * stall after the headers, cut a body short after `Content-Length` was sent, or delimit a body by closing
 * the connection: faults a real mirror shows and a proxy must survive.
 *
 * This module runs the server and picks the fault rule for each request; reading requests is
 * `fake_mirror_requests.ts`, choosing the answer `fake_mirror_answers.ts`, and sending it with the body faults
 * `fake_mirror_send.ts`.
 *
 * @module
 */

import { respond } from "./fake_mirror_answers.ts";
import { decodePath, RequestReader, wantsKeepAlive } from "./fake_mirror_requests.ts";
import { send, sleep } from "./fake_mirror_send.ts";
import { closeQuietly } from "../../src/close_quietly.ts";

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
  /** Read the request and never answer (a silent mirror that accepted the connection), until the client leaves. */
  silent?: boolean;
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
  /**
   * Answer 304 only when `If-Modified-Since` is exactly the file's time (nginx's default,
   * `if_modified_since exact`): an older file than the client's is then sent with 200, as a lagging mirror does.
   */
  modifiedSinceExact?: boolean;
  /** Extra response headers, e.g. `{ server: "cloudflare" }`; they replace headers of the same name. */
  headers?: Record<string, string>;
  /**
   * Wait this long before reading a new connection's first request: a distant mirror, where each new connection
   * costs round trips (TCP, TLS) before its first answer. Read from the rule given to startFakeMirror() (or
   * set as the only rule later), once per connection.
   */
  newConnectionDelayMs?: number;
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
  /** Called with each request as it arrives, before it is answered; set it at any time. */
  onRequest?: (request: RecordedRequest) => void;
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
    // As real mirrors (nginx's default tcp_nodelay): no ~40 ms wait for the client's delayed ACK per response.
    conn.setNoDelay(true);
    const reader = new RequestReader(conn);
    try {
      const connectionRule = Array.isArray(mirror.faults) ? undefined : mirror.faults;
      if (connectionRule?.newConnectionDelayMs) {
        await sleep(connectionRule.newConnectionDelayMs, closing.signal);
      }
      while (!closing.signal.aborted) {
        const request = await reader.next();
        if (!request) return;
        const path = decodePath(request.target);
        const recorded: RecordedRequest = {
          method: request.method,
          path: path ?? request.target,
          rawPath: request.target,
          range: request.headers["range"],
          headers: request.headers,
        };
        mirror.requests.push(recorded);
        mirror.onRequest?.(recorded);
        const rule = ruleFor(path ?? request.target);
        const keepAlive = wantsKeepAlive(request) && !rule.omitContentLength;
        if (rule.silent) {
          // Holds the connection until the client closes it (the read ends) or the mirror closes.
          await Promise.race([reader.next().catch(() => null), sleep(2 ** 31 - 1, closing.signal)]);
          return;
        }
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
