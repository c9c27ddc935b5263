/**
 * The one parser of `Content-Length` values (RFC 9110 section 8.6), for requests, responses and mirrors' answers.
 *
 * @module
 */

const LENGTH_RE = /^[ \t]*(\d+)[ \t]*$/;

/**
 * A `Content-Length` value as a number: one or more digits (the whitespace around a field value is not part of
 * it), at most `Number.MAX_SAFE_INTEGER`. Undefined when absent or anything else (a sign, a fraction, a list).
 */
export function parseContentLength(value: string | null | undefined): number | undefined {
  if (value === null || value === undefined) return undefined;
  const match = LENGTH_RE.exec(value);
  if (match === null) return undefined;
  const length = Number(match[1]);
  return Number.isSafeInteger(length) ? length : undefined;
}
