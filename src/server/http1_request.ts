/**
 * Turning a parsed request head into the web-standard `Request` the app answers, keeping the target exactly as
 * the client sent it: `new Request()` normalises its URL (`/a/../b` becomes `/b`), and flexo checks paths as
 * sent, so the request keeps its raw target (a `ClientRequest`, see src/http/client_request.ts).
 *
 * @module
 */

import { ClientRequest } from "../http/client_request.ts";
import { methodError } from "../http/http_error.ts";
import type { HeadProblem, RequestHead } from "./http1_head.ts";

/** The methods a `Request` refuses to carry (the fetch standard's forbidden methods, in any case). */
const FORBIDDEN_METHODS = /^(?:CONNECT|TRACE|TRACK)$/i;

/**
 * The `Request` for `head`, received on a connection to `localHost` (`host:port`, used when an HTTP/1.0 request
 * names no host). A target that is neither a path nor an absolute `http(s)` URL, a `Host` other than a host name
 * or address with an optional port and a header that `Headers` refuses are problems to answer (400). So are a
 * method that `Request` refuses (CONNECT, TRACE, TRACK) and one that it would spell otherwise (`get`: HTTP
 * methods are case-sensitive, and `Request` upper-cases a few), which the app never sees: they get the app's
 * answer to a method it does not serve ({@linkcode methodError}: 405 with `Allow` for CONNECT and TRACE, 501
 * for the others).
 */
export function requestFromHead(head: RequestHead, options: { localHost: string }): Request | HeadProblem {
  // Before the target: CONNECT's is a host and port (authority-form), and the method is what is refused.
  if (FORBIDDEN_METHODS.test(head.method)) return methodProblem(head.method);
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
    return methodProblem(head.method);
  }
  return request;
}

/** The refusal of a request with `method`, as the app would answer it (see {@linkcode methodError}). */
function methodProblem(method: string): HeadProblem {
  const error = methodError(method);
  return { status: error.status as 405 | 501, message: error.message, headers: [...error.headers] };
}
