/**
 * `allowed_clients`: which client addresses may use the proxy, as a list of CIDR ranges. An empty list allows
 * everybody (as flexo does). IPv4 clients that reach an IPv6 socket appear as IPv4-mapped addresses
 * (`::ffff:192.168.1.5`) and are matched against IPv4 ranges as well as IPv6 ones; a plain IPv4 client also
 * matches IPv6 ranges that hold its mapped form.
 *
 * Addresses are read and matched here, not with `node:net`'s `isIP` and `BlockList` (which it matches as they
 * do): loading `node:net` cost 12-16 ms of start-up and about 2 MiB of idle memory (BENCHMARKS.md, "Session
 * seven"). Every address is matched as 128 bits, an IPv4 one in its IPv4-mapped form (`::ffff:a.b.c.d`, an IPv4
 * range of prefix p as one of prefix 96 + p).
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

/** One decimal part of an IPv4 address: 0-255 without a leading zero (as `node:net` reads them). */
const V4_PART = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])";
const V4 = `(?:${V4_PART}\\.){3}${V4_PART}`;
const IPV4 = new RegExp(`^${V4}$`);
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** An address as four 32-bit words, most significant first (IPv4 in its mapped form). */
type Bits = readonly [number, number, number, number];

/** The 32 bits of a valid dotted IPv4 address. */
function v4Word(text: string): number {
  const [a, b, c, d] = text.split(".").map(Number);
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

/**
 * The 16-bit groups of `part`, colon-separated groups of 1-4 hex digits of which the last may be a dotted IPv4
 * address (two groups) when `v4Tail`; undefined when it is not that. An empty part has no groups.
 */
function groupsOf(part: string, v4Tail: boolean): number[] | undefined {
  if (part === "") return [];
  const pieces = part.split(":");
  const groups: number[] = [];
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i];
    if (HEX_GROUP.test(piece)) {
      groups.push(parseInt(piece, 16));
    } else if (v4Tail && i === pieces.length - 1 && IPV4.test(piece)) {
      const word = v4Word(piece);
      groups.push(word >>> 16, word & 0xffff);
    } else {
      return undefined;
    }
  }
  return groups;
}

/**
 * The eight 16-bit groups of an IPv6 address without a zone, or undefined when it is not one: eight groups, or
 * fewer with one `::` standing for one or more zero groups; a dotted IPv4 address may end it as the last two.
 */
function v6Groups(text: string): number[] | undefined {
  const double = text.indexOf("::");
  if (double < 0) {
    const groups = groupsOf(text, true);
    return groups?.length === 8 ? groups : undefined;
  }
  if (text.indexOf("::", double + 1) >= 0) return undefined;
  const head = groupsOf(text.slice(0, double), false);
  const tail = groupsOf(text.slice(double + 2), true);
  if (head === undefined || tail === undefined || head.length + tail.length > 7) return undefined;
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

/** The family and bits of an address without brackets or zone, or undefined when it is neither IPv4 nor IPv6. */
function addressBits(text: string): { family: 4 | 6; bits: Bits } | undefined {
  if (IPV4.test(text)) return { family: 4, bits: [0, 0, 0xffff, v4Word(text)] };
  const groups = v6Groups(text);
  if (groups === undefined) return undefined;
  const word = (i: number) => ((groups[i] << 16) | groups[i + 1]) >>> 0;
  return { family: 6, bits: [word(0), word(2), word(4), word(6)] };
}

/** Whether the first `prefix` bits of `a` and `b` are equal. */
function samePrefix(a: Bits, b: Bits, prefix: number): boolean {
  for (let i = 0; i < 4 && prefix > 32 * i; i++) {
    const left = prefix - 32 * i;
    const mask = left >= 32 ? 0xffffffff : ~(0xffffffff >>> left) >>> 0;
    if (((a[i] ^ b[i]) & mask) >>> 0 !== 0) return false;
  }
  return true;
}

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
  const family = addressBits(address)?.family;
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

/** A range as 128 bits: its address and the number of leading bits that must match. */
interface Range {
  bits: Bits;
  prefix: number;
}

/** A set of ranges to match client addresses against. */
function rangesOf(cidrs: readonly (Cidr | string)[]): Range[] {
  return cidrs.map((entry) => {
    const cidr = typeof entry === "string" ? parseCidr(entry) : entry;
    const { bits } = addressBits(cidr.address)!;
    return { bits, prefix: cidr.family === 4 ? 96 + cidr.prefix : cidr.prefix };
  });
}

/** Whether `ranges` hold `address` (brackets and an IPv6 zone are ignored); unparsable addresses never match. */
function holds(ranges: readonly Range[], address: string): boolean {
  let text = address.trim();
  if (text.startsWith("[") && text.endsWith("]")) text = text.slice(1, -1);
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  const parsed = addressBits(text);
  if (parsed === undefined) return false;
  return ranges.some((range) => samePrefix(parsed.bits, range.bits, range.prefix));
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
  return holds(rangesOf(cidrs), address);
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
  const ranges = rangesOf(cidrs);
  return (remote) => remote !== undefined && holds(ranges, remote);
}
