/**
 * Turning a parsed request head into the web-standard `Request` the app answers, keeping the target exactly as
 * the client sent it: `new Request()` normalises its URL (`/a/../b` becomes `/b`), and flexo checks paths as
 * sent, so the raw target travels beside the request ({@linkcode rawTargetOf}).
 *
 * @module
 */

import type { HeadProblem, RequestHead } from "./http1_head.ts";

const rawTargets = new WeakMap<Request, string>();

/**
 * A `Host` header as clients send it: a name or an IPv4 address, or an IPv6 address in brackets, and an
 * optional port. Anything else (empty, or with `/ ? # @ \` in it) would change the URL's host or path.
 */
const HOST_SHAPE = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** Whether `host` is a `Host` header value of the shape clients send (see {@linkcode requestFromHead}). */
export function isPlainHost(host: string): boolean {
  return HOST_SHAPE.test(host);
}

/**
 * The `Request` for `head`, received on a connection to `localHost` (`host:port`, used when an HTTP/1.0 request
 * names no host). A target that is neither a path nor an absolute `http(s)` URL, a `Host` other than a host name
 * or address with an optional port, a header that `Headers` refuses, and a method that `Request` refuses
 * (CONNECT, TRACE, TRACK) are problems to answer, and so is a method that it would spell otherwise (`get`: HTTP
 * methods are case-sensitive, and `Request` upper-cases a few).
 */
export function requestFromHead(head: RequestHead, options: { localHost: string }): Request | HeadProblem {
  let url: string;
  const target = head.target;
  if (head.host !== undefined && !isPlainHost(head.host)) {
    return { status: 400, message: "The Host header is not a host name or address with an optional port" };
  }
  if (target.charCodeAt(0) === 0x2f /* / */) {
    url = `http://${head.host ?? options.localHost}${target}`;
  } else if (/^https?:\/\//i.test(target)) {
    url = target;
  } else {
    return { status: 400, message: "The request target must be a path (/...) or an http URL" };
  }
  let request: Request;
  try {
    request = new Request(url, { method: head.method, headers: head.headers });
  } catch (error) {
    return { status: 400, message: `Request not accepted: ${(error as Error).message}` };
  }
  if (request.method !== head.method) {
    // Request upper-cases some methods (get, Head, ...); HTTP methods are case-sensitive, so those are unknown.
    return { status: 501, message: `The method ${head.method} is not supported; use GET or HEAD` };
  }
  rawTargets.set(request, target);
  return request;
}

/**
 * The target of `req` as the client sent it (`/path?query`, or an absolute URL), when the request came from
 * {@linkcode requestFromHead}; undefined for other requests (made in tests, or by Deno.serve, whose URLs are
 * not normalised).
 */
export function rawTargetOf(req: Request): string | undefined {
  return rawTargets.get(req);
}

/** The characters that end the authority of an absolute URL. */
const AUTHORITY_END = /[/?#]/;

/**
 * The path of a request target exactly as sent, without normalisation and without its query or fragment: of
 * an origin-form target (`/path?query`), or of an absolute URL (`http://host/path?query`, whose authority ends
 * at the first `/`, `?` or `#`; `/` when it has no path). Anything else has the path `/`.
 */
export function targetPath(target: string): string {
  let start: number;
  if (target.charCodeAt(0) === 0x2f /* / */) {
    start = 0;
  } else {
    const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(target);
    if (scheme === null) return "/";
    const authorityEnd = target.slice(scheme[0].length).search(AUTHORITY_END);
    if (authorityEnd < 0) return "/";
    start = scheme[0].length + authorityEnd;
    if (target.charCodeAt(start) !== 0x2f) return "/";
  }
  let end = target.length;
  for (let i = start; i < end; i++) {
    const char = target.charCodeAt(i);
    if (char === 0x3f /* ? */ || char === 0x23 /* # */) end = i;
  }
  return start === 0 && end === target.length ? target : target.slice(start, end);
}
