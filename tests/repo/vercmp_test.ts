import assert from "node:assert/strict";
import { vercmp } from "../../src/repo/vercmp.ts";

/** Pairs whose ordering pacman documents or that exercise a corner of the algorithm. */
const TRICKY_PAIRS: [string, string][] = [
  // documented in vercmp(8) and the issue
  ["1.0a", "1.0b"],
  ["1.0b", "1.0beta"],
  ["1.0beta", "1.0p"],
  ["1.0p", "1.0pre"],
  ["1.0pre", "1.0rc"],
  ["1.0rc", "1.0"],
  ["1.0", "1.0.a"],
  ["1.0.a", "1.0.1"],
  ["1", "1.0"],
  ["1.0", "1.1"],
  ["1.1", "1.1.1"],
  ["1.1.1", "1.2"],
  ["1.2", "2.0"],
  ["2.0", "3.0.0"],
  ["1.0a", "1.0"],
  ["1.0", "1.0.1"],
  ["1:1.0", "2.0"],
  ["1.0-1", "1.0"],
  ["1.0", "1.0-1"],
  ["1.0-1", "1.0-2"],
  ["1.0-2", "1.0-10"],
  ["1.0-1.1", "1.0-1"],
  // epochs
  ["0:1.0", "1.0"],
  [":1.0", "1.0"],
  ["00:1.0", "0:1.0"],
  ["1:0.1", "0:9.9"],
  ["2:1.0", "10:1.0"],
  ["1:1.0-1", "1:1.0-2"],
  ["a:1.0", "1.0"],
  ["1a:1.0", "1.0"],
  // leading zeros and long numbers
  ["1.01", "1.1"],
  ["1.001", "1.01"],
  ["1.0010", "1.10"],
  ["000", "0"],
  ["12345678901234567890", "12345678901234567891"],
  ["99999999999999999999", "100000000000000000000"],
  // separators
  ["1.0", "1..0"],
  ["1..0", "1_0"],
  ["1_0", "1+0"],
  ["1.0", "1+0"],
  ["1.0", "1~0"],
  ["1.0~rc1", "1.0"],
  ["1..", "1."],
  ["1.", "1"],
  ["1", "1_"],
  [".1", "1"],
  ["..1", ".1"],
  ["1.0.", "1.0"],
  // letters against numbers and the end of the string
  ["1a", "1"],
  ["1a", "1.1"],
  ["1a1", "1.1"],
  ["a", "1"],
  ["a", "b"],
  ["A", "a"],
  ["1.0A", "1.0a"],
  ["alpha", "beta"],
  ["1.0alpha1", "1.0alpha2"],
  ["1.0alpha", "1.0alpha1"],
  ["1.0a.1", "1.0a"],
  ["r1234.abcdef", "r1235.abcde0"],
  ["2.0.r12.g1234567", "2.0"],
  ["2.0.r12.g1234567", "2.0.1"],
  // dashes: only the last one separates the release
  ["1.0-1-1", "1.0-1-2"],
  ["1-2-3", "1-2"],
  ["1-", "1"],
  ["1-", "1-0"],
  ["1.0-", "1.0-a"],
  ["-1", "1"],
  // empty and odd strings
  ["", ""],
  ["", "0"],
  ["", "a"],
  ["", "."],
  [".", ".."],
  ["_", "+"],
  ["1.2.3", "1.2.3"],
  // non-ASCII bytes are separators, counted per UTF-8 byte
  ["1é0", "1..0"],
  ["1é0", "1.0"],
  ["1ä", "1"],
];

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Compare every pair with Debian's real `vercmp` (pacman's own tool), one process per pair via xargs. */
async function realVercmp(pairs: [string, string][]): Promise<number[]> {
  const binary = "/usr/bin/vercmp";
  try {
    await Deno.stat(binary);
  } catch {
    throw new Error(
      `${binary} is missing: this test compares with pacman's real vercmp. Install it with: apt-get install -y makepkg`,
    );
  }
  const input = await Deno.makeTempFile({ prefix: "flexo-vercmp-", suffix: ".bin" });
  try {
    await Deno.writeFile(input, encoder.encode(pairs.map(([a, b]) => `${a}\0${b}\0`).join("")));
    const output = await new Deno.Command("bash", {
      args: ["-c", 'xargs -0 -n 2 "$0" < "$1"', binary, input],
      env: { LC_ALL: "C" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(output.success, `xargs vercmp failed: ${decoder.decode(output.stderr)}`);
    const results = decoder.decode(output.stdout).trim().split("\n").map(Number);
    assert.equal(results.length, pairs.length, "vercmp printed one result per pair");
    return results;
  } finally {
    await Deno.remove(input);
  }
}

function assertSameAsReal(pairs: [string, string][], expected: number[]): void {
  const mismatches: string[] = [];
  pairs.forEach(([a, b], index) => {
    const ours = vercmp(a, b);
    if (ours !== expected[index]) {
      mismatches.push(
        `vercmp(${JSON.stringify(a)}, ${JSON.stringify(b)}) = ${ours}, pacman says ${expected[index]}`,
      );
    }
  });
  assert.deepEqual(
    mismatches.slice(0, 20),
    [],
    `${mismatches.length} of ${pairs.length} pairs differ from pacman`,
  );
}

/** mulberry32: a small seeded PRNG so that the generated pairs are the same on every run. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function generatePairs(count: number, seed: number): [string, string][] {
  const random = prng(seed);
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)];
  const digits = () => pick(["0", "1", "2", "9", "10", "01", "001", "11", "20100101", "99999999999"]);
  const letters = () => pick(["a", "b", "z", "A", "rc", "alpha", "beta", "pre", "r", "g", "git"]);
  const separator = () => pick([".", ".", ".", "_", "+", "..", "._", "~", ""]);
  const segment = () => (random() < 0.65 ? digits() : letters());
  const pkgver = () => {
    let text = segment();
    const segments = Math.floor(random() * 5);
    for (let i = 0; i < segments; i++) text += separator() + segment();
    return text;
  };
  const version = () => {
    const epoch = random() < 0.2 ? pick(["0", "1", "2", "01", "10", ""]) + ":" : "";
    const release = random() < 0.7 ? "-" + pick(["1", "2", "10", "1.1", "0", "01", "a", "1a", ""]) : "";
    return epoch + pkgver() + release;
  };
  /** A variant of `text` that shares most of it, so that the comparison goes deep. */
  const mutate = (text: string): string => {
    const position = Math.floor(random() * (text.length + 1));
    switch (Math.floor(random() * 8)) {
      case 0:
        return text + separator() + segment();
      case 1:
        return text.slice(0, position) + segment() + text.slice(position);
      case 2:
        return text.slice(0, position) + text.slice(position + 1);
      case 3:
        return text.slice(0, position) + separator() + text.slice(position);
      case 4:
        return text.replace(/-[^-]*$/, "") || text + "-1";
      case 5:
        return pick(["1:", "0:", "2:"]) + text.replace(/^\d*:/, "");
      case 6:
        return text + pick(["a", "1", ".0", "-1", "-2"]);
      default:
        return text.replace(/\d+/, () => digits());
    }
  };
  const pairs: [string, string][] = [];
  while (pairs.length < count) {
    const a = version();
    const kind = random();
    let b = kind < 0.15 ? version() : mutate(kind < 0.3 ? mutate(a) : a);
    if (kind > 0.95) b = a;
    // vercmp takes "-h" as a request for help, and an empty string is already in the table.
    if (a === "" || b === "" || a.startsWith("-h") || b.startsWith("-h")) continue;
    pairs.push(random() < 0.5 ? [a, b] : [b, a]);
  }
  return pairs;
}

Deno.test("vercmp() orders the documented examples like pacman", () => {
  assert.equal(vercmp("1.0a", "1.0"), -1);
  assert.equal(vercmp("1.0", "1.0.1"), -1);
  assert.equal(vercmp("1.0.1", "1.0a"), 1);
  assert.equal(vercmp("1:1.0", "2.0"), 1);
  assert.equal(vercmp("1.0-1", "1.0"), 0);
  assert.equal(vercmp("1.0-1", "1.0-2"), -1);
  assert.equal(vercmp("1.01", "1.1"), 0);
  assert.equal(vercmp("1..0", "1.0"), 1);
  assert.equal(vercmp("2.0", "2.0"), 0);
});

Deno.test("vercmp() agrees with pacman's vercmp binary on tricky pairs, both ways round", async () => {
  const pairs = TRICKY_PAIRS.flatMap(([a, b]): [string, string][] => [[a, b], [b, a]]);
  assertSameAsReal(pairs, await realVercmp(pairs));
});

Deno.test("vercmp() agrees with pacman's vercmp binary on 3000 generated pairs", async () => {
  const pairs = generatePairs(3000, 20240601);
  const expected = await realVercmp(pairs);
  // The generated set must be interesting: all three outcomes, in good numbers.
  for (const outcome of [-1, 0, 1]) {
    const count = expected.filter((result) => result === outcome).length;
    assert.ok(count > 100, `only ${count} generated pairs compare as ${outcome}`);
  }
  assertSameAsReal(pairs, expected);
});
