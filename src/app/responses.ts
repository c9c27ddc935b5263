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
import { FileResponse } from "../http/file_body.ts";
import {
  contentRange,
  ifRangeMatches,
  isNotModified,
  makeEtag,
  parseRange,
  type RangeResult,
  unsatisfiedRange,
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

/** Content type for a file name when upstream did not say. */
export function contentTypeFor(fileName: string): string {
  if (fileName.endsWith(".sig")) return "application/pgp-signature";
  return "application/octet-stream";
}

/** Serves a complete cached file: from memory when it is a {@linkcode HotFile}, else streamed from disk. */
export function serveCachedFile(
  req: Request,
  file: CachedFile | HotFile,
  options: { origin: PayloadOrigin; contentType: string },
): Served {
  const validators = { lastModified: file.mtime, etag: makeEtag(file.size, file.mtime) };
  const headers = cachedFileHeaders(file, options.origin, validators.etag);
  if (isNotModified(req, validators)) {
    return { response: new Response(null, { status: 304, headers }), bytes: 0 };
  }
  headers.push(["Content-Type", options.contentType]);
  const range = ifRangeMatches(req, validators)
    ? parseRange(req.headers.get("range"), file.size)
    : { type: "none" } as RangeResult;
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
 * The headers every answer with a cached file starts with (a 304 has only these): its validators and where it
 * came from. A list of pairs rather than a Headers object: Response copies its headers anyway, and building a
 * Headers first costs a third of the time it takes to answer a small file from memory.
 */
function cachedFileHeaders(file: CachedFile, origin: PayloadOrigin, etag: string): [string, string][] {
  return [
    ["Accept-Ranges", "bytes"],
    ["Last-Modified", file.mtime.toUTCString()],
    ["ETag", etag],
    [ORIGIN_HEADER, origin],
  ];
}

/**
 * The headers of a 200 answer with all of a cached file: exactly those {@linkcode serveCachedFile} sends for a
 * plain GET of it, for the quick path (quick_answers.ts), which answers repeated hits from them.
 */
export function wholeFileHeaders(file: CachedFile, contentType: string): [string, string][] {
  const headers = cachedFileHeaders(file, "Cache", makeEtag(file.size, file.mtime));
  headers.push(["Content-Type", contentType], ["Content-Length", String(file.size)]);
  return headers;
}

/** Serves a file that a download is writing, following it to the end. */
export function serveDownload(
  req: Request,
  download: Download,
  options: { head: DownloadHead; contentType: string; onBytes?: (bytes: number) => void },
): Served {
  const { head } = options;
  const total = download.total ?? head.total;
  const lastModified = head.lastModified !== undefined ? new Date(head.lastModified) : undefined;
  const headers = new Headers({
    "Content-Type": head.contentType && !/^text\/html/i.test(head.contentType)
      ? head.contentType
      : options.contentType,
    "Accept-Ranges": "bytes",
    [ORIGIN_HEADER]: "RemoteMirror",
  });
  if (lastModified) headers.set("Last-Modified", lastModified.toUTCString());
  const validators = { lastModified };
  if (lastModified && isNotModified(req, validators)) {
    headers.delete("Content-Type");
    return { response: new Response(null, { status: 304, headers }), bytes: 0 };
  }
  const range = ifRangeMatches(req, validators)
    ? parseRange(req.headers.get("range"), total)
    : { type: "none" } as RangeResult;
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
    headers.set("Content-Range", contentRange(start, end, total));
  }
  const length = end === Infinity ? undefined : Math.max(0, end - start + 1);
  if (length !== undefined) headers.set("Content-Length", String(length));
  if (req.method === "HEAD" || length === 0) {
    return { response: new Response(null, { status, headers }), bytes: 0 };
  }
  const body = followDownload(download, { start, end }, { onBytes: options.onBytes });
  if (length === undefined || total === undefined) {
    return { response: new Response(body, { status, headers }), bytes: 0 };
  }
  // The server may send the bytes with sendfile as the download writes them (or read the stream).
  const response = new FileResponse(body, { status, headers }, {
    path: download.partialPath,
    start,
    length,
    size: total,
    growing: {
      alternatives: [download.finalPath, download.partialPath],
      releasable: () => download.releasable(),
      changed: () => download.changed(),
      outcome: () => {
        const end = download.outcome();
        if (end.type === "running" || end.type === "complete") return end.type;
        return { failed: end.type === "failed" ? end.reason : "the download ended (not_modified)" };
      },
      onBytes: options.onBytes,
    },
  });
  return { response, bytes: length };
}
