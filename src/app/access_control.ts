/**
 * `allowed_clients`: which client addresses may use the proxy, as a list of CIDR ranges. An empty list allows
 * everybody (as flexo does). IPv4 clients that reach an IPv6 socket appear as IPv4-mapped addresses
 * (`::ffff:192.168.1.5`) and are matched against IPv4 ranges as well as IPv6 ones.
 *
 * @module
 */

/** A parsed CIDR range: the address as a 32-bit (IPv4) or 128-bit (IPv6) number and the prefix length. */
export interface Cidr {
  /** 4 for IPv4, 6 for IPv6. */
  family: 4 | 6;
  /** The network address with the host bits cleared. */
  network: bigint;
  /** Number of leading bits that must match. */
  prefix: number;
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses a dotted IPv4 address into a number; undefined when it is not one. */
export function parseIpv4(text: string): bigint | undefined {
  const match = IPV4_RE.exec(text);
  if (!match) return undefined;
  let value = 0n;
  for (let i = 1; i <= 4; i++) {
    const part = match[i];
    // "01" is ambiguous (octal in some parsers): refuse it as zod's ipv4 check does.
    if (part.length > 1 && part.startsWith("0")) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = (value << 8n) | BigInt(octet);
  }
  return value;
}

/**
 * Parses an IPv6 address (with `::` shorthand, an optional embedded IPv4 tail such as `::ffff:1.2.3.4`, and an
 * optional `%zone`, which is ignored) into a 128-bit number; undefined when it is not one.
 */
export function parseIpv6(text: string): bigint | undefined {
  let address = text;
  if (address.startsWith("[") && address.endsWith("]")) address = address.slice(1, -1);
  const zone = address.indexOf("%");
  if (zone >= 0) address = address.slice(0, zone);
  if (address === "" || !/^[0-9a-fA-F:.]+$/.test(address)) return undefined;
  const halves = address.split("::");
  if (halves.length > 2) return undefined;
  const groupsOf = (part: string): number[] | undefined => {
    if (part === "") return [];
    const groups: number[] = [];
    const pieces = part.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i];
      if (i === pieces.length - 1 && piece.includes(".")) {
        const v4 = parseIpv4(piece);
        if (v4 === undefined) return undefined;
        groups.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(piece)) return undefined;
      groups.push(parseInt(piece, 16));
    }
    return groups;
  };
  const head = groupsOf(halves[0]);
  const tail = halves.length === 2 ? groupsOf(halves[1]) : [];
  if (head === undefined || tail === undefined) return undefined;
  // An IPv4 tail is only allowed at the very end.
  if (halves.length === 2 && halves[0].includes(".")) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return undefined;
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return undefined;
  let value = 0n;
  for (const group of groups) value = (value << 16n) | BigInt(group);
  return value;
}

/** Parses an IPv4 or IPv6 address; undefined when it is neither. */
export function parseAddress(text: string): { family: 4 | 6; value: bigint } | undefined {
  const trimmed = text.trim();
  const v4 = parseIpv4(trimmed);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = parseIpv6(trimmed);
  if (v6 !== undefined) return { family: 6, value: v6 };
  return undefined;
}

/**
 * Parses a CIDR range such as `"192.168.0.0/16"` or `"fd00::/8"`; a bare address stands for that one host.
 * Host bits set below the prefix (`"192.168.1.7/24"`) are cleared rather than refused.
 *
 * @throws {Error} naming the value and the expected form when it is not a CIDR range.
 */
export function parseCidr(text: string): Cidr {
  const trimmed = text.trim();
  const slash = trimmed.indexOf("/");
  const addressText = slash < 0 ? trimmed : trimmed.slice(0, slash);
  const address = parseAddress(addressText);
  const bits = address?.family === 4 ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const prefixText = trimmed.slice(slash + 1);
    prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  }
  if (address === undefined || !(prefix >= 0 && prefix <= bits)) {
    throw new Error(
      `${JSON.stringify(text)} is not a CIDR range: expected an address and a prefix length such as ` +
        '"192.168.0.0/16" or "fd00::/8", or a single IP address',
    );
  }
  return { family: address.family, network: address.value & maskOf(prefix, bits), prefix };
}

/** The mask with the first `prefix` of `bits` bits set. */
function maskOf(prefix: number, bits: number): bigint {
  const all = (1n << BigInt(bits)) - 1n;
  return prefix === 0 ? 0n : (all >> BigInt(bits - prefix)) << BigInt(bits - prefix);
}

const MAPPED_PREFIX = 0xffffn << 32n;

/** True when `value` is inside `cidr`. */
function contains(cidr: Cidr, family: 4 | 6, value: bigint): boolean {
  if (cidr.family !== family) return false;
  return (value & maskOf(cidr.prefix, family === 4 ? 32 : 128)) === cidr.network;
}

/**
 * True when `address` lies in one of `cidrs`. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) also matches the
 * IPv4 ranges, and an IPv4 address also matches IPv6 ranges that contain its mapped form. An address that cannot
 * be parsed is never allowed.
 *
 * @param address The client's address, e.g. `"192.168.1.5"`, `"fe80::1%eth0"` or `"::ffff:192.168.1.5"`.
 * @param cidrs Parsed ranges (see {@linkcode parseCidr}) or their text.
 */
export function isAllowed(address: string, cidrs: readonly (Cidr | string)[]): boolean {
  const parsed = parseAddress(address);
  if (parsed === undefined) return false;
  const candidates: { family: 4 | 6; value: bigint }[] = [parsed];
  if (parsed.family === 6 && parsed.value >> 32n === 0xffffn) {
    candidates.push({ family: 4, value: parsed.value & 0xffffffffn });
  } else if (parsed.family === 4) {
    candidates.push({ family: 6, value: MAPPED_PREFIX | parsed.value });
  }
  for (const entry of cidrs) {
    const cidr = typeof entry === "string" ? parseCidr(entry) : entry;
    for (const candidate of candidates) {
      if (contains(cidr, candidate.family, candidate.value)) return true;
    }
  }
  return false;
}

/**
 * The check for `allowed_clients`: a function telling whether a client's remote address may use the proxy.
 * An empty list allows every client (access control off, flexo's default); otherwise a client whose address is
 * unknown (`undefined`, e.g. a Unix socket) or outside every range is refused.
 *
 * @param cidrs The `allowed_clients` ranges; parsed once here.
 * @throws {Error} when a range is not valid (see {@linkcode parseCidr}).
 */
export function accessControl(cidrs: readonly string[]): (remote: string | undefined) => boolean {
  if (cidrs.length === 0) return () => true;
  const parsed = cidrs.map((cidr) => parseCidr(cidr));
  return (remote) => remote !== undefined && isAllowed(remote, parsed);
}
