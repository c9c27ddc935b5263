/**
 * Turning a parsed request head into the web-standard `Request` the app answers, keeping the target exactly as
 * the client sent it: `new Request()` normalises its URL (`/a/../b` becomes `/b`), and flexo checks paths as
 * sent, so the request keeps its raw target (a `ClientRequest`, see src/http/client_request.ts).
 *
 * @module
 */

import { ClientRequest } from "../http/client_request.ts";
import type { HeadProblem, RequestHead } from "./http1_head.ts";

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
  if (target.charCodeAt(0) === 0x2f /* / */) {
    url = `http://${head.host ?? options.localHost}${target}`;
  } else if (/^https?:\/\//i.test(target)) {
    url = target;
  } else {
    return { status: 400, message: "The request target must be a path (/...) or an http URL" };
  }
  let request: Request;
  try {
    request = new ClientRequest(url, { method: head.method, headers: head.headers }, target);
  } catch (error) {
    return { status: 400, message: `Request not accepted: ${(error as Error).message}` };
  }
  if (request.method !== head.method) {
    // Request upper-cases some methods (get, Head, ...); HTTP methods are case-sensitive, so those are unknown.
    return { status: 501, message: `The method ${head.method} is not supported; use GET or HEAD` };
  }
  return request;
}
