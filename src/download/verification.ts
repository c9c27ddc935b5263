/**
 * What a download's clients may have before its file is verified, and the verification itself: the file against
 * the repository database (size and SHA-256, `download_integrity.ts`) or its content check (`content_check.ts`),
 * with the blame of the mirrors that sent a corrupt one.
 *
 * A file the database describes as small ({@linkcode HOLD_WHOLE_MAX_BYTES} at most: every package signature and
 * small packages) is held back whole until verified, so that a corrupt copy costs its clients nothing but the
 * time to fetch it again from the next mirror; a larger one only its last byte, so that clients have its first
 * bytes at once and a corrupt copy ends their transfer short, never clean.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { ExpectedFile, IntegrityCheck } from "./download_integrity.ts";
import { failedCheck } from "./content_check.ts";
import type { DownloadOptions } from "./download_options.ts";
import type { PartialMeta } from "../cache/cache_store.ts";
import { SYSTEM_TIMERS, type Timers } from "./transfer.ts";

const log = getLogger(["flexo", "download"]);

/**
 * Files the repository database says are at most this large (256 KiB) reach clients only once verified, whole.
 * The cost: a client's first byte comes only after the whole file arrived and was hashed, which at the speed of
 * a mirror or a LAN (10 MB/s and more) is tens of milliseconds at most, for a wait of a round trip anyway. The
 * gain: a mirror that sends it corrupt is passed over for the next one, and its clients never notice (pacman
 * fails a whole transaction on one broken `.sig` transfer). Every `.sig` (a few hundred bytes) is below it;
 * larger packages keep their first bytes flowing at once, where holding megabytes back would be noticed.
 */
export const HOLD_WHOLE_MAX_BYTES = 256 * 1024;

/**
 * The longest a small file is held back whole, from its first request to a mirror (5 s). pacman (curl) gives up on a
 * transfer that brings no byte for 10 s: a small file that takes longer to arrive (a link or mirror under about
 * 50 KiB/s for 256 KiB) is then released as a larger one is, all but its last byte, and a corrupt copy of it
 * fails its clients instead of being fetched again.
 */
export const HOLD_WHOLE_MAX_MS = 5_000;

/** Whether a download of a file described as `expect` holds back all its bytes until it is verified. */
export function holdsWhole(expect: ExpectedFile | undefined): boolean {
  return expect !== undefined && expect.size <= HOLD_WHOLE_MAX_BYTES;
}

/** Whether one download holds its file back whole ({@linkcode holdsWhole}): until {@linkcode HOLD_WHOLE_MAX_MS}. */
export class WholeHold {
  #holds = false;
  #timer: unknown;
  #timers: Timers = SYSTEM_TIMERS;

  /** True while the file is held back whole. */
  get holds(): boolean {
    return this.#holds;
  }

  /** Holds a file described as `expect`, if small, from now on; {@linkcode WholeHold.arm} bounds the hold. */
  start(expect: ExpectedFile | undefined): void {
    this.#holds = holdsWhole(expect);
  }

  /**
   * Ends the hold {@linkcode HOLD_WHOLE_MAX_MS} from now, then calls `onLift`; once, and only while it holds.
   * Called once the first request to a mirror is on its way: a timer made before it would delay a cold miss.
   */
  arm(timers: Timers = SYSTEM_TIMERS, onLift: () => void): void {
    if (!this.#holds || this.#timer !== undefined) return;
    this.#timers = timers;
    this.#timer = timers.setTimer(() => {
      this.#timer = undefined;
      this.#holds = false;
      onLift();
    }, HOLD_WHOLE_MAX_MS);
  }

  /** Cancels the timer (the download ended). */
  stop(): void {
    if (this.#timer !== undefined) this.#timers.clearTimer(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * Whether a download whose announced length is on disk (`written`) matches the database's SHA-256 already, so
 * that its last byte may go out before the mirror's end of stream. Without a SHA-256 (or with a content check)
 * it waits for that end, where a mirror sending more than it announced is caught.
 */
export function verifiedEarly(
  integrity: IntegrityCheck | undefined,
  options: Pick<DownloadOptions, "check" | "upstreamPath">,
  written: number,
): boolean {
  if (integrity === undefined || options.check !== undefined) return false;
  return integrity.mismatch(written, options.upstreamPath) === undefined;
}

/** How far a download is. */
export interface Progress {
  /** Bytes on disk (from offset 0). */
  readonly written: number;
  /** The announced length of the file, once known. */
  readonly total?: number;
}

/** What {@linkcode releasableBytes} follows besides the progress. */
export interface ReleaseRule {
  /** The file is verified (or has no check): every byte on disk may go out. */
  verified: boolean;
  /** The file is held back whole until verified ({@linkcode holdsWhole}). */
  whole: boolean;
}

/**
 * How many bytes (from offset 0) a client whose response ends before byte `end` (by default the file's end) may
 * have: all that are on disk once verified; none of a file held whole; else all but the response's last.
 */
export function releasableBytes(progress: Progress, rule: ReleaseRule, end?: number): number {
  const { written, total } = progress;
  if (rule.verified) return written;
  if (rule.whole) return 0;
  if (total === undefined) return written;
  return Math.max(0, Math.min(written, Math.min(end ?? total, total) - 1));
}

/** The verdict on a complete file: verified, or corrupt, with why and the mirrors whose bytes went into it. */
export type Verdict =
  | { type: "verified" }
  | { type: "corrupt"; reason: string; blamed: readonly string[] };

/** The download whose file {@linkcode verifyFile} looks at. */
export interface FileToVerify extends Progress {
  /** The partial file's path, holding `written` bytes. */
  readonly partialPath: string;
  /** The final path, named to {@linkcode DownloadOptions.onIntegrityFailure}. */
  readonly finalPath: string;
}

/**
 * Verifies a complete file against the database (`integrity`, fed with every byte, when the database describes
 * the file) and the content check. A corrupt one is counted as such (its mirrors' failure, the rejected copy,
 * `onIntegrityFailure`) and logged; the caller discards its bytes. `record` describes the mirror's answer.
 */
export async function verifyFile(
  file: FileToVerify,
  record: Readonly<PartialMeta>,
  integrity: IntegrityCheck | undefined,
  options: Pick<DownloadOptions, "upstreamPath" | "check" | "rejected" | "mirrors" | "onIntegrityFailure">,
): Promise<Verdict> {
  const { upstreamPath, check } = options;
  const checked = { path: file.partialPath, length: file.written, upstreamPath, mirror: record.mirror };
  const mismatch = integrity?.mismatch(file.written, upstreamPath);
  const reason = mismatch ?? (check && await failedCheck(check, checked));
  if (reason === undefined) return { type: "verified" };
  if (!mismatch) options.rejected?.add({ ...checked, lastModified: record.lastModified, total: file.total });
  const blamed = mismatch ? [...integrity!.contributors] : [checked.mirror ?? "upstream"];
  for (const mirror of blamed) options.mirrors.recordFailure(mirror, "sent a corrupt file");
  log.error(reason);
  options.onIntegrityFailure?.({ finalPath: file.finalPath }, reason, blamed);
  return { type: "corrupt", reason, blamed };
}
