/**
 * The checks and shorthands of configuration values that the schema (config_schema.ts) applies: URLs, lists,
 * addresses and words. Private to src/config.
 *
 * @module
 */

import { z } from "zod";

/** True when `fn` returns without throwing. */
export function succeeds(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch {
    return false;
  }
}

/** True when `s` is an absolute URL whose scheme is one of `protocols` (e.g. "https:") and that has a host. */
export function isUrl(s: string, protocols: string[]): boolean {
  if (!URL.canParse(s)) return false;
  const url = new URL(s);
  return protocols.includes(url.protocol) && (url.protocol === "file:" || url.hostname !== "");
}

/**
 * True unless `s` is a URL whose user name or password has a `%` not followed by two hex digits: flexo decodes
 * them for the mirror's `Authorization` header, and such a one failed every request with "URI malformed".
 */
export function hasDecodableUserinfo(s: string): boolean {
  if (!URL.canParse(s)) return true; // the URL checks say what is wrong with it
  const url = new URL(s);
  return succeeds(() => decodeURIComponent(url.username)) && succeeds(() => decodeURIComponent(url.password));
}

/** True when `s` has no whitespace: `new URL()` takes "http://a/ http://b/" as one URL with `%20` in its path. */
export function hasNoSpace(s: string): boolean {
  return !/\s/.test(s);
}

/** Accepts a single value where a list is expected by wrapping it in a list. */
export function listOf(value: unknown): unknown {
  return typeof value === "string" ? [value] : value;
}

/** Turns a numeric-looking text into a number with `parse`, leaving anything unparsable for the schema to reject. */
export function parsedOrRaw(parse: (s: string) => number): (value: unknown) => unknown {
  return (value) => {
    if (typeof value !== "string") return value;
    try {
      return parse(value);
    } catch {
      return value;
    }
  };
}

/** A bare IP address means exactly that host: "10.0.0.1" becomes "10.0.0.1/32", "::1" becomes "::1/128". */
export function cidrOf(value: unknown): unknown {
  if (typeof value !== "string") return value;
  const trimmed = value.trim();
  if (trimmed.includes("/")) return trimmed;
  if (z.ipv4().safeParse(trimmed).success) return `${trimmed}/32`;
  if (z.ipv6().safeParse(trimmed).success) return `${trimmed}/128`;
  return trimmed;
}

/**
 * A listen address as the Rust flexo accepts it, which binds `format!("{}:{}", listen_ip_address, port)`:
 * "localhost" is read as "127.0.0.1" and a bracketed IPv6 address ("[::]") as the address inside the brackets.
 */
export function listenAddressOf(value: unknown): unknown {
  if (typeof value !== "string") return value;
  const trimmed = value.trim();
  if (trimmed.toLowerCase() === "localhost") return "127.0.0.1";
  const bracketed = /^\[(.*)\]$/.exec(trimmed);
  if (bracketed !== null && z.ipv6().safeParse(bracketed[1]).success) return bracketed[1];
  return trimmed;
}

/** A word of a choice ("auto", "sort", "info") without blanks around it, in lower case. */
export function wordOf(value: unknown): unknown {
  return typeof value === "string" ? value.trim().toLowerCase() : value;
}

/** Lower-cases a log level and reads "warn" as "warning". */
export function logLevelOf(value: unknown): unknown {
  const level = wordOf(value);
  return level === "warn" ? "warning" : level;
}
