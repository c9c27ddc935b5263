/**
 * Checks of a downloaded file's content beyond its size and SHA-256: a sync database must decompress and parse
 * as one (every tar header checksum, every `desc` entry) before it may be released to clients and committed.
 *
 * @module
 */

import { readRepoDb } from "../repo/repo_db.ts";
import { describeError } from "../describe_error.ts";

/** What a content check found. */
export type ContentVerdict = { type: "valid" } | { type: "invalid"; reason: string };

/** Checks the first `length` bytes of the file at `path` (a complete download before its commit). */
export type ContentCheck = (path: string, length: number) => Promise<ContentVerdict>;

/**
 * Reads a downloaded database file as a pacman sync database: the whole stream is decompressed (the
 * compression's checksum verified), every tar header's checksum and every `desc` entry are checked.
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
  if (verdict.type === "valid") return undefined;
  return `${file.upstreamPath} from ${file.mirror ?? "upstream"} ${verdict.reason}; ` +
    "it was discarded, retry to fetch it from another mirror";
}
