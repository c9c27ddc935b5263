/**
 * Loop protection with `Via` (RFC 9110 section 7.6.3): every request flexo sends upstream (mirrors, peers) carries
 * `Via: 1.1 <node_name>`, and a request that arrives already carrying this node's name has gone round in a
 * circle (a proxy configured as its own mirror, or tiers pointing at each other) and is answered 508 at once.
 *
 * @module
 */

import { HttpError } from "../http/http_error.ts";

/**
 * The node's default name: `HOSTNAME-PORT-RANDOM` (a Via pseudonym). The random part keeps it unique per listener
 * on one host even when several processes, or several apps in one process, share a port number in their
 * configuration (port 0, or the same port on different addresses); it changes with each start.
 */
export function defaultNodeName(port: number, hostname: () => string = Deno.hostname): string {
  let host: string;
  try {
    host = hostname().replace(/[^A-Za-z0-9._-]/g, "-") || "flexo";
  } catch {
    host = "flexo";
  }
  return `${host}-${port}-${crypto.randomUUID().slice(0, 8)}`;
}

/** The names of the intermediaries in a `Via` header value (`1.1 a, HTTP/1.1 b (comment)` -> `["a", "b"]`). */
export function viaNames(via: string | null): string[] {
  if (!via) return [];
  return via.split(",").map((entry) => entry.trim().split(/\s+/)[1]).filter((name): name is string => !!name);
}

/** Throws a 508 HttpError when `via` names `nodeName`: the request came back to this node. */
export function refuseLoop(via: string | null, nodeName: string): void {
  if (!viaNames(via).some((name) => name.toLowerCase() === nodeName.toLowerCase())) return;
  throw new HttpError(
    508,
    `Loop detected: this request already passed through this node (${nodeName}) on the way here (Via: ${via}); ` +
      "check that no mirror, peer or tier above points back at this node, and that no other node has the same " +
      "node_name (every node needs its own node_name).",
  );
}

/** `fetch` that adds `Via: 1.1 <nodeName>` to every request it sends (after any Via already there). */
export function fetchWithVia(inner: typeof fetch, nodeName: string): typeof fetch {
  return (input, init) => {
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    const before = headers.get("via");
    headers.set("via", before ? `${before}, 1.1 ${nodeName}` : `1.1 ${nodeName}`);
    return inner(input, { ...init, headers });
  };
}
