/**
 * Pacman's version ordering (`alpm_pkg_vercmp`), used to decide which cached package versions are newest.
 *
 * A version is `[epoch:]pkgver[-pkgrel]`. Epochs compare first, then versions, then releases (only when both
 * sides have one, so `1.0-1` equals `1.0`). Each part is compared segment by segment: runs of digits compare
 * numerically, runs of letters compare as bytes, a numeric segment beats an alphabetic one, a longer run of
 * separators wins, and a trailing alphabetic segment loses against the end of the string
 * (`1.0a < 1.0 < 1.0.1`).
 *
 * The comparison works on UTF-8 bytes with ASCII character classes, as libalpm does in the C locale.
 *
 * @module
 */

const encoder = new TextEncoder();

/** Compare two package versions the way pacman does: -1 if `a` is older, 0 if equal, 1 if newer. */
export function vercmp(a: string, b: string): number {
  if (a === b) return 0;
  const left = parseEvr(encoder.encode(a));
  const right = parseEvr(encoder.encode(b));
  let result = compareSegments(left.epoch, right.epoch);
  if (result !== 0) return result;
  result = compareSegments(left.version, right.version);
  if (result !== 0) return result;
  if (left.release !== undefined && right.release !== undefined) {
    result = compareSegments(left.release, right.release);
  }
  return result;
}

interface Evr {
  epoch: Uint8Array;
  version: Uint8Array;
  release: Uint8Array | undefined;
}

const COLON = 0x3a;
const DASH = 0x2d;
const ZERO_EPOCH = encoder.encode("0");

/**
 * Split `[epoch:]version[-release]`. The epoch is a leading run of digits followed by a colon (an empty one
 * means 0); the release is whatever follows the last dash after that run of digits.
 */
function parseEvr(evr: Uint8Array): Evr {
  let digitsEnd = 0;
  while (digitsEnd < evr.length && isDigit(evr[digitsEnd])) digitsEnd++;
  const lastDash = evr.lastIndexOf(DASH);
  const dash = lastDash >= digitsEnd ? lastDash : -1;
  const versionEnd = dash === -1 ? evr.length : dash;
  const release = dash === -1 ? undefined : evr.subarray(dash + 1);
  if (digitsEnd < evr.length && evr[digitsEnd] === COLON) {
    const epoch = digitsEnd === 0 ? ZERO_EPOCH : evr.subarray(0, digitsEnd);
    return { epoch, version: evr.subarray(digitsEnd + 1, versionEnd), release };
  }
  return { epoch: ZERO_EPOCH, version: evr.subarray(0, versionEnd), release };
}

/** The segment comparison of librpm's `rpmvercmp` as modified by pacman (separator lengths matter). */
function compareSegments(a: Uint8Array, b: Uint8Array): number {
  if (bytesEqual(a, b)) return 0;
  let one = 0;
  let two = 0;
  while (one < a.length && two < b.length) {
    const separatorStart1 = one;
    const separatorStart2 = two;
    while (one < a.length && !isAlnum(a[one])) one++;
    while (two < b.length && !isAlnum(b[two])) two++;
    if (one >= a.length || two >= b.length) break;
    const separator1 = one - separatorStart1;
    const separator2 = two - separatorStart2;
    if (separator1 !== separator2) return separator1 < separator2 ? -1 : 1;

    const isNumeric = isDigit(a[one]);
    const inSegment = isNumeric ? isDigit : isAlpha;
    let end1 = one;
    let end2 = two;
    while (end1 < a.length && inSegment(a[end1])) end1++;
    while (end2 < b.length && inSegment(b[end2])) end2++;

    // `b` has a segment of the other kind here: numeric segments are newer than alphabetic ones.
    if (end2 === two) return isNumeric ? 1 : -1;

    let segment1 = a.subarray(one, end1);
    let segment2 = b.subarray(two, end2);
    if (isNumeric) {
      segment1 = stripLeadingZeros(segment1);
      segment2 = stripLeadingZeros(segment2);
      if (segment1.length !== segment2.length) return segment1.length > segment2.length ? 1 : -1;
    }
    const result = compareBytes(segment1, segment2);
    if (result !== 0) return result;
    one = end1;
    two = end2;
  }
  const rest1 = one < a.length;
  const rest2 = two < b.length;
  if (!rest1 && !rest2) return 0;
  // Whatever remains decides, except that a remaining alphabetic segment never beats the end of the other.
  if ((!rest1 && !isAlpha(b[two])) || (rest1 && isAlpha(a[one]))) return -1;
  return 1;
}

function isDigit(byte: number): boolean {
  return byte >= 0x30 && byte <= 0x39;
}

function isAlpha(byte: number): boolean {
  return (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
}

function isAlnum(byte: number): boolean {
  return isDigit(byte) || isAlpha(byte);
}

function stripLeadingZeros(segment: Uint8Array): Uint8Array {
  let start = 0;
  while (start < segment.length && segment[start] === 0x30) start++;
  return segment.subarray(start);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && compareBytes(a, b) === 0;
}

/** `strcmp` on two byte strings, reduced to -1, 0 or 1. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  if (a.length === b.length) return 0;
  return a.length < b.length ? -1 : 1;
}
