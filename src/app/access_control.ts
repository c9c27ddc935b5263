/**
 * `allowed_clients`: which client addresses may use the proxy, as a list of CIDR ranges, matched with the
 * runtime's `node:net` `BlockList`. An empty list allows everybody (as flexo does). IPv4 clients that reach an
 * IPv6 socket appear as IPv4-mapped addresses (`::ffff:192.168.1.5`) and are matched against IPv4 ranges as well
 * as IPv6 ones; a plain IPv4 client also matches IPv6 ranges that hold its mapped form.
 *
 * @example
 * ```ts
 * import { accessControl } from "./access_control.ts";
 * const allowed = accessControl(["192.168.0.0/16", "fd00::/8"]);
 * allowed("::ffff:192.168.1.5"); // true
 * ```
 *
 * @module
 */

import { BlockList, isIP } from "node:net";

/** A CIDR range as written, checked: the address, its family and the prefix length. */
export interface Cidr {
  /** 4 for IPv4, 6 for IPv6. */
  family: 4 | 6;
  /** The address part as written (host bits below the prefix are ignored when matching). */
  address: string;
  /** Number of leading bits that must match. */
  prefix: number;
}

/**
 * Checks a CIDR range such as `"192.168.0.0/16"` or `"fd00::/8"`; a bare address stands for that one host.
 *
 * @throws {Error} naming the value and the expected form when it is not a CIDR range.
 */
export function parseCidr(text: string): Cidr {
  const trimmed = text.trim();
  const slash = trimmed.indexOf("/");
  const address = slash < 0 ? trimmed : trimmed.slice(0, slash);
  const family = isIP(address);
  const bits = family === 4 ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const prefixText = trimmed.slice(slash + 1);
    prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  }
  if ((family !== 4 && family !== 6) || address.includes("%") || !(prefix >= 0 && prefix <= bits)) {
    throw new Error(
      `${JSON.stringify(text)} is not a CIDR range: expected an address and a prefix length such as ` +
        '"192.168.0.0/16" or "fd00::/8", or a single IP address',
    );
  }
  return { family, address, prefix };
}

/** A set of ranges to match client addresses against. */
function blockListOf(cidrs: readonly (Cidr | string)[]): BlockList {
  const list = new BlockList();
  for (const entry of cidrs) {
    const cidr = typeof entry === "string" ? parseCidr(entry) : entry;
    list.addSubnet(cidr.address, cidr.prefix, cidr.family === 4 ? "ipv4" : "ipv6");
  }
  return list;
}

/** Whether `list` holds `address` (brackets and an IPv6 zone are ignored); unparsable addresses never match. */
function holds(list: BlockList, address: string): boolean {
  let text = address.trim();
  if (text.startsWith("[") && text.endsWith("]")) text = text.slice(1, -1);
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  const family = isIP(text);
  if (family === 4) return list.check(text, "ipv4") || list.check(`::ffff:${text}`, "ipv6");
  if (family === 6) return list.check(text, "ipv6");
  return false;
}

/**
 * True when `address` lies in one of `cidrs`. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) also matches the
 * IPv4 ranges, and an IPv4 address also matches IPv6 ranges that contain its mapped form. An address that cannot
 * be parsed is never allowed.
 *
 * @param address The client's address, e.g. `"192.168.1.5"`, `"fe80::1%eth0"` or `"::ffff:192.168.1.5"`.
 * @param cidrs Ranges (see {@linkcode parseCidr}) or their text.
 */
export function isAllowed(address: string, cidrs: readonly (Cidr | string)[]): boolean {
  return holds(blockListOf(cidrs), address);
}

/**
 * The check for `allowed_clients`: a function telling whether a client's remote address may use the proxy.
 * An empty list allows every client (access control off, flexo's default); otherwise a client whose address is
 * unknown (`undefined`, e.g. a Unix socket) or outside every range is refused.
 *
 * @param cidrs The `allowed_clients` ranges; checked once here.
 * @throws {Error} when a range is not valid (see {@linkcode parseCidr}).
 */
export function accessControl(cidrs: readonly string[]): (remote: string | undefined) => boolean {
  if (cidrs.length === 0) return () => true;
  const list = blockListOf(cidrs);
  return (remote) => remote !== undefined && holds(list, remote);
}
