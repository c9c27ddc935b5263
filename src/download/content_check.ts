/**
 * Checks of a downloaded file's content beyond its size and SHA-256: a sync database must decompress and parse
 * as one (every tar header checksum, every `desc` entry) before it may be released to clients and committed.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { readRepoDb, UnsupportedDatabaseError } from "../repo/repo_db.ts";
import { describeError } from "../describe_error.ts";

const log = getLogger(["flexo", "download"]);

/**
 * What a content check found: `unchecked` when the file may well be valid but cannot be checked (a database in a
 * compression flexo cannot read); it is then stored as a package that no database lists is.
 */
export type ContentVerdict =
  | { type: "valid" }
  | { type: "unchecked"; reason: string }
  | { type: "invalid"; reason: string };

/** Checks the first `length` bytes of the file at `path` (a complete download before its commit). */
export type ContentCheck = (path: string, length: number) => Promise<ContentVerdict>;

/**
 * Reads a downloaded database file as a pacman sync database: the whole stream is decompressed (the
 * compression's checksum verified), every tar header's checksum and every `desc` entry are checked. A database
 * in a compression that cannot be read here (bzip2, lz4, lzip, xz with a SHA-256 check) is `unchecked`, not
 * invalid: repo-add writes them, and refusing them would refuse every client of such a repository.
 */
export const checkDatabase: ContentCheck = async (path, length) => {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    return { type: "invalid", reason: `could not be read back for its check: ${describeError(error)}` };
  }
  try {
    let left = length;
    const limited = file.readable.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          if (left <= 0) return;
          controller.enqueue(chunk.byteLength > left ? chunk.subarray(0, left) : chunk);
          left -= chunk.byteLength;
        },
      }),
    );
    await readRepoDb(limited);
    return { type: "valid" };
  } catch (error) {
    if (error instanceof UnsupportedDatabaseError) {
      log.warn("{path} is stored unchecked, and its packages are not verified: {reason}", {
        path,
        reason: error.message,
      });
      return { type: "unchecked", reason: error.message };
    }
    return { type: "invalid", reason: `is not a valid pacman database: ${describeError(error)}` };
  }
};

/**
 * Runs `check` on a complete download and says why it failed, as a message for the log and the client, or
 * undefined when the file is valid.
 */
export async function failedCheck(
  check: ContentCheck,
  file: { path: string; length: number; upstreamPath: string; mirror?: string },
): Promise<string | undefined> {
  const verdict = await check(file.path, file.length);
  if (verdict.type !== "invalid") return undefined;
  return `${file.upstreamPath} from ${file.mirror ?? "upstream"} ${verdict.reason}; ` +
    "it was discarded, retry to fetch it from another mirror";
}

/** One copy of a file on one mirror, as its answer's head describes it. */
export interface CopyOnMirror {
  upstreamPath: string;
  mirror?: string;
  lastModified?: number;
  total?: number;
}

/**
 * The copies that failed their content check, remembered (up to `limit`, oldest forgotten first) so that the
 * same corrupt copy from the same mirror is refused from its head on, before any byte reaches a client. A copy
 * without `Last-Modified` cannot be told from a repaired one and is not remembered.
 */
export class RejectedCopies {
  readonly #keys = new Set<string>();
  readonly #limit: number;

  /** @param limit How many copies to remember. */
  constructor(limit = 256) {
    this.#limit = limit;
  }

  /** Remembers a copy that failed its check. */
  add(copy: CopyOnMirror): void {
    const key = keyOf(copy);
    if (key === undefined) return;
    this.#keys.delete(key);
    this.#keys.add(key);
    if (this.#keys.size > this.#limit) this.#keys.delete(this.#keys.values().next().value!);
  }

  /** True when this copy failed its check before. */
  has(copy: CopyOnMirror): boolean {
    const key = keyOf(copy);
    return key !== undefined && this.#keys.has(key);
  }
}

function keyOf(copy: CopyOnMirror): string | undefined {
  if (copy.lastModified === undefined || copy.mirror === undefined) return undefined;
  return JSON.stringify([copy.upstreamPath, copy.mirror, copy.lastModified, copy.total ?? null]);
}
