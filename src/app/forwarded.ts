/**
 * Client addresses behind a balancer (`trusted_proxies`): for a connection from a trusted proxy, the client is
 * the address the proxies report in `Forwarded` (RFC 7239) or `X-Forwarded-For`, read from the right and
 * skipping trusted proxies, so a client cannot pass itself off as another by sending the header itself. A
 * balancer writes one of the two and passes the other on as the client sent it (HAProxy's `option forwardfor`
 * and nginx's `$proxy_add_x_forwarded_for` leave a `Forwarded` alone), and which one it writes is not known
 * here: when both name a client outside the trusted proxies and they differ, one was written by the client, and
 * the client is unknown (a chain whose headers differ only by trusted proxies, written by two balancers, is one
 * client). For every other connection those headers are ignored.
 *
 * @module
 */

import { accessControl } from "./access_control.ts";

/** Where the client address of a request came from. */
export type ClientAddress =
  | { source: "connection"; address: string }
  | { source: "forwarded"; address: string; via: string }
  /**
   * `Forwarded` and `X-Forwarded-For` name different clients: one of them was written by the client. The address
   * is RFC 7239's `unknown`, which no range in `allowed_clients` holds.
   */
  | { source: "conflicting"; address: "unknown"; via: string };

/** The node addresses of `for=` parameters in a `Forwarded` value, in order (unknown or obfuscated ones as given). */
export function forwardedFor(value: string): string[] {
  const found: string[] = [];
  for (const element of value.split(",")) {
    for (const pair of element.split(";")) {
      const eq = pair.indexOf("=");
      if (eq < 0 || pair.slice(0, eq).trim().toLowerCase() !== "for") continue;
      found.push(nodeAddress(pair.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1")));
    }
  }
  return found;
}

/** An address without its port: `[::1]:80` -> `::1`, `1.2.3.4:80` -> `1.2.3.4`. */
function nodeAddress(node: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(node);
  if (bracketed) return bracketed[1];
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(node);
  return v4 ? v4[1] : node;
}

/**
 * The check that makes client addresses: `trusted` are the `trusted_proxies` ranges. With none, the
 * connection's address is always the client's.
 */
export function clientAddressOf(
  trusted: readonly string[],
): (remote: string, headers: { get(name: string): string | null }) => ClientAddress {
  const isTrusted = trusted.length === 0 ? () => false : accessControl(trusted);
  /** The rightmost address of `chain` that is not a trusted proxy; undefined when there is none. */
  const outsideIn = (chain: string[]): string | undefined => {
    for (let i = chain.length - 1; i >= 0; i--) {
      if (!isTrusted(chain[i])) return chain[i].toLowerCase();
    }
    return undefined;
  };
  return (remote, headers) => {
    if (!isTrusted(remote)) return { source: "connection", address: remote };
    const forwarded = headers.get("forwarded");
    const listed = headers.get("x-forwarded-for");
    const byForwarded = forwarded === null ? [] : forwardedFor(forwarded);
    const byList = listed === null
      ? []
      : listed.split(",").map((a) => nodeAddress(a.trim())).filter((a) => a);
    const outside = outsideIn(byForwarded);
    const listedOutside = outsideIn(byList);
    if (outside !== undefined && listedOutside !== undefined && outside !== listedOutside) {
      return { source: "conflicting", address: "unknown", via: remote };
    }
    // A header of trusted proxies only names none of them (the client is on a balancer's host): the leftmost.
    const address = outside ?? listedOutside ?? byForwarded[0] ?? byList[0];
    return address === undefined
      ? { source: "connection", address: remote }
      : { source: "forwarded", address, via: remote };
  };
}

/** Whether a connection from `remote` comes from a trusted proxy (its requests are then checked one by one). */
export function trustedProxyCheck(trusted: readonly string[]): (remote: string) => boolean {
  return trusted.length === 0 ? () => false : accessControl(trusted);
}
