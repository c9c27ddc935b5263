/**
 * Client addresses behind a balancer (`trusted_proxies`): for a connection from a trusted proxy, the client is
 * the address the proxies report in `Forwarded` (RFC 7239) or else `X-Forwarded-For`, read from the right and
 * skipping trusted proxies, so a client cannot pass itself off as another by sending the header itself. For
 * every other connection those headers are ignored.
 *
 * @module
 */

import { accessControl } from "./access_control.ts";

/** Where the client address of a request came from. */
export type ClientAddress =
  | { source: "connection"; address: string }
  | { source: "forwarded"; address: string; via: string };

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
  return (remote, headers) => {
    if (!isTrusted(remote)) return { source: "connection", address: remote };
    const forwarded = headers.get("forwarded");
    const chain = forwarded !== null
      ? forwardedFor(forwarded)
      : (headers.get("x-forwarded-for") ?? "").split(",").map((a) => nodeAddress(a.trim())).filter((a) => a);
    for (let i = chain.length - 1; i >= 0; i--) {
      if (!isTrusted(chain[i]) || i === 0) return { source: "forwarded", address: chain[i], via: remote };
    }
    return { source: "connection", address: remote };
  };
}

/** Whether a connection from `remote` comes from a trusted proxy (its requests are then checked one by one). */
export function trustedProxyCheck(trusted: readonly string[]): (remote: string) => boolean {
  return trusted.length === 0 ? () => false : accessControl(trusted);
}
