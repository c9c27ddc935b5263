import assert from "node:assert/strict";
import { formatBytes, parseBandwidth, parseDuration, parseSize } from "../../src/config/units.ts";

Deno.test("parseBandwidth() matches flexo's own test cases", () => {
  const cases: [string, number][] = [
    ["8 Bit/s", 1],
    ["8 B/s", 8],
    ["1000 Bit/s", 125],
    ["1 KBit/s", 125],
    ["25 KiB/s", 25_600],
    ["1000 KBit/s", 125_000],
    ["1 MBit/s", 125_000],
    ["25 MiB/s", 26_214_400],
    ["1000 MBit/s", 125_000_000],
    ["1 GBit/s", 125_000_000],
  ];
  for (const [text, expected] of cases) assert.equal(parseBandwidth(text), expected, text);
});

Deno.test("parseBandwidth() is case-insensitive and accepts the documented examples", () => {
  const cases: [string, number][] = [
    ["2 MBit/s", 250_000],
    ["500 KiB/s", 512_000],
    ["2 mbit/s", 250_000],
    ["2 MBIT/S", 250_000],
    ["1 gib/s", 1024 ** 3],
    ["1 GiBit/s", 1024 ** 3 / 8],
    ["2MB/s", 2_000_000],
    ["1.5 MB/s", 1_500_000],
    ["  3 kb / s ", 3000],
    ["1 Bit/s", 0],
  ];
  for (const [text, expected] of cases) assert.equal(parseBandwidth(text), expected, text);
});

Deno.test("parseBandwidth() rejects bad input with the expected form", () => {
  for (
    const bad of [
      "",
      "fast",
      "2 MBit",
      "2 MB/x",
      "2 XB/s",
      "2 M/s",
      "-1 MB/s",
      "2 TB/s",
      "MB/s",
      "2 constructorb/s",
    ]
  ) {
    assert.throws(
      () => parseBandwidth(bad),
      (error: unknown) => {
        assert.ok(error instanceof RangeError, bad);
        assert.ok(error.message.includes(JSON.stringify(bad)), error.message);
        assert.ok(error.message.includes('"2 MBit/s"'), error.message);
        return true;
      },
    );
  }
});

Deno.test("parseDuration() reads humantime durations as milliseconds", () => {
  const cases: [string, number][] = [
    ["8 days", 8 * 86_400_000],
    ["1h 30min", 90 * 60_000],
    ["2weeks", 14 * 86_400_000],
    ["45s", 45_000],
    ["10m", 600_000],
    ["2h 37min", 9_420_000],
    ["2h37min", 9_420_000],
    ["32ms", 32],
    ["1M", 2_630_016_000],
    ["1y", 31_557_600_000],
    ["1 day 2 hours", 93_600_000],
    ["7hrs", 25_200_000],
    ["3usec", 0.003],
    ["0s", 0],
  ];
  for (const [text, expected] of cases) assert.equal(parseDuration(text), expected, text);
  assert.ok(Math.abs(parseDuration(" 20 min 17 nsec ") - 1_200_000.000017) < 1e-9);
});

Deno.test("parseDuration() rejects bad input with the expected form", () => {
  for (
    const bad of ["", "   ", "8", "days", "8 fortnights", "1.5h", "-1s", "1h,2m", "8 days!", "5 constructor"]
  ) {
    assert.throws(
      () => parseDuration(bad),
      (error: unknown) => {
        assert.ok(error instanceof RangeError, bad);
        assert.ok(error.message.includes(JSON.stringify(bad)), error.message);
        assert.ok(error.message.includes('"8 days"'), error.message);
        return true;
      },
    );
  }
});

Deno.test("parseSize() reads sizes with decimal and binary units", () => {
  const cases: [string, number][] = [
    ["50 GiB", 50 * 1024 ** 3],
    ["500 MB", 500_000_000],
    ["1.5G", 1_500_000_000],
    ["1024", 1024],
    ["10k", 10_000],
    ["2KiB", 2048],
    ["2 ki", 2048],
    ["1 tb", 1e12],
    ["3 B", 3],
    ["1.5 KiB", 1536],
  ];
  for (const [text, expected] of cases) assert.equal(parseSize(text), expected, text);
});

Deno.test("parseSize() rejects bad input with the expected form", () => {
  for (const bad of ["", "GiB", "5 XB", "-1", "1e3", "5 GiB/s", "1 2 GB"]) {
    assert.throws(
      () => parseSize(bad),
      (error: unknown) => {
        assert.ok(error instanceof RangeError, bad);
        assert.ok(error.message.includes(JSON.stringify(bad)), error.message);
        assert.ok(error.message.includes('"50 GiB"'), error.message);
        return true;
      },
    );
  }
  assert.throws(() => parseSize("99999999999 TiB"), /too large/);
});

Deno.test("formatBytes() uses binary units with at most one decimal", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1024), "1 KiB");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(50 * 1024 ** 3), "50 GiB");
  assert.equal(formatBytes(1.25 * 1024 ** 4), "1.3 TiB");
  assert.throws(() => formatBytes(-1), RangeError);
  assert.throws(() => formatBytes(Number.NaN), RangeError);
});
