/**
 * The contract between the server and the app for requests: a `Request` that keeps its target exactly as the
 * client sent it, and what the server tells the handler about the connection and the end of the response.
 *
 * `new Request()` normalises its URL (`/a/../b` becomes `/b`, `%2e%2e` becomes `..`), while flexo checks and
 * routes paths as sent; so the server makes {@linkcode ClientRequest}s, and {@linkcode rawTargetOf} reads their
 * target. Requests made elsewhere (tests) have only their URL.
 *
 * @module
 */

/**
 * A `Host` header as clients send it: a name or an IPv4 address, or an IPv6 address in brackets, and an
 * optional port. Anything else (empty, or with `/ ? # @ \` in it) would change the URL's host or path.
 */
const HOST_SHAPE = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** Whether `host` is a `Host` header value of the shape clients send (see {@linkcode requestFromHead}). */
export function isPlainHost(host: string): boolean {
  return HOST_SHAPE.test(host);
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

/** A request as the server received it, with its target as sent. */
export class ClientRequest extends Request {
  /** The request target exactly as sent: `/path?query`, or an absolute URL. */
  readonly target: string;

  /** A request for `url` whose target was sent as `target`. */
  constructor(url: string, init: RequestInit, target: string) {
    super(url, init);
    this.target = target;
  }
}

/** The target of `req` as the client sent it, when the server made it; undefined for other requests. */
export function rawTargetOf(req: Request): string | undefined {
  return req instanceof ClientRequest ? req.target : undefined;
}

/** How a response went out: the body bytes the client was given, and whether that was all of the body. */
export interface ResponseSent {
  /** Body bytes handed to the kernel for the client (the head not counted). */
  bytes: number;
  /** False when the transfer broke off (the client left, or the body failed). */
  whole: boolean;
}

/** What the server tells a handler besides the request. */
export interface ServeInfo {
  /** The client's address. */
  remoteAddr: Deno.NetAddr;
  /**
   * The address the client connected to (given by the server; absent in tests that make their own): equal to
   * `remoteAddr`'s host for a client on the same host that connected to one of the host's own addresses.
   */
  localAddr?: Deno.NetAddr;
  /** Resolves when the response has ended, sent whole or not. */
  completed: Promise<ResponseSent>;
}

/** A request handler of the server. */
export type RequestHandler = (req: Request, info: ServeInfo) => Response | Promise<Response>;

/** Why a request's authority (its `Host`, or the authority of an absolute-form target) is refused. */
export interface AuthorityProblem {
  status: 400;
  message: string;
}

/**
 * Checks the authority of a request once, the same way for every answer (the quick path and the full path): a
 * `Host` must be a host name or address with a valid port (`x:99999` and `999.999.999.999` are not), and an
 * absolute-form target (`GET http://host/...`, which clients send to forward proxies) must name this listener
 * itself (`local`, or `localhost` on its port): flexo is not a forward proxy, so any other host is refused, even
 * when the `Host` header agrees with it. `valid` remembers the last `Host` found valid on a connection, so that a
 * connection's repeated `Host` costs one comparison.
 */
export function checkAuthority(
  request: { target: string; host?: string },
  local: { hostname: string; port: number },
  valid: { host?: string } = {},
): AuthorityProblem | undefined {
  const host = request.host;
  if (host !== undefined && host !== valid.host) {
    if (!isPlainHost(host) || !isUrlHost(host)) {
      return { status: 400, message: "The Host header is not a host name or address with an optional port" };
    }
    valid.host = host;
  }
  if (request.target.charCodeAt(0) === 0x2f /* / */) return undefined;
  const scheme = /^https?:\/\//i.exec(request.target);
  if (scheme === null) return undefined; // not absolute-form: the parser of the target refuses it
  const rest = request.target.slice(scheme[0].length);
  const end = rest.search(AUTHORITY_END);
  const authority = (end < 0 ? rest : rest.slice(0, end)).toLowerCase();
  const port = scheme[0].length === 8 ? 443 : 80;
  const localHost = local.hostname.includes(":") ? `[${local.hostname}]` : local.hostname;
  const names = [localHost.toLowerCase(), "localhost"].flatMap((name) =>
    local.port === port ? [name, `${name}:${port}`] : [`${name}:${local.port}`]
  );
  if (!names.includes(authority)) {
    return {
      status: 400,
      message: `flexo is not a forward proxy: it serves only its own paths, not ${authority}; ` +
        "point pacman's Server line at the proxy instead (Server = http://PROXY:7878/$repo/os/$arch)",
    };
  }
  return undefined;
}

/** Whether a URL accepts `host` as its authority (ports above 65535 and IPv4 parts above 255 are refused). */
function isUrlHost(host: string): boolean {
  try {
    new URL(`http://${host}/`);
    return true;
  } catch {
    return false;
  }
}
