/**
 * The admin route of prefetch, `POST /prefetch[?dry_run=1]`: runs one pass in the running proxy (so that its
 * downloads are shared with clients) and answers the report as JSON. Only clients on the proxy's own host may
 * ask: from a loopback address, or from the very address they connected to (a proxy listening on one LAN
 * address is asked on it by `flexo prefetch`, and the host's packets to itself come from that address). Behind
 * a trusted proxy (`trusted_proxies`), the client the proxy reports counts, not the proxy's own address. A request
 * a browser made for a web page (it says so with `Origin` or `Sec-Fetch-Site`) is refused, so that no page open on
 * the proxy's host can start runs. Any other
 * method on the path is answered 405 with `Allow: POST` (a GET must not be passed through to a mirror as an
 * unknown path), or 501 when HTTP does not define it.
 *
 * @module
 */

import { Hono } from "hono";
import type { ServeInfo } from "../http/client_request.ts";
import { HttpError, methodError } from "../http/http_error.ts";
import { parsePackageFileName } from "../repo/package_file_name.ts";
import type { RequestTarget } from "../repo/request_path.ts";
import type { Prefetcher } from "./prefetcher.ts";
import type { PackageUsage } from "./package_usage.ts";

/** The path of the admin route. */
export const PREFETCH_ROUTE = "/prefetch";

/** True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback). */
function isLoopback(hostname: string): boolean {
  const bare = hostname.replace(/^\[|\]$/g, "").replace(/^::ffff:/i, "");
  return bare === "::1" || /^127\.\d+\.\d+\.\d+$/.test(bare);
}

/** Whether `client` (the address of the request's client) is on this host, the connection being `info`'s. */
function fromThisHost(info: ServeInfo, client: string): boolean {
  if (isLoopback(client)) return true;
  // A forwarded client is never the connection's own address: only a direct connection counts here.
  return client === info.remoteAddr.hostname && client === info.localAddr?.hostname;
}

/**
 * Routes for prefetch; `info` of a request (from the server) tells who asks.
 *
 * @param prefetcher Runs the passes.
 * @param clientOf The client's address of a request from `remote` (app.ts passes the `trusted_proxies` rule).
 */
export function prefetchRoutes(
  prefetcher: Prefetcher,
  clientOf: (remote: string, headers: Headers) => string,
): Hono {
  const routes = new Hono();
  routes.post(PREFETCH_ROUTE, async (c) => {
    const info = c.env as ServeInfo | undefined;
    if (info && !fromThisHost(info, clientOf(info.remoteAddr.hostname, c.req.raw.headers))) {
      throw new HttpError(
        403,
        "POST /prefetch is answered to clients on the proxy's host only (loopback only); " +
          "run `flexo prefetch` on the proxy's host",
      );
    }
    // A web page open in a browser on this host could post here too (a "simple" request needs no consent):
    // browsers say whose page asks, `flexo prefetch` and curl say nothing of the kind.
    const headers = c.req.raw.headers;
    if (headers.has("origin") || ["cross-site", "same-site"].includes(headers.get("sec-fetch-site") ?? "")) {
      throw new HttpError(
        403,
        "POST /prefetch is not answered to web pages (the request came from a browser's page, with an Origin " +
          "header); run `flexo prefetch` or curl -X POST on the proxy's host",
      );
    }
    const dryRun = ["1", "true"].includes(new URL(c.req.url).searchParams.get("dry_run") ?? "");
    return c.json(await prefetcher.run({ dryRun }));
  });
  routes.all(PREFETCH_ROUTE, (c) => {
    throw methodError(c.req.method, {
      allow: "POST",
      advice: "prefetch runs are asked for with POST /prefetch (or `flexo prefetch`)",
    });
  });
  return routes;
}

/** Notes a client's successful GET of a package file in the usage record (signatures and HEAD do not count). */
export function noteClientFetch(
  usage: PackageUsage,
  method: string,
  target: RequestTarget,
  status: number,
): void {
  if (method !== "GET" || target.kind !== "package" || status >= 300) return;
  const parsed = parsePackageFileName(target.fileName);
  if (parsed) usage.recordFetch(target.cacheSegments.slice(0, -1).join("/"), parsed.name);
}
