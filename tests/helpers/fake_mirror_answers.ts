/**
 * What the fake mirror answers: a file below its directory (whole, a byte range, or 304 Not Modified), 404,
 * or the replacement answer a fault rule asks for. Sending it, with the body faults, is `fake_mirror_send.ts`.
 *
 * @module
 */

import { join, normalize, sep } from "node:path";
import type { FaultOptions } from "./fake_mirror.ts";
import type { ParsedRequest } from "./fake_mirror_requests.ts";

/** An answer before it is sent. */
export interface MirrorResponse {
  /** HTTP status. */
  status: number;
  /** Response headers other than `Date`, `Server`, `Connection` and `Content-Length`. */
  headers: Record<string, string>;
  /** The body as a file slice or bytes; absent for no body. */
  body?: { file: string; start: number; length: number } | Uint8Array;
}

const encoder = new TextEncoder();
const HTML_ERROR_PAGE =
  "<!DOCTYPE html>\n<html><head><title>Error</title></head><body><h1>Something went wrong" +
  "</h1></body></html>\n";

function textResponse(
  status: number,
  text: string,
  contentType = "text/plain; charset=utf-8",
): MirrorResponse {
  return { status, headers: { "content-type": contentType }, body: encoder.encode(text) };
}

/**
 * What the mirror answers to `request`: the rule's replacement answer (redirect, status, HTML error page) if it
 * has one, else the file below `rootDir` (404 if missing), honouring a single `Range` (unless the rule ignores
 * ranges) and `If-Modified-Since`.
 */
export async function respond(
  rootDir: string,
  request: ParsedRequest,
  path: string | undefined,
  rule: FaultOptions,
): Promise<MirrorResponse> {
  if (request.method !== "GET" && request.method !== "HEAD") {
    return { ...textResponse(405, "method not allowed\n"), headers: { allow: "GET, HEAD" } };
  }
  if (rule.redirectTo !== undefined) {
    const location = new URL(request.target.replace(/^\/+/, ""), rule.redirectTo).href;
    return { status: 302, headers: { location }, body: new Uint8Array() };
  }
  if (rule.status !== undefined) return textResponse(rule.status, `fake mirror status ${rule.status}\n`);
  if (rule.htmlErrorPage) return textResponse(200, HTML_ERROR_PAGE, "text/html; charset=utf-8");
  const file = path === undefined ? undefined : resolveInside(rootDir, path);
  if (!file) return textResponse(400, "bad path\n");
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(file);
  } catch {
    return textResponse(404, "not found\n");
  }
  if (!stat.isFile) return textResponse(404, "not found\n");

  const size = stat.size;
  const mtime = stat.mtime ?? new Date(0);
  const headers: Record<string, string> = {
    "content-type": "application/octet-stream",
    "last-modified": mtime.toUTCString(),
    "accept-ranges": "bytes",
  };
  const since = Date.parse(request.headers["if-modified-since"] ?? "");
  const seconds = Math.floor(mtime.getTime() / 1000);
  const notNewer = rule.modifiedSinceExact
    ? seconds === Math.floor(since / 1000)
    : seconds <= Math.floor(since / 1000);
  if (!Number.isNaN(since) && notNewer) {
    return { status: 304, headers };
  }
  const rangeHeader = request.headers["range"];
  if (rangeHeader !== undefined && !rule.ignoreRange) {
    const range = parseRange(rangeHeader, size);
    if (range === "unsatisfiable") {
      return {
        status: 416,
        headers: { ...headers, "content-range": `bytes */${size}` },
        body: new Uint8Array(),
      };
    }
    if (range) {
      headers["content-range"] = `bytes ${range.start}-${range.end}/${size}`;
      return {
        status: 206,
        headers,
        body: { file, start: range.start, length: range.end - range.start + 1 },
      };
    }
  }
  return { status: 200, headers, body: { file, start: 0, length: size } };
}

/** Maps a decoded URL path to a file below rootDir; undefined for anything that could escape it. */
function resolveInside(rootDir: string, path: string): string | undefined {
  if (!path.startsWith("/") || path.includes("\0") || path.split("/").includes("..")) return undefined;
  const resolved = normalize(join(rootDir, path));
  const root = normalize(rootDir).replace(/\/+$/, "");
  return resolved.startsWith(root + sep) ? resolved : undefined;
}

/** A single byte range, null when the header is not one (ignored), or "unsatisfiable". */
function parseRange(header: string, size: number): { start: number; end: number } | null | "unsatisfiable" {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === "" && match[2] === "")) return null;
  if (match[1] === "") {
    const suffix = Number(match[2]);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (match[2] !== "" && Number(match[2]) < start) return null;
  if (start >= size) return "unsatisfiable";
  return { start, end };
}
