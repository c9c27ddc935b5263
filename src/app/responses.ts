/**
 * Building responses for file bytes: a complete cached file or a download in progress, with `Range`,
 * conditional requests, `HEAD`, and the headers pacman and caches expect.
 *
 * @module
 */

import type { CachedFile, HotFile } from "../cache/cache_store.ts";
import type { Download, DownloadHead } from "../download/download.ts";
import { HttpError } from "../http/http_error.ts";
import { followDownload, readFileRange } from "../download/live_reader.ts";
import { type FileBody, FileResponse } from "../http/file_body.ts";
import type { FileKind } from "../repo/file_kind.ts";
import type { RequestTarget } from "../repo/request_path.ts";
import {
  contentRange,
  evaluatePreconditions,
  ifRangeMatches,
  makeEtag,
  parseRange,
  type RangeResult,
  type RequestFacts,
  unsatisfiedRange,
  type Validators,
} from "../http/range.ts";

/** The header that tells where the payload came from, as flexo names it. */
export const ORIGIN_HEADER = "Flexo-Payload-Origin";

/** Where the payload came from: the cache, or a mirror right now. */
export type PayloadOrigin = "Cache" | "RemoteMirror";

/** A response together with what the request log says about it. */
export interface Served {
  response: Response;
  /** Bytes in the response body. */
  bytes: number;
  /** The cached file the body is read from, if any (it counts as in use until the response is sent). */
  readsFile?: string;
}

/** `Cache-Control` of package files and their signatures: named by version, their bytes never change. */
export const IMMUTABLE = "public, max-age=31536000, immutable";
/** `Cache-Control` of databases and their signatures: they change in place, so caches must ask each time. */
export const REVALIDATE = "no-cache";

/** The `Cache-Control` for downstream caches of a file of `kind`; undefined for files flexo does not cache. */
export function cacheControlFor(kind: FileKind): string | undefined {
  switch (kind) {
    case "package":
    case "package_signature":
      return IMMUTABLE;
    case "database":
    case "database_signature":
      return REVALIDATE;
    default:
      return undefined;
  }
}

/** How a file is described to the client: its content type and what downstream caches may do with it. */
export interface FileHeaders {
  contentType: string;
  /** `Cache-Control` (see {@linkcode cacheControlFor}); none when undefined. */
  cacheControl?: string;
}

/**
 * The range a request asks for, when it applies: only GET has one (RFC 9110 section 14.2: a HEAD answers as
 * without it), and only while `If-Range` holds.
 */
function rangeOf(req: RequestFacts, validators: Validators, size: number | undefined): RangeResult {
  if (req.method !== "GET" || !ifRangeMatches(req, validators)) return { type: "none" };
  return parseRange(req.headers.get("range"), size);
}

/** The 412 answer to a failed `If-Match` or `If-Unmodified-Since`. */
function preconditionFailed(header: "If-Match" | "If-Unmodified-Since"): HttpError {
  return new HttpError(
    412,
    header === "If-Match"
      ? "The file does not match If-Match: it changed, or has no strong ETag yet; fetch it again"
      : "The file was modified after If-Unmodified-Since; fetch it again",
  );
}

/**
 * The content type of a file, from its name: the one every answer with the file says, from the cache or from a
 * running download (a mirror's own, which differs from mirror to mirror, is not passed on).
 */
export function contentTypeFor(fileName: string): string {
  if (fileName.endsWith(".sig")) return "application/pgp-signature";
  return "application/octet-stream";
}

/** The content type and Cache-Control of a file of `target`'s kind (every path that answers a file uses it). */
export function fileHeadersFor(target: RequestTarget): FileHeaders {
  return { contentType: contentTypeFor(target.fileName), cacheControl: cacheControlFor(target.kind) };
}

/** Serves a complete cached file: from memory when it is a {@linkcode HotFile}, else streamed from disk. */
export function serveCachedFile(
  req: RequestFacts,
  file: CachedFile | HotFile,
  options: { origin: PayloadOrigin } & FileHeaders,
): Served {
  const validators = { lastModified: file.mtime, etag: makeEtag(file.size, file.mtime) };
  const headers = cachedFileHeaders(file, options.origin, validators.etag, options.cacheControl);
  const preconditions = evaluatePreconditions(req, validators);
  if (preconditions.type === "failed") throw preconditionFailed(preconditions.header);
  if (preconditions.type === "not_modified") {
    return { response: new Response(null, { status: 304, headers }), bytes: 0 };
  }
  headers.push(["Content-Type", options.contentType]);
  const range = rangeOf(req, validators, file.size);
  if (range.type === "unsatisfiable") {
    throw new HttpError(416, `The requested range is not within the file's ${file.size} bytes`, {
      headers: { "Content-Range": unsatisfiedRange(file.size) },
    });
  }
  let start = 0;
  let end = file.size - 1;
  let status = 200;
  if (range.type === "range") {
    start = range.start;
    end = range.end;
    status = 206;
    headers.push(["Content-Range", contentRange(start, end, file.size)]);
  }
  const length = Math.max(0, end - start + 1);
  headers.push(["Content-Length", String(length)]);
  if (req.method === "HEAD" || length === 0) {
    return { response: new Response(null, { status, headers }), bytes: 0 };
  }
  if ("bytes" in file) {
    return {
      response: new Response(file.bytes.subarray(start, end + 1), { status, headers }),
      bytes: length,
    };
  }
  // The server sends the range its own way (sendfile, or copied); the stream, which opens the file only when read,
  // is for every other reader of the response.
  const body = readFileRange(file.path, { start, end, size: file.size });
  const response = new FileResponse(body, { status, headers }, {
    path: file.path,
    start,
    length,
    size: file.size,
  });
  return { response, bytes: length, readsFile: file.path };
}

/**
 * The headers every answer with a cached file starts with (a 304 has only these, RFC 9110 section 15.4.5): its
 * validators, where it came from and its Cache-Control. A list of pairs rather than a Headers object: Response
 * copies its headers anyway, and building a Headers first costs a third of the time it takes to answer a small
 * file from memory.
 */
function cachedFileHeaders(
  file: CachedFile,
  origin: PayloadOrigin,
  etag: string,
  cacheControl: string | undefined,
): [string, string][] {
  const headers: [string, string][] = [
    ["Accept-Ranges", "bytes"],
    ["Last-Modified", file.mtime.toUTCString()],
    ["ETag", etag],
    [ORIGIN_HEADER, origin],
  ];
  if (cacheControl !== undefined) headers.push(["Cache-Control", cacheControl]);
  return headers;
}

/**
 * The headers of a 200 answer with all of a cached file: exactly those {@linkcode serveCachedFile} sends for a
 * plain GET of it, for the quick path (quick_answers.ts), which answers repeated hits from them.
 */
export function wholeFileHeaders(file: CachedFile, described: FileHeaders): [string, string][] {
  const headers = cachedFileHeaders(file, "Cache", makeEtag(file.size, file.mtime), described.cacheControl);
  headers.push(["Content-Type", described.contentType], ["Content-Length", String(file.size)]);
  return headers;
}

/**
 * The headers every answer with a download's bytes starts with: its content type, where it came from, its date
 * and its Cache-Control. The content type is the file name's (`described`), never the mirror's: the answers
 * once the file is cached say that one, and a file's type must not change with where its bytes come from (nor
 * with the mirror that happened to answer).
 */
function downloadHeaders(head: DownloadHead, described: FileHeaders): [string, string][] {
  const headers: [string, string][] = [
    ["Content-Type", described.contentType],
    ["Accept-Ranges", "bytes"],
    [ORIGIN_HEADER, "RemoteMirror"],
  ];
  if (head.lastModified !== undefined) {
    headers.push(["Last-Modified", new Date(head.lastModified).toUTCString()]);
  }
  if (described.cacheControl !== undefined) headers.push(["Cache-Control", described.cacheControl]);
  return headers;
}

/** Bytes `start` to `start + length` of the file `download` writes, of `total` bytes, as the server follows it. */
function growingBody(
  download: Download,
  range: { start: number; length: number; total: number },
  onBytes: ((bytes: number) => void) | undefined,
): FileBody {
  return {
    path: download.partialPath,
    start: range.start,
    length: range.length,
    size: range.total,
    growing: {
      alternatives: [download.finalPath, download.partialPath],
      // The range's last byte waits for the file's check, as a whole file's does (see Download.releasable).
      releasable: () => download.releasable(range.start + range.length),
      changed: () => download.changed(),
      outcome: () => {
        const end = download.outcome();
        if (end.type === "running" || end.type === "complete") return end.type;
        return { failed: end.type === "failed" ? end.reason : "the download ended (not_modified)" };
      },
      onBytes,
    },
  };
}

/** The answer of {@linkcode wholeDownload}: a 200's headers and the file its body is. */
export interface WholeDownload {
  headers: [string, string][];
  file: FileBody;
}

/**
 * The 200 answer to a plain GET ({@linkcode PLAIN_GET}) of all of a download's file, as {@linkcode serveDownload}
 * makes it, without a `Response` (for the quick path of misses, quick_misses.ts); undefined when its length is
 * not known or 0 (then `serveDownload` answers).
 */
export function wholeDownload(
  download: Download,
  options: { head: DownloadHead; onBytes?: (bytes: number) => void } & FileHeaders,
): WholeDownload | undefined {
  const total = download.total ?? options.head.total;
  if (total === undefined || total === 0) return undefined;
  const headers = downloadHeaders(options.head, options);
  headers.push(["Content-Length", String(total)]);
  return { headers, file: growingBody(download, { start: 0, length: total, total }, options.onBytes) };
}

/** Serves a file that a download is writing, following it to the end. */
export function serveDownload(
  req: RequestFacts,
  download: Download,
  options: { head: DownloadHead; onBytes?: (bytes: number) => void } & FileHeaders,
): Served {
  const { head } = options;
  const total = download.total ?? head.total;
  const lastModified = head.lastModified !== undefined ? new Date(head.lastModified) : undefined;
  const headers = downloadHeaders(head, options);
  const validators = { lastModified };
  const preconditions = evaluatePreconditions(req, validators);
  if (preconditions.type === "failed") throw preconditionFailed(preconditions.header);
  if (preconditions.type === "not_modified") {
    // A 304 describes no body: the same headers without its Content-Type.
    const described = headers.filter(([name]) => name !== "Content-Type");
    return { response: new Response(null, { status: 304, headers: described }), bytes: 0 };
  }
  const range = rangeOf(req, validators, total);
  if (range.type === "unsatisfiable" && total !== undefined) {
    throw new HttpError(416, `The requested range is not within the file's ${total} bytes`, {
      headers: { "Content-Range": unsatisfiedRange(total) },
    });
  }
  let start = 0;
  let end = total === undefined ? Infinity : total - 1;
  let status = 200;
  if (range.type === "range" && total !== undefined) {
    start = range.start;
    end = Math.min(range.end, total - 1);
    status = 206;
    headers.push(["Content-Range", contentRange(start, end, total)]);
  }
  const length = end === Infinity ? undefined : Math.max(0, end - start + 1);
  if (length !== undefined) headers.push(["Content-Length", String(length)]);
  if (req.method === "HEAD" || length === 0) {
    return { response: new Response(null, { status, headers }), bytes: 0 };
  }
  const body = followDownload(download, { start, end }, { onBytes: options.onBytes });
  if (length === undefined || total === undefined) {
    return { response: new Response(body, { status, headers }), bytes: 0 };
  }
  // The server may send the bytes with sendfile as the download writes them (or read the stream).
  const file = growingBody(download, { start, length, total }, options.onBytes);
  return { response: new FileResponse(body, { status, headers }, file), bytes: length };
}
