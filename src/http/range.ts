/**
 * Byte ranges and conditional requests (RFC 9110 sections 13 and 14) for serving cached files.
 *
 * Only what pacman and curl need: a single byte range (`Range: bytes=a-b`, `bytes=a-`, `bytes=-n`), the
 * `Content-Range` values, `If-Match` / `If-Unmodified-Since` for 412 answers, `If-None-Match` /
 * `If-Modified-Since` for 304 answers, `If-Range` for resumed
 * downloads, and an ETag built from size and modification time. Multiple ranges are never served: such a
 * request gets the whole file with 200, which RFC 9110 allows.
 *
 * @module
 */

import { parseHttpDate } from "./dates.ts";

/** The outcome of {@linkcode parseRange}. */
export type RangeResult =
  /** No `Range` header: serve the whole file with 200. */
  | { type: "none" }
  /** Serve bytes `start` to `end` inclusive with 206. `end` is `Infinity` for `bytes=a-` when the size is unknown. */
  | { type: "range"; start: number; end: number }
  /** Answer 416, with the `Content-Range` value from {@linkcode unsatisfiedRange}. */
  | { type: "unsatisfiable" }
  /** A header that must be ignored (malformed, other unit, several ranges): serve the whole file with 200. */
  | { type: "ignore" };

/** Validators of a stored file, compared against the request's conditional headers. */
export interface Validators {
  /** The file's modification time, sent as `Last-Modified`. */
  lastModified?: Date;
  /** The file's entity tag as sent in the `ETag` header (quoted, optionally with `W/`). */
  etag?: string;
}

/** An int-range or suffix-range: no whitespace inside (RFC 9110 section 14.1.1). */
const RANGE_SPEC_RE = /^(\d*)-(\d*)$/;
/** Optional whitespace (SP and HTAB) at either end. */
const OWS_ENDS_RE = /^[ \t]+|[ \t]+$/g;

/**
 * Parses a `Range` header for a file of `size` bytes (RFC 9110 section 14.2), single range only.
 *
 * - `null` -> `"none"`.
 * - `bytes=a-b`, `bytes=a-`, `bytes=-n` (unit case-insensitive; whitespace only at the ends and around the
 *   list's commas, none inside a range-spec or around `=`; empty list elements skipped) -> `"range"` with `end` clamped to `size - 1`; a suffix longer than the file
 *   selects the whole file.
 * - `a > b`, garbage, another unit, or more than one range -> `"ignore"`.
 * - `a >= size`, or `-0` -> `"unsatisfiable"`. Any other suffix range on an empty file -> `"ignore"` (an empty
 *   selection cannot be expressed as a byte range; 200 with the empty body is right).
 *
 * When `size` is undefined (the file is still downloading and its length is unknown), `bytes=a-b` is returned
 * as is and `bytes=a-` is returned with `end: Infinity`; the caller must bound `end` once it knows the length.
 * Suffix ranges (`bytes=-n`) need the length and give `"ignore"`.
 *
 * @throws {TypeError} when `size` is neither undefined nor a non-negative safe integer (a caller bug).
 */
export function parseRange(header: string | null, size: number | undefined): RangeResult {
  if (size !== undefined && !(Number.isSafeInteger(size) && size >= 0)) {
    throw new TypeError(`parseRange(): size must be a non-negative integer or undefined, got ${size}`);
  }
  if (header === null) return { type: "none" };

  const value = header.replace(OWS_ENDS_RE, "");
  const equals = value.indexOf("=");
  if (equals < 0) return { type: "ignore" };
  // No whitespace around "=": `range-unit "=" range-set`.
  if (value.slice(0, equals).toLowerCase() !== "bytes") return { type: "ignore" };
  // A list: whitespace around its commas, and empty elements, are allowed (RFC 9110 section 5.6.1).
  const specs = value.slice(equals + 1).split(",").map((s) => s.replace(OWS_ENDS_RE, "")).filter((s) =>
    s !== ""
  );
  if (specs.length !== 1) return { type: "ignore" };

  const match = RANGE_SPEC_RE.exec(specs[0]);
  if (!match) return { type: "ignore" };
  const [, first, last] = match;

  if (first === "") {
    if (last === "") return { type: "ignore" };
    return suffixRange(Number(last), size);
  }
  const start = Number(first);
  const end = last === "" ? Infinity : Number(last);
  if (start > end) return { type: "ignore" };
  if (size === undefined) {
    if (!Number.isSafeInteger(start)) return { type: "ignore" };
    return { type: "range", start, end: Number.isSafeInteger(end) ? end : Infinity };
  }
  if (start >= size) return { type: "unsatisfiable" };
  return { type: "range", start, end: Math.min(end, size - 1) };
}

function suffixRange(length: number, size: number | undefined): RangeResult {
  if (size === undefined) return { type: "ignore" };
  if (length === 0) return { type: "unsatisfiable" };
  if (size === 0) return { type: "ignore" };
  return { type: "range", start: Math.max(0, size - length), end: size - 1 };
}

/**
 * The `Content-Range` value of a 206 answer: `"bytes START-END/SIZE"`, or `"bytes START-END/*"` when the size
 * is not known yet.
 *
 * @throws {RangeError} when `start`/`end` are not integers with `0 <= start <= end`, or `end >= size`.
 */
export function contentRange(start: number, end: number, size?: number): string {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || start > end) {
    throw new RangeError(`contentRange(): need integers 0 <= start <= end, got ${start}-${end}`);
  }
  if (size !== undefined && end >= size) {
    throw new RangeError(`contentRange(): end ${end} must be below the size ${size}`);
  }
  return `bytes ${start}-${end}/${size ?? "*"}`;
}

/**
 * The `Content-Range` value of a 416 answer (RFC 9110 section 14.4): `bytes *` immediately followed by
 * `/SIZE`, the asterisk standing for "no range".
 */
export function unsatisfiedRange(size: number): string {
  return `bytes */${size}`;
}

/**
 * Makes a strong entity tag from the file's size and modification time: `"<size hex>-<mtime ms hex>"`.
 *
 * Strong, because a cached file is complete and never rewritten in place (a new download is a new file with
 * a new mtime), so size plus millisecond mtime identifies its bytes; a strong tag also lets `If-Range` work.
 * Only make it for complete files: a file still growing has no stable validator.
 *
 * @throws {TypeError} when `size` is not a non-negative integer or `mtime` is an invalid date.
 */
export function makeEtag(size: number, mtime: Date): string {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new TypeError(`makeEtag(): size must be a non-negative integer, got ${size}`);
  }
  const ms = mtime.getTime();
  if (Number.isNaN(ms)) throw new TypeError("makeEtag(): mtime is an invalid Date");
  return `"${size.toString(16)}-${Math.floor(ms).toString(16)}"`;
}

/** The outcome of {@linkcode evaluatePreconditions}. */
export type PreconditionOutcome =
  /** Answer as asked (with `Range`, if it applies). */
  | { type: "proceed" }
  /** Answer 412 Precondition Failed: the header named did not hold. */
  | { type: "failed"; header: "If-Match" | "If-Unmodified-Since" }
  /** Answer 304 Not Modified (GET and HEAD only). */
  | { type: "not_modified" };

/**
 * What the rules of this module read of a request: its method and headers. A `Request` is one; so is
 * {@linkcode PLAIN_GET}, the request of the quick path for misses (src/app/quick_misses.ts).
 */
export interface RequestFacts {
  readonly method: string;
  readonly headers: { get(name: string): string | null };
}

/** A GET without any header these rules read: no precondition, no range. */
export const PLAIN_GET: RequestFacts = Object.freeze({
  method: "GET",
  headers: Object.freeze({ get: () => null }),
});

/**
 * Evaluates a request's preconditions against a stored file in the order of RFC 9110 section 13.2.2:
 * `If-Match` (strong comparison, `*` matches any file), else `If-Unmodified-Since` (ignored when the file has
 * no modification time or the date is invalid), then `If-None-Match`, else `If-Modified-Since` (see
 * {@linkcode isNotModified}). `If-Range` and `Range` come after, for a `"proceed"`.
 */
export function evaluatePreconditions(req: RequestFacts, validators: Validators): PreconditionOutcome {
  const ifMatch = req.headers.get("if-match");
  if (ifMatch !== null) {
    if (!matchesStrongly(ifMatch, validators)) return { type: "failed", header: "If-Match" };
  } else {
    const ifUnmodifiedSince = req.headers.get("if-unmodified-since");
    const since = parseHttpDate(ifUnmodifiedSince);
    const modified = validators.lastModified?.getTime();
    if (
      since !== undefined && modified !== undefined && !Number.isNaN(modified) &&
      Math.floor(modified / 1000) > Math.floor(since.getTime() / 1000)
    ) {
      return { type: "failed", header: "If-Unmodified-Since" };
    }
  }
  return isNotModified(req, validators) ? { type: "not_modified" } : { type: "proceed" };
}

/** Whether an `If-Match` value holds: `*`, or a list with a tag that equals the file's strong tag. */
function matchesStrongly(ifMatch: string, validators: Validators): boolean {
  if (ifMatch.trim() === "*") return true;
  const own = validators.etag === undefined ? undefined : parseEntityTag(validators.etag.trim());
  if (own === undefined || own.weak) return false;
  return parseEntityTagList(ifMatch).some((tag) => !tag.weak && tag.opaque === own.opaque);
}

/**
 * Whether a GET or HEAD request can be answered with 304 Not Modified (RFC 9110 section 13.2.2).
 *
 * `If-None-Match` takes precedence: when present, `If-Modified-Since` is not looked at. `If-None-Match: *`
 * matches any existing file; otherwise the tags are compared weakly with `validators.etag`.
 * `If-Modified-Since` is compared in whole seconds (HTTP dates have no fractions): not modified when the
 * file's mtime, floored to the second, is not after the given date. Invalid dates are ignored.
 * Other methods always give false (for them a failed precondition is 412, which this module does not decide).
 */
export function isNotModified(req: RequestFacts, validators: Validators): boolean {
  if (req.method !== "GET" && req.method !== "HEAD") return false;

  const ifNoneMatch = req.headers.get("if-none-match");
  if (ifNoneMatch !== null) {
    if (ifNoneMatch.trim() === "*") return true;
    const own = validators.etag === undefined ? undefined : parseEntityTag(validators.etag.trim());
    if (own === undefined) return false;
    return parseEntityTagList(ifNoneMatch).some((tag) => tag.opaque === own.opaque);
  }

  const ifModifiedSince = req.headers.get("if-modified-since");
  if (ifModifiedSince === null || validators.lastModified === undefined) return false;
  const since = parseHttpDate(ifModifiedSince);
  const modified = validators.lastModified.getTime();
  if (since === undefined || Number.isNaN(modified)) return false;
  return Math.floor(modified / 1000) <= Math.floor(since.getTime() / 1000);
}

/**
 * Whether the `If-Range` condition holds, so a `Range` header may be honoured (RFC 9110 section 13.1.5).
 *
 * Absent -> true. An entity tag needs a strong match with `validators.etag` (a weak tag on either side never
 * matches). A date must equal `validators.lastModified` to the second. Anything else (invalid date, missing
 * validator) -> false, meaning: ignore the Range and send the whole file.
 */
export function ifRangeMatches(req: RequestFacts, validators: Validators): boolean {
  const raw = req.headers.get("if-range");
  if (raw === null) return true;
  const value = raw.trim();

  if (value.startsWith('"') || value.startsWith("W/")) {
    const theirs = parseEntityTag(value);
    const own = validators.etag === undefined ? undefined : parseEntityTag(validators.etag.trim());
    if (theirs === undefined || own === undefined || theirs.weak || own.weak) return false;
    return theirs.opaque === own.opaque;
  }

  const date = parseHttpDate(value);
  const modified = validators.lastModified?.getTime();
  if (date === undefined || modified === undefined || Number.isNaN(modified)) return false;
  return Math.floor(modified / 1000) === Math.floor(date.getTime() / 1000);
}

interface EntityTag {
  weak: boolean;
  /** The quoted part, quotes included. */
  opaque: string;
}

/** Parses exactly one entity-tag (`"xyz"` or `W/"xyz"`), or returns undefined. */
function parseEntityTag(value: string): EntityTag | undefined {
  const weak = value.startsWith("W/");
  const opaque = weak ? value.slice(2) : value;
  if (opaque.length < 2 || !opaque.startsWith('"') || opaque.indexOf('"', 1) !== opaque.length - 1) {
    return undefined;
  }
  return { weak, opaque };
}

/**
 * Parses a comma-separated list of entity-tags. Commas may occur inside the quotes, so this scans quote to
 * quote instead of splitting. Malformed members are skipped.
 */
function parseEntityTagList(value: string): EntityTag[] {
  const tags: EntityTag[] = [];
  let i = 0;
  while (i < value.length) {
    const c = value[i];
    if (c === "," || c === " " || c === "\t") {
      i++;
      continue;
    }
    const weak = value.startsWith("W/", i);
    const open = weak ? i + 2 : i;
    if (value[open] === '"') {
      const close = value.indexOf('"', open + 1);
      if (close < 0) break;
      const next = value.slice(close + 1).search(/[^ \t]/);
      const after = next < 0 ? value.length : close + 1 + next;
      if (after === value.length || value[after] === ",") {
        tags.push({ weak, opaque: value.slice(open, close + 1) });
        i = after;
        continue;
      }
    }
    const comma = value.indexOf(",", i);
    if (comma < 0) break;
    i = comma + 1;
  }
  return tags;
}
