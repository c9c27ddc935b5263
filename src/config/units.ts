/**
 * Parsers and formatters for the human-friendly units used in flexo's configuration:
 * bandwidths ("2 MBit/s"), durations ("8 days") and sizes ("50 GiB").
 *
 * Every parser throws a `RangeError` whose message quotes the bad input and shows the expected form.
 *
 * @module
 */

const DECIMAL_PREFIXES: Record<string, number> = {
  "": 1,
  k: 1000,
  m: 1000 ** 2,
  g: 1000 ** 3,
  t: 1000 ** 4,
};

const BINARY_PREFIXES: Record<string, number> = {
  ki: 1024,
  mi: 1024 ** 2,
  gi: 1024 ** 3,
  ti: 1024 ** 4,
};

/** The value stored under `key` in a lookup table, ignoring inherited properties such as "constructor". */
function lookup(table: Record<string, number>, key: string): number | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

/** Multiplier for a lower-cased unit prefix ("", "k", "mi", ...), or undefined when unknown. */
function prefixMultiplier(prefix: string): number | undefined {
  return lookup(DECIMAL_PREFIXES, prefix) ?? lookup(BINARY_PREFIXES, prefix);
}

/** Text shown in bandwidth errors. */
export const BANDWIDTH_FORM =
  'a number and a unit per second such as "2 MBit/s", "500 KiB/s" or "8 B/s" (B = bytes, Bit = bits; ' +
  "prefixes k, m, g count in 1000s and ki, mi, gi in 1024s; case does not matter)";

const BANDWIDTH_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*\/\s*s\s*$/i;

/**
 * Parses a bandwidth such as "2 MBit/s", "500 KiB/s" or "8 B/s" into whole bytes per second (rounded down).
 *
 * Units follow flexo: `b` means bytes and `bit` means bits (divided by 8); the prefixes `k`, `m`, `g` are
 * 1000-based and `ki`, `mi`, `gi` are 1024-based; case does not matter.
 *
 * @throws {RangeError} when the text is not of that form.
 */
export function parseBandwidth(s: string): number {
  const match = BANDWIDTH_PATTERN.exec(s);
  if (match === null) {
    throw new RangeError(`Invalid bandwidth ${JSON.stringify(s)}: expected ${BANDWIDTH_FORM}.`);
  }
  const value = Number(match[1]);
  const unit = match[2].toLowerCase();
  let prefix: string;
  let bits: boolean;
  if (unit.endsWith("bit")) {
    prefix = unit.slice(0, -3);
    bits = true;
  } else if (unit.endsWith("b")) {
    prefix = unit.slice(0, -1);
    bits = false;
  } else {
    throw new RangeError(
      `Invalid bandwidth ${JSON.stringify(s)}: the unit ${JSON.stringify(match[2])} must end with "B" ` +
        `(bytes) or "Bit" (bits); expected ${BANDWIDTH_FORM}.`,
    );
  }
  const multiplier = prefixMultiplier(prefix);
  if (multiplier === undefined || prefix === "t" || prefix === "ti") {
    throw new RangeError(
      `Invalid bandwidth ${JSON.stringify(s)}: unknown unit prefix ${JSON.stringify(prefix)}; ` +
        `expected ${BANDWIDTH_FORM}.`,
    );
  }
  const bytes = bits ? (value * multiplier) / 8 : value * multiplier;
  return Math.floor(bytes);
}

/** Text shown in duration errors. */
export const DURATION_FORM =
  'a duration such as "8 days", "1h 30min", "2weeks", "45s" or "10m" (whole numbers, each followed by a ' +
  "unit: ns, us, ms, s/sec/seconds, m/min/minutes, h/hr/hours, d/days, w/weeks, M/months, y/years)";

const SECOND = 1000;
const DAY = 86_400 * SECOND;

/** Milliseconds per duration unit; the names and the month/year lengths are those of the humantime crate. */
const MS_PER_UNIT: Record<string, number> = {
  nanos: 1e-6,
  nsec: 1e-6,
  ns: 1e-6,
  usec: 1e-3,
  us: 1e-3,
  "\u00b5s": 1e-3,
  millis: 1,
  msec: 1,
  ms: 1,
  seconds: SECOND,
  second: SECOND,
  secs: SECOND,
  sec: SECOND,
  s: SECOND,
  minutes: 60 * SECOND,
  minute: 60 * SECOND,
  mins: 60 * SECOND,
  min: 60 * SECOND,
  m: 60 * SECOND,
  hours: 3600 * SECOND,
  hour: 3600 * SECOND,
  hrs: 3600 * SECOND,
  hr: 3600 * SECOND,
  h: 3600 * SECOND,
  days: DAY,
  day: DAY,
  d: DAY,
  weeks: 7 * DAY,
  week: 7 * DAY,
  w: 7 * DAY,
  // 30.44 days
  months: 2_630_016 * SECOND,
  month: 2_630_016 * SECOND,
  M: 2_630_016 * SECOND,
  // 365.25 days
  years: 31_557_600 * SECOND,
  year: 31_557_600 * SECOND,
  y: 31_557_600 * SECOND,
};

/**
 * Parses a humantime-style duration ("8 days", "1h 30min", "2weeks", "45s", "10m") into milliseconds.
 *
 * The text is a sequence of whole numbers, each followed by a unit; units are case-sensitive like in the
 * humantime crate ("m" is minutes, "M" is months). Sub-millisecond units yield fractional milliseconds.
 *
 * @throws {RangeError} when the text is empty, a number lacks a unit, or a unit is unknown.
 */
export function parseDuration(s: string): number {
  if (s.trim() === "") {
    throw new RangeError(`Invalid duration ${JSON.stringify(s)}: it is empty; expected ${DURATION_FORM}.`);
  }
  // One "<number> <unit>" item; sticky, so that every character must belong to an item.
  const item = /\s*(\d+)\s*([A-Za-z\u00b5]+)\s*/y;
  let total = 0;
  while (item.lastIndex < s.length) {
    const start = item.lastIndex;
    const match = item.exec(s);
    if (match === null) {
      throw new RangeError(
        `Invalid duration ${JSON.stringify(s)}: cannot read ${JSON.stringify(s.slice(start))}; ` +
          `expected ${DURATION_FORM}.`,
      );
    }
    const perUnit = lookup(MS_PER_UNIT, match[2]);
    if (perUnit === undefined) {
      throw new RangeError(
        `Invalid duration ${JSON.stringify(s)}: unknown unit ${JSON.stringify(match[2])}; ` +
          `expected ${DURATION_FORM}.`,
      );
    }
    total += Number(match[1]) * perUnit;
  }
  if (!Number.isFinite(total)) {
    throw new RangeError(`Invalid duration ${JSON.stringify(s)}: the number is too large.`);
  }
  return total;
}

/** Text shown in size errors. */
export const SIZE_FORM =
  'a size such as "50 GiB", "500 MB", "1.5G" or a number of bytes (k, m, g, t count in ' +
  "1000s and ki, mi, gi, ti in 1024s; a trailing B is optional; case does not matter)";

const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i;

/**
 * Parses a size ("50 GiB", "500 MB", "1.5G", "1024") into whole bytes (rounded down).
 *
 * `k`, `m`, `g`, `t` are 1000-based and `ki`, `mi`, `gi`, `ti` are 1024-based (as for bandwidths); a
 * trailing `b` is optional and case does not matter.
 *
 * @throws {RangeError} when the text is not of that form.
 */
export function parseSize(s: string): number {
  const match = SIZE_PATTERN.exec(s);
  if (match === null) {
    throw new RangeError(`Invalid size ${JSON.stringify(s)}: expected ${SIZE_FORM}.`);
  }
  let unit = match[2].toLowerCase();
  if (unit.endsWith("b")) unit = unit.slice(0, -1);
  const multiplier = prefixMultiplier(unit);
  if (multiplier === undefined) {
    throw new RangeError(
      `Invalid size ${JSON.stringify(s)}: unknown unit ${JSON.stringify(match[2])}; expected ${SIZE_FORM}.`,
    );
  }
  const bytes = Math.floor(Number(match[1]) * multiplier);
  if (!Number.isSafeInteger(bytes)) {
    throw new RangeError(`Invalid size ${JSON.stringify(s)}: the number is too large.`);
  }
  return bytes;
}

const BINARY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/**
 * Formats a byte count with binary units for humans: 0 -> "0 B", 1536 -> "1.5 KiB", 53687091200 -> "50 GiB".
 *
 * @throws {RangeError} when `n` is negative or not a finite number.
 */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) {
    throw new RangeError(`Cannot format ${n} as a size: expected a finite number of bytes, at least 0.`);
  }
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < BINARY_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const text = unit === 0 ? String(Math.round(value)) : value.toFixed(1).replace(/\.0$/, "");
  return `${text} ${BINARY_UNITS[unit]}`;
}
