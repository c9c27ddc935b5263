/**
 * The record of a download in progress: a few bytes of JSON beside the partial file (`FILE.meta.json` in the
 * partial folder) with what upstream announced, so that a later request, or the next start, can resume the
 * download. This module is its one owner: the schema, the one writer and the one reader with one set of rules,
 * used by the cache store (to resume) and by start-up recovery (to keep or remove leftovers).
 *
 * The rules: a record is an object whose known fields have the right types; fields it does not know are
 * ignored (records of other versions of flexo stay readable) and any of its fields may be missing (older
 * records have only some of them). Anything else (not JSON, not an object, a field of the wrong type, a
 * total that is not a whole number of bytes, a file that cannot be read) is invalid: the reader says what was
 * wrong, and the partial download is not resumed. Reading never throws.
 *
 * Both read and write are synchronous: a few bytes, answered from the kernel's caches in microseconds, where
 * an asynchronous call hands the work to a thread and back (0.1-0.5 ms on a busy 2-core machine); the record
 * is written between a mirror's answer and the first byte for clients.
 *
 * @module
 */

import { writeAtomicallySync } from "../atomic_write.ts";
import { type PathProbe, statPathProbe } from "./surely_missing.ts";
import { z } from "zod";

/** What is remembered about a download in progress. */
export interface PartialMeta {
  /** Length upstream announced for the whole file, if it did. */
  total?: number;
  /** Upstream `Last-Modified` as milliseconds since the epoch. */
  lastModified?: number;
  /** The mirror the transfer started from. */
  mirror?: string;
}

/** The end of the name of a record: the partial file's name and this. */
export const PARTIAL_RECORD_SUFFIX = ".meta.json";

/** The end of the name of a record being written; one left behind is the trace of an interrupted write. */
export const PARTIAL_RECORD_TMP_SUFFIX = ".tmp";

/** The schema of a record on disk. Unknown fields are dropped, missing ones stay missing. */
export const partialMetaSchema = z.object({
  total: z.int({ error: "expected a whole number of bytes" })
    .nonnegative({ error: "expected a whole number of bytes, 0 or more" })
    .optional(),
  lastModified: z.int({ error: "expected milliseconds since the epoch, a whole number" }).optional(),
  mirror: z.string().optional(),
}, { error: "expected a JSON object" }) satisfies z.ZodType<PartialMeta>;

/** What reading a record found. */
export type PartialRecordRead =
  /** A valid record. */
  | { kind: "found"; meta: PartialMeta }
  /** No record (nor folder) at that path. */
  | { kind: "missing" }
  /** Something that is not a record flexo wrote; `message` says what was wrong and that it is not resumed. */
  | { kind: "invalid"; message: string };

/** True for the name of a record (not of a record being written). */
export function isPartialRecordName(name: string): boolean {
  return name.endsWith(PARTIAL_RECORD_SUFFIX);
}

/**
 * Checks the text of a record against {@linkcode partialMetaSchema}.
 *
 * @param text The content of the record file.
 * @param path Where it was read, for the message.
 */
export function parsePartialRecord(text: string, path: string): PartialRecordRead {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return invalid(path, `not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const parsed = partialMetaSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) =>
      issue.path.length === 0 ? issue.message : `${issue.path.join(".")}: ${issue.message}`
    );
    return invalid(path, problems.join("; "));
  }
  const meta: PartialMeta = {};
  // Only the fields that are there, so that a record reads back equal to what was written.
  for (const [key, value] of Object.entries(parsed.data)) {
    if (value !== undefined) Object.assign(meta, { [key]: value });
  }
  return { kind: "found", meta };
}

/**
 * Reads the record at `path`. Never throws: a record that cannot be read is invalid.
 *
 * @param path The record file (see `CachePaths.recordPath`).
 * @param surelyMissing The cheap "nothing there" check before the read (default {@linkcode statPathProbe}).
 */
export function readPartialRecord(path: string, surelyMissing: PathProbe = statPathProbe): PartialRecordRead {
  // Most downloads have no record to resume from: said without the failed read's error object.
  if (surelyMissing(path)) return { kind: "missing" };
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return { kind: "missing" };
    }
    return invalid(path, `cannot be read (${error instanceof Error ? error.message : String(error)})`);
  }
  return parsePartialRecord(text, path);
}

/**
 * Writes the record at `path` atomically (a temporary file renamed into place, with
 * {@linkcode writeAtomicallySync}), making its folder when it is missing. Only the fields of
 * {@linkcode PartialMeta} are written. Throws what the system throws (a full disk); the temporary file is
 * removed first.
 *
 * Not flushed to the disk (no fsync), deliberately: the record is written on the main thread between a mirror's
 * chunks for the clients (see `RECORD_AFTER_BYTES` in partial_file.ts), where a flush would hold
 * every client of the proxy for as long as the disk takes; and its partial file is not flushed either until its
 * commit, so a flushed record would not make the download any more resumable. What a power loss can leave is
 * a record that is empty or missing: it then reads as invalid (or missing), and the partial download is
 * downloaded again from its first byte. That costs bytes, never a wrong file.
 *
 * @param path The record file (see `CachePaths.recordPath`).
 * @param meta What upstream announced.
 */
export function writePartialRecord(path: string, meta: PartialMeta): void {
  const text = JSON.stringify({
    total: meta.total,
    lastModified: meta.lastModified,
    mirror: meta.mirror,
  });
  writeAtomicallySync(path, text, { temporary: `${path}${PARTIAL_RECORD_TMP_SUFFIX}` });
}

function invalid(path: string, what: string): PartialRecordRead {
  return {
    kind: "invalid",
    message: `${path} is not a valid download record: ${what}. The partial download beside it is not ` +
      "resumed; it is downloaded again from its first byte (nothing to do by hand).",
  };
}
