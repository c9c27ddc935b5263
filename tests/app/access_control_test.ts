import { BlockList, isIP } from "node:net";
import fc from "fast-check";
import { accessControl, isAllowed, parseCidr } from "../../src/app/access_control.ts";
import { configSchema } from "../../src/config/config_schema.ts";
import { assert, assertEquals } from "../helpers/assert.ts";

/** Runs `fn`, which must throw an Error (whose message includes `includes`, if given); returns the error. */
function assertThrows(fn: () => unknown, includes?: string): Error {
  try {
    fn();
  } catch (error) {
    assert(error instanceof Error, `threw a non-Error: ${error}`);
    if (includes) assert(error.message.includes(includes), `"${error.message}" does not mention ${includes}`);
    return error;
  }
  throw new Error("expected an error, but the call returned");
}

Deno.test("parseCidr() reads IPv4 and IPv6 ranges; host bits below the prefix are ignored when matching", () => {
  assertEquals(parseCidr("192.168.0.0/16"), { family: 4, address: "192.168.0.0", prefix: 16 });
  assertEquals(parseCidr("10.0.0.1"), { family: 4, address: "10.0.0.1", prefix: 32 });
  assertEquals(parseCidr("0.0.0.0/0"), { family: 4, address: "0.0.0.0", prefix: 0 });
  assertEquals(parseCidr("fd00::/8"), { family: 6, address: "fd00::", prefix: 8 });
  assertEquals(parseCidr("::1"), { family: 6, address: "::1", prefix: 128 });
  assertEquals(parseCidr(" 2001:db8::/32 ").prefix, 32);
  assert(isAllowed("192.168.1.200", ["192.168.1.7/24"]), "host bits set below the prefix");
  assert(!isAllowed("192.168.2.7", ["192.168.1.7/24"]));
});

Deno.test("parseCidr() refuses malformed ranges with a message naming the value and the form", () => {
  for (
    const bad of [
      "",
      "/8",
      "192.168.0.0/33",
      "192.168.0.0/-1",
      "192.168.0.0/",
      "192.168.0.0/8/8",
      "256.0.0.0/8",
      "1.2.3/24",
      "01.2.3.4",
      "fd00::/129",
      "fd00:::/8",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "gggg::",
      "example.com/24",
      "::ffff:1.2.3.4.5",
      "1.2.3.4::",
    ]
  ) {
    const error = assertThrows(() => parseCidr(bad));
    assert(error.message.includes(JSON.stringify(bad)), `names the value: ${error.message}`);
    assert(error.message.includes("192.168.0.0/16"), `shows the form: ${error.message}`);
  }
});

Deno.test("isAllowed() reads the IPv6 shorthands, zones, brackets and embedded IPv4 of client addresses", () => {
  assert(isAllowed("1:2:3:4:5:6:7:8", ["1:2:3:4:5:6:7:8"]));
  assert(isAllowed("1::3:4:5:6:7:8", ["1:0:3::/48"]));
  assert(isAllowed("fe80::1%eth0", ["fe80::/10"]));
  assert(isAllowed("[::1]", ["::1"]));
  assert(isAllowed("::FFFF:102:304", ["1.2.3.4"]));
  assert(!isAllowed("1:2:3:4:5:6:7::8", ["::/0"]), "not an address");
});

Deno.test("isAllowed() matches IPv4, IPv6 and IPv4-mapped IPv6 addresses against the ranges", () => {
  const lan = ["192.168.0.0/16", "10.1.2.3", "fd00::/8"];
  assert(isAllowed("192.168.7.9", lan));
  assert(isAllowed("192.168.0.0", lan));
  assert(isAllowed("192.168.255.255", lan));
  assert(!isAllowed("192.169.0.1", lan));
  assert(!isAllowed("192.167.255.255", lan));
  assert(isAllowed("10.1.2.3", lan));
  assert(!isAllowed("10.1.2.4", lan));
  assert(isAllowed("fd12:3456::1", lan));
  assert(isAllowed("FDFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF", lan));
  assert(!isAllowed("fe80::1", lan));
  assert(!isAllowed("::1", lan));
  // An IPv4 client on a dual-stack socket ("::") is seen as ::ffff:a.b.c.d.
  assert(isAllowed("::ffff:192.168.1.5", lan));
  assert(isAllowed("::ffff:c0a8:105", lan));
  assert(!isAllowed("::ffff:172.16.0.1", lan));
  // ...and an IPv6 range written for mapped addresses matches plain IPv4 clients.
  assert(isAllowed("172.16.0.1", ["::ffff:172.16.0.0/108"]));
  assert(!isAllowed("172.32.0.1", ["::ffff:172.16.0.0/108"]));
  // Not mapped: ::c0a8:105 (IPv4-compatible, deprecated) is not 192.168.1.5.
  assert(!isAllowed("::c0a8:105", lan));
  assert(isAllowed("127.0.0.1", ["127.0.0.0/8"]));
  assert(!isAllowed("not an address", ["0.0.0.0/0", "::/0"]));
  assert(!isAllowed("", ["0.0.0.0/0"]));
});

Deno.test("isAllowed() lets everything in for /0 of the right family and nothing for an empty list", () => {
  assert(isAllowed("203.0.113.9", ["0.0.0.0/0"]));
  assert(isAllowed("2001:db8::9", ["::/0"]));
  // ::/0 contains every mapped address, so it admits IPv4 clients too.
  assert(isAllowed("203.0.113.9", ["::/0"]));
  assert(!isAllowed("2001:db8::9", ["0.0.0.0/0"]));
  assert(!isAllowed("127.0.0.1", []));
});

Deno.test("accessControl() allows everybody for an empty list and refuses unknown addresses otherwise", () => {
  const open = accessControl([]);
  assert(open("203.0.113.9"));
  assert(open(undefined));
  const closed = accessControl(["127.0.0.0/8", "::1"]);
  assert(closed("127.0.0.1"));
  assert(closed("127.255.0.3"));
  assert(closed("::1"));
  assert(closed("::ffff:127.0.0.1"));
  assert(!closed("192.168.1.1"));
  assert(!closed("::2"));
  assert(!closed(undefined));
  assertThrows(() => accessControl(["10.0.0.0/40"]), "10.0.0.0/40");
});

Deno.test("accessControl() accepts every allowed_clients value the configuration schema accepts", () => {
  const values = ["192.168.0.0/16", "10.0.0.1", "fd00::/8", "::1", "0.0.0.0/0", "2001:db8:0:0:0:0:0:0/32"];
  const config = configSchema.parse({ allowed_clients: values });
  const allowed = accessControl(config.allowed_clients);
  assert(allowed("10.0.0.1"));
  assert(allowed("fd00::5"));
  assert(allowed("2001:db8::1"));
  assert(allowed("8.8.8.8"), "0.0.0.0/0 lets every IPv4 client in");
});

/** The matching of the earlier implementation, with node:net (which the proxy no longer loads), to compare with. */
function nodeAllows(address: string, cidrs: readonly string[]): boolean {
  const list = new BlockList();
  for (const text of cidrs) {
    const cidr = parseCidr(text);
    list.addSubnet(cidr.address, cidr.prefix, cidr.family === 4 ? "ipv4" : "ipv6");
  }
  let bare = address.trim();
  if (bare.startsWith("[") && bare.endsWith("]")) bare = bare.slice(1, -1);
  if (bare.includes("%")) bare = bare.slice(0, bare.indexOf("%"));
  const family = isIP(bare);
  if (family === 4) return list.check(bare, "ipv4") || list.check(`::ffff:${bare}`, "ipv6");
  return family === 6 && list.check(bare, "ipv6");
}

/** Addresses as written: valid ones in many forms, and near misses (odd characters, group counts, zones). */
const addressText = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV4Extended(),
  fc.ipV4().map((v4) => `::ffff:${v4}`),
  fc.tuple(fc.ipV6(), fc.constantFrom("%eth0", ":", "::", ".1", ":1.2.3.4", "")).map(([a, b]) => a + b),
  fc.string({
    unit: fc.constantFrom("0", "1", "f", "F", "g", ":", ".", "::", "ffff", "255", "01"),
    maxLength: 14,
  }),
);

Deno.test("parseCidr() tells IPv4 and IPv6 addresses from others as node:net's isIP does", () => {
  fc.assert(
    fc.property(addressText, (text) => {
      let family: number | undefined;
      try {
        family = parseCidr(text).family;
      } catch {
        family = 0;
      }
      const expected = text.includes("%") || text.trim() !== text ? 0 : isIP(text);
      assertEquals(family, expected, text);
    }),
    { numRuns: 5000 },
  );
});

Deno.test("isAllowed() matches addresses against ranges as node:net's BlockList does", () => {
  const cidr = fc.tuple(
    fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4().map((v4) => `::ffff:${v4}`)),
    fc.integer({ min: 0, max: 128 }),
  ).map(([address, prefix]) => `${address}/${Math.min(prefix, address.includes(":") ? 128 : 32)}`);
  // Addresses near the ranges' edges, so that both answers come up.
  const near = fc.tuple(cidr, fc.integer({ min: 0, max: 255 })).map(([range, last]) => {
    const address = range.slice(0, range.indexOf("/"));
    return address.includes(":")
      ? address.replace(/[0-9a-f]{1,4}$/, last.toString(16))
      : address.replace(/\d+$/, String(last));
  });
  fc.assert(
    fc.property(fc.array(cidr, { maxLength: 4 }), fc.oneof(addressText, near), (cidrs, address) => {
      assertEquals(
        isAllowed(address, cidrs),
        nodeAllows(address, cidrs),
        `${address} in ${cidrs.join(", ")}`,
      );
    }),
    { numRuns: 5000 },
  );
});
