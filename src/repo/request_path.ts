/**
 * Turns the raw path of a client request into a safe description of what is asked for: which kind of file,
 * where it lives in the cache, and which path to request from a mirror.
 *
 * Every path is checked for hostile forms (traversal, encoded separators, control characters, hidden
 * folders, empty segments, bad percent-encoding) before anything else is looked at, so that no later step
 * ever sees a segment that could leave the cache directory.
 *
 * @module
 */

import { classifyFileName, type FileKind } from "../repo/file_kind.ts";
import { HttpError } from "../http/http_error.ts";

/** The result of {@linkcode parseRequestPath}: a request path that passed every safety check. */
export interface RequestTarget {
  /** What the requested file is. Only the first four kinds are cached by the caller. */
  kind: FileKind;
  /**
   * Path segments below the cache directory, e.g. `["core","os","x86_64","zstd-1.5-1-x86_64.pkg.tar.zst"]`
   * or `["custom_repo","archzfs","archzfs","x86_64","zfs-1-1-x86_64.pkg.tar.zst"]`. Every segment is safe
   * (decoded, no `/`, `\`, control characters, not empty, not starting with `.`). For kind `"other"` the
   * segments are informational only: such requests are proxied without caching.
   */
  cacheSegments: string[];
  /**
   * Path to append to a mirror base URL (ending "/"), already percent-encoded, no leading "/".
   * For official repos `"core/os/x86_64/FILE"`; for custom repos the part after `/custom_repo/NAME/`.
   * A directory request keeps its trailing "/". Empty for `/` and for `/custom_repo/NAME/`.
   * Concatenate it to the base (`base + upstreamPath`); do not resolve it with `new URL(upstreamPath, base)`,
   * which would read a first segment such as `big-1:2.0-1-any.pkg.tar.zst` as a URL scheme.
   */
  upstreamPath: string;
  /** Name of the custom repo, or undefined for the official mirrors. */
  customRepo?: string;
  /** Repository name ("core", "extra", ...) when the path has the `/$repo/os/$arch/FILE` shape. */
  repo?: string;
  /** Architecture ("x86_64", ...) when the path has the `/$repo/os/$arch/FILE` shape. */
  arch?: string;
  /** The decoded last segment; empty for `/` and for directory requests (path ending in "/"). */
  fileName: string;
}

/** Options for {@linkcode parseRequestPath}. */
export interface ParseRequestPathOptions {
  /** Names of the configured `[[custom_repo]]` entries, served below `/custom_repo/NAME/`. */
  customRepoNames: ReadonlySet<string> | string[];
}

/** Longest raw request path accepted, in bytes; longer paths are answered with 414. */
export const MAX_PATH_BYTES = 1024;
/** Longest decoded path segment accepted, in bytes (the usual file name limit); longer gives 414. */
export const MAX_SEGMENT_BYTES = 255;

/** The first path segment (and cache folder) of the custom repositories: `/custom_repo/NAME/...`. */
export const CUSTOM_REPO_PREFIX = "custom_repo";

/** Characters a request path may never contain raw: C0 controls, DEL, backslash, `?`, `#` and space. */
// deno-lint-ignore no-control-regex
const FORBIDDEN_RAW_RE = /[\x00-\x1f\x7f\\?# ]/;
/** Control characters (C0, DEL and C1) refused after decoding too. */
// deno-lint-ignore no-control-regex
const CONTROL_RE = /[\x00-\x1f\x7f-\x9f]/;
/** Percent-encodings of `.`, `/`, `\` and NUL, which would hide traversal from the checks. */
const FORBIDDEN_ENCODED_RE = /%(2e|2f|5c|00)/i;
/** A `%` not followed by two hex digits. */
const BAD_PERCENT_RE = /%(?![0-9a-fA-F]{2})/;

const encoder = new TextEncoder();

/**
 * A path of plain segments, as pacman asks for nearly every file: ASCII letters, digits and `._+:@=,~-`, no
 * segment empty or starting with `.`. Such a path decodes to itself and encodes back to itself (see
 * {@linkcode encodeSegments}), so it needs none of the checks and conversions per segment that cost a cold
 * miss tens of microseconds.
 */
const PLAIN_PATH_RE = /^(?:\/[A-Za-z0-9_+:@=,~-][A-Za-z0-9._+:@=,~-]*)+\/?$/;

/**
 * Checks and interprets the raw path of a request.
 *
 * `rawPathname` must be the path exactly as the client sent it (the part of the request target before `?`),
 * NOT a path that went through URL normalisation: WHATWG URL parsing resolves `..` and `%2e%2e` and turns `\`
 * into `/`, which would hide hostile requests from these checks.
 *
 * Cacheable shapes are `/$repo/os/$arch/FILE` (exactly four segments) and `/custom_repo/NAME/PATH...` where
 * NAME is a configured custom repo. Any other well-formed path (`/lastsync`, `/iso/latest/sha256sums.txt`,
 * the directory listing `/core/os/x86_64/`) gives kind `"other"`, which the caller proxies without caching.
 * The root path `/` gives kind `"other"` with empty `cacheSegments`, empty `upstreamPath` and empty
 * `fileName`: the caller answers it with its status page.
 *
 * @throws {HttpError} 414 when the path is longer than {@linkcode MAX_PATH_BYTES} bytes or a decoded segment
 *   longer than {@linkcode MAX_SEGMENT_BYTES} bytes; 400 for every hostile or malformed form; 404 for
 *   `/custom_repo/NAME/...` when NAME is not configured.
 *
 * @example
 * ```ts
 * const target = parseRequestPath("/core/os/x86_64/big-1%3A2.0-1-x86_64.pkg.tar.zst", { customRepoNames: [] });
 * // target.kind === "package", target.fileName === "big-1:2.0-1-x86_64.pkg.tar.zst"
 * // target.upstreamPath === "core/os/x86_64/big-1:2.0-1-x86_64.pkg.tar.zst"
 * ```
 */
export function parseRequestPath(rawPathname: string, options: ParseRequestPathOptions): RequestTarget {
  const { segments, isDirectory, plain } = splitSafely(rawPathname);
  if (segments.length === 0) {
    return { kind: "other", cacheSegments: [], upstreamPath: "", fileName: "" };
  }
  const trailing = isDirectory ? "/" : "";
  const fileName = isDirectory ? "" : segments[segments.length - 1];

  if (segments[0] === CUSTOM_REPO_PREFIX) {
    return parseCustomRepoPath(segments, { isDirectory, customRepoNames: options.customRepoNames });
  }

  if (segments.length === 4 && segments[1] === "os" && !isDirectory) {
    return {
      kind: classifyFileName(fileName),
      cacheSegments: segments,
      upstreamPath: plain ? rawPathname.slice(1) : encodeSegments(segments),
      repo: segments[0],
      arch: segments[2],
      fileName,
    };
  }

  return {
    kind: "other",
    cacheSegments: segments,
    upstreamPath: encodeSegments(segments) + trailing,
    fileName,
  };
}

/**
 * Splits a raw path into decoded, checked segments; throws HttpError for anything hostile. `plain` when the path
 * is its segments as they are (see {@linkcode PLAIN_PATH_RE}).
 */
function splitSafely(rawPathname: string): { segments: string[]; isDirectory: boolean; plain: boolean } {
  if (
    typeof rawPathname === "string" && rawPathname.length <= MAX_PATH_BYTES && PLAIN_PATH_RE.test(rawPathname)
  ) {
    const isDirectory = rawPathname.endsWith("/");
    const segments = rawPathname.slice(1, isDirectory ? -1 : undefined).split("/");
    if (segments.every((segment) => segment.length <= MAX_SEGMENT_BYTES)) {
      return { segments, isDirectory, plain: true };
    }
  }
  if (typeof rawPathname !== "string" || !rawPathname.isWellFormed()) {
    throw badRequest("the request path is not a well-formed string");
  }
  if (encoder.encode(rawPathname).length > MAX_PATH_BYTES) {
    throw new HttpError(
      414,
      `Request path is longer than ${MAX_PATH_BYTES} bytes; no pacman repository uses such long paths.`,
    );
  }
  if (!rawPathname.startsWith("/")) {
    throw badRequest("the path must start with '/' (absolute URLs and '*' are not accepted)");
  }
  const forbidden = FORBIDDEN_RAW_RE.exec(rawPathname);
  if (forbidden) {
    throw badRequest(`the path contains the forbidden character ${JSON.stringify(forbidden[0])}`);
  }
  if (rawPathname === "/") return { segments: [], isDirectory: true, plain: false };

  const isDirectory = rawPathname.endsWith("/");
  const body = rawPathname.slice(1, isDirectory ? -1 : undefined);
  return { segments: body.split("/").map(decodeSegment), isDirectory, plain: false };
}

/** Decodes and checks one raw path segment. */
function decodeSegment(raw: string): string {
  if (raw === "") {
    throw badRequest("the path contains an empty segment ('//'); remove the duplicate slashes");
  }
  if (FORBIDDEN_ENCODED_RE.test(raw)) {
    throw badRequest("the path contains a percent-encoded '.', '/', '\\' or NUL (%2e, %2f, %5c, %00)");
  }
  if (BAD_PERCENT_RE.test(raw)) {
    throw badRequest("the path contains a '%' that is not followed by two hex digits");
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw badRequest("the path's percent-encoding does not decode to valid UTF-8");
  }
  if (encoder.encode(decoded).length > MAX_SEGMENT_BYTES) {
    throw new HttpError(
      414,
      `A path segment is longer than ${MAX_SEGMENT_BYTES} bytes, the file name limit.`,
    );
  }
  if (CONTROL_RE.test(decoded)) {
    throw badRequest("the path contains a control character");
  }
  if (decoded.includes("/") || decoded.includes("\\")) {
    throw badRequest("a path segment decodes to a '/' or '\\'"); // unreachable after the checks above
  }
  if (decoded === "." || decoded === "..") {
    throw badRequest("the path contains a '.' or '..' segment");
  }
  if (decoded.startsWith(".")) {
    throw badRequest("a path segment starts with '.'; hidden files are never served");
  }
  return decoded;
}

/** Interprets `/custom_repo/NAME/...` once the segments are known to be safe. */
function parseCustomRepoPath(
  segments: string[],
  options: { isDirectory: boolean; customRepoNames: ReadonlySet<string> | string[] },
): RequestTarget {
  const name = segments[1];
  const names: ReadonlySet<string> = Array.isArray(options.customRepoNames)
    ? new Set(options.customRepoNames)
    : options.customRepoNames;
  if (name === undefined || !names.has(name)) {
    const what = name === undefined ? "The path names no custom repo" : `No custom repo named "${name}"`;
    const configured = names.size === 0 ? "none" : [...names].map((n) => `"${n}"`).join(", ");
    throw new HttpError(
      404,
      `${what} is configured (configured: ${configured}). To serve one, add to flexo.toml:\n` +
        `[[custom_repo]]\n    name = "NAME"\n    url = "https://example.org/path"\n` +
        "and point pacman.conf at Server = http://FLEXO_HOST:7878/custom_repo/NAME/$repo/$arch",
    );
  }
  const rest = segments.slice(2);
  const fileName = options.isDirectory || rest.length === 0 ? "" : rest[rest.length - 1];
  const trailing = options.isDirectory && rest.length > 0 ? "/" : "";
  return {
    kind: options.isDirectory || rest.length === 0 ? "other" : classifyFileName(fileName),
    cacheSegments: segments,
    upstreamPath: encodeSegments(rest) + trailing,
    customRepo: name,
    fileName,
  };
}

/** Percent-encodes each segment, keeping `:`, `+`, `@`, `=`, `,` and `~` literal as mirrors store them. */
function encodeSegments(segments: string[]): string {
  return segments.map((segment) =>
    encodeURIComponent(segment)
      .replaceAll("%3A", ":")
      .replaceAll("%2B", "+")
      .replaceAll("%40", "@")
      .replaceAll("%3D", "=")
      .replaceAll("%2C", ",")
  ).join("/");
}

function badRequest(reason: string): HttpError {
  return new HttpError(400, `Bad request path: ${reason}.`);
}
