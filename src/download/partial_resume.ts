/**
 * Resuming a partial file: where a download picks up (the partial file and its record in the cache), what it
 * asks a mirror for (`Range`, `If-Range` or `If-Modified-Since`), and whether a mirror's answer can continue
 * the bytes already on disk.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { type CacheStore, type PartialMeta, usableRecord } from "../cache/cache_store.ts";
import type { ExpectedFile } from "./download_integrity.ts";
import { parseContentRange } from "./transfer.ts";
import { parseContentLength } from "../http/content_length.ts";

const log = getLogger(["flexo", "download"]);

/** Refuse announced lengths above this: no pacman package or database is this large. */
export const MAX_FILE_SIZE = 64 * 1024 ** 3;

/** How far a download already is. */
export interface Progress {
  /** Bytes of the file on disk (from offset 0). */
  written: number;
  /** Announced length of the whole file, once known. */
  total?: number;
}

/** Where a download starts: its partial record and the bytes already on disk. */
export interface ResumePoint extends Progress {
  /** The record of the partial file; empty when starting from byte 0. */
  meta: PartialMeta;
  /** True when the record was looked for and there is none (neither valid nor invalid). */
  noRecord: boolean;
}

/** What a download is allowed to resume, and what it asks for. */
export interface ResumeOptions {
  /** Bytes from one mirror may continue bytes from another (packages). */
  resumeAcrossMirrors: boolean;
  /** Ask only for a newer file than this (milliseconds since the epoch); such a download never resumes. */
  ifModifiedSince?: number;
}

/** What {@linkcode findResumePoint} compares a partial file with besides its record. */
export interface FindResumeOptions extends ResumeOptions {
  /** The file's size in the repository database, if it lists the file. */
  expectedSize?: number;
}

/**
 * Finds the partial file an earlier download left, if it may be continued: only when bytes may come from any
 * mirror, the request is not conditional, the partial file is not longer than its recorded total, and neither
 * is of another size than the repository database says (`expectedSize`).
 */
export async function findResumePoint(
  store: CacheStore,
  segments: readonly string[],
  options: FindResumeOptions,
): Promise<ResumePoint> {
  if (options.ifModifiedSince !== undefined || !options.resumeAcrossMirrors) {
    return { meta: {}, written: 0, noRecord: false };
  }
  const read = store.readPartialRecord(segments);
  const earlier = usableRecord(read);
  const size = earlier ? await store.partialSize(segments) : 0;
  if (!earlier || size === 0 || (earlier.total !== undefined && size > earlier.total)) {
    return { meta: {}, written: 0, noRecord: read.kind === "missing" };
  }
  const expected = options.expectedSize;
  if (expected !== undefined && (size > expected || (earlier.total ?? expected) !== expected)) {
    // Another file of that name (an earlier build): no mirror's answer can continue it, and kept after every
    // failed answer it would fail every download of the file.
    log.warn(
      "The partial download of {path} ({size} of {total} bytes) is not the file the repository database " +
        "lists ({expected} bytes); it is downloaded again from its first byte",
      { path: segments.join("/"), size, total: earlier.total ?? "unknown", expected },
    );
    return { meta: {}, written: 0, noRecord: false };
  }
  log.info("Resuming {path} from byte {size}", { path: segments.join("/"), size });
  return { meta: earlier, written: size, total: earlier.total, noRecord: false };
}

/**
 * The conditional headers of a request to a mirror: `Range` for the rest of a partial file (with `If-Range`
 * when bytes must come from the same version of the file), else `If-Modified-Since` when asked for; and the
 * client's `Via`, if any.
 */
export function requestHeaders(
  written: number,
  meta: PartialMeta,
  options: ResumeOptions,
  via?: string,
): Headers {
  const headers = new Headers();
  // The client's Via goes upstream, this node's name after it (the fetch adds it): a loop through several
  // tiers (A -> B -> A) then reaches a node that finds its own name (see src/app/loop_guard.ts).
  if (via) headers.set("Via", via);
  if (written > 0) {
    headers.set("Range", `bytes=${written}-`);
    if (!options.resumeAcrossMirrors && meta.lastModified !== undefined) {
      headers.set("If-Range", new Date(meta.lastModified).toUTCString());
    }
  } else if (options.ifModifiedSince !== undefined) {
    headers.set("If-Modified-Since", new Date(options.ifModifiedSince).toUTCString());
  }
  return headers;
}

/** What {@linkcode acceptResponse} needs to know besides the progress. */
export interface AcceptOptions {
  /** The record of the partial file. */
  meta: PartialMeta;
  /** Path of the file on the mirror, for messages and to tell HTML files from error pages. */
  upstreamPath: string;
  /** Bytes from one mirror may continue bytes from another. */
  resumeAcrossMirrors: boolean;
  /** What the repository database says the file is. */
  expect?: ExpectedFile;
}

/** A usable answer: bytes at its start to drop (a 200 to a Range request) and the file's total length. */
export interface Accepted {
  type: "accepted";
  /** Bytes at the start of the body that are on disk already. */
  skip: number;
  /** Length of the whole file, if known. */
  total?: number;
}

/**
 * What a 200 or 206 answer is worth: usable ({@linkcode Accepted}); unusable from this mirror (another may do);
 * or proof that the file changed upstream during the transfer, so that no mirror can continue the bytes on disk.
 */
export type Acceptance = Accepted | Unusable | {
  type: "changed_upstream";
  reason: string;
};

/**
 * An answer that cannot be used from this mirror. `otherLength` when its file is of another length than the
 * bytes on disk were recorded as: if no mirror gives the recorded one, those bytes belong to another file.
 */
export interface Unusable {
  type: "unusable";
  reason: string;
  otherLength?: true;
}

/** Checks a 200 or 206 answer against what is already on disk. */
export function acceptResponse(
  response: Response,
  progress: Progress,
  options: AcceptOptions,
): Acceptance {
  const { written, total } = progress;
  const length = parseContentLength(response.headers.get("content-length"));
  if (length !== undefined && length > MAX_FILE_SIZE) {
    return { type: "unusable", reason: `announced an absurd length of ${length} bytes` };
  }
  const expect = options.expect;
  const announced = response.status === 206
    ? parseContentRange(response.headers.get("content-range"))?.total
    : length;
  if (expect && announced !== undefined && announced !== expect.size) {
    return {
      type: "unusable",
      reason: `announced ${announced} bytes but the repository database says ${expect.size}`,
    };
  }
  const type = response.headers.get("content-type") ?? "";
  if (/^text\/html/i.test(type) && !/\.html?$/i.test(options.upstreamPath)) {
    return { type: "unusable", reason: "sent an HTML page instead of the file" };
  }
  if (response.status === 206) {
    const range = parseContentRange(response.headers.get("content-range"));
    if (!range || range.start !== written) {
      return { type: "unusable", reason: `sent the wrong range (${response.headers.get("content-range")})` };
    }
    const rangeTotal = range.total ?? total;
    if (total !== undefined && rangeTotal !== total) {
      return {
        type: "unusable",
        reason: `announced ${rangeTotal} bytes instead of ${total}`,
        otherLength: true,
      };
    }
    return { type: "accepted", skip: 0, total: rangeTotal };
  }
  // 200: the whole file. Clients may have been told another mirror's length already (it broke off before its
  // first byte): a file of another length is not the one they were promised; one of no length keeps theirs.
  if (written === 0) {
    if (total !== undefined && length !== undefined && length !== total) {
      return { type: "unusable", reason: `announced ${length} bytes instead of ${total}` };
    }
    return { type: "accepted", skip: 0, total: length ?? total };
  }
  if (!options.resumeAcrossMirrors) {
    // If-Range failed: upstream changed the file under us; the bytes already sent cannot be continued.
    return {
      type: "changed_upstream",
      reason: `${options.upstreamPath} changed upstream during the transfer; retry the request`,
    };
  }
  if (
    length === undefined || (options.meta.total !== undefined && length !== options.meta.total) ||
    (total !== undefined && length !== total)
  ) {
    return {
      type: "unusable",
      reason: `ignored the Range request and sent ${length ?? "an unknown number of"} bytes`,
      ...(length !== undefined ? { otherLength: true as const } : {}),
    };
  }
  return { type: "accepted", skip: written, total: length };
}
