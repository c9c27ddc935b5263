/**
 * The partial file of one download, on disk while its bytes arrive, and its record (what a restart after a
 * crash needs to resume it): created, recorded, then discarded or committed to the cache. A new download
 * creates the file in the background while the first mirror is being asked ({@linkcode PartialFile.prepare}),
 * so that creating a file (a fraction of a millisecond, more on a busy disk) lies neither before the request to
 * the mirror nor between the mirror's answer and the first bytes for clients, who read the file as it grows.
 *
 * @module
 */

import type { CachedFile, CacheStore, PartialMeta } from "../cache/cache_store.ts";
import { getLogger } from "@logtape/logtape";
import { closeQuietly } from "../close_quietly.ts";
import { describeError } from "../describe_error.ts";

const log = getLogger(["flexo", "download"]);

type Opening = { file: Deno.FsFile } | { error: unknown };

/**
 * Bytes on disk before a download writes the record of its partial file (what a restart after a crash needs to
 * resume it). A package of at most this size completes without one (and its commit removes none): the record's
 * synchronous write took 0.19 ms of the main thread per package, between two chunks for the clients (a profile
 * of pacman's 60 cold packages, BENCHMARKS.md, session seven). A crash costs at most this much again; a download
 * that fails writes its record then, whatever its size, when its partial file is kept.
 */
export const RECORD_AFTER_BYTES = 1024 * 1024;

/** The partial file of one download (open, if it is) and its record. {@linkcode PartialFile.close} ends it. */
export class PartialFile {
  #store: CacheStore;
  #segments: readonly string[];
  #file?: Deno.FsFile;
  #opening?: Promise<Opening>;
  #record: PartialMeta = {};
  /** The record is due: written once {@linkcode RECORD_AFTER_BYTES} are on disk, or on a failure. */
  #recordDue = false;
  /** No record of the partial file is on disk: none was found at the start, and none written since. */
  #noRecord = false;

  /** For the download of `segments` in `store`; nothing is opened yet. */
  constructor(store: CacheStore, segments: readonly string[]) {
    this.#store = store;
    this.#segments = segments;
  }

  /** What the record of the file says, or will say once written: the answer of the mirror its bytes are from. */
  get record(): Readonly<PartialMeta> {
    return this.#record;
  }

  /** Takes the record found on disk at the start (`findResumePoint()`); `noRecord` when there was none. */
  resume(found: { meta: PartialMeta; noRecord: boolean }): void {
    this.#record = found.meta;
    this.#noRecord = found.noRecord;
  }

  /** A mirror's answer for the file: the record describes it from now on, and is due. */
  describe(record: PartialMeta): void {
    this.#record = record;
    this.#recordDue = true;
  }

  /**
   * Writes the record, if the file has bytes it does not describe yet: once `written`, the bytes on disk, reach
   * {@linkcode RECORD_AFTER_BYTES}; at once without `written` (a failed download keeping its file).
   *
   * Never throws: a record that cannot be written (a full disk) costs only the resume after a restart, not the
   * download, whose own writes say whether the disk can take its bytes. The record of an earlier answer is then
   * removed (a removal needs no space), so that no restart resumes the file with what another answer said; the
   * file without a record is downloaded again from its first byte, as recovery and resumption treat it.
   *
   * @returns False when the record was due and could not be written: the file cannot be resumed.
   */
  writeRecordIfDue(written?: number): boolean {
    if (!this.#recordDue || (written !== undefined && written < RECORD_AFTER_BYTES)) return true;
    this.#recordDue = false;
    try {
      this.#store.writePartialMeta(this.#segments, this.#record);
      this.#noRecord = false;
      return true;
    } catch (error) {
      log.warn(
        "Cannot write the record of the partial download {path}; it is not resumed after a restart: {error}",
        {
          path: this.#segments.join("/"),
          error: describeError(error),
        },
      );
      this.#noRecord = this.#store.removePartialMetaSync(this.#segments);
      return false;
    }
  }

  /** The open file, once {@linkcode PartialFile.open} has returned it (until closed). */
  get file(): Deno.FsFile | undefined {
    return this.#file;
  }

  /**
   * Starts creating the partial file empty, in the background: for a download that has no bytes on disk yet.
   * Whoever may remove the file afterwards must {@linkcode PartialFile.settle} first, or the creation could
   * come after the removal. A failure is not reported here: {@linkcode PartialFile.open} then tries again and
   * throws what it meets.
   */
  prepare(): void {
    if (this.#file !== undefined || this.#opening !== undefined) return;
    this.#opening = this.#store.createPartial(this.#segments).then(
      (file) => ({ file }),
      (error) => ({ error }),
    );
  }

  /** Waits for a creation started by {@linkcode PartialFile.prepare}, keeping the file it opened. */
  async settle(): Promise<void> {
    const opening = this.#opening;
    if (opening === undefined) return;
    const opened = await opening;
    if (this.#opening !== opening) return;
    this.#opening = undefined;
    if (!("file" in opened)) return;
    if (this.#file === undefined) {
      this.#file = opened.file;
    } else {
      opened.file.close();
    }
  }

  /** The open file: the prepared one, or opened now (emptied when `truncate`, else appended to). */
  async open(options: { truncate: boolean }): Promise<Deno.FsFile> {
    await this.settle();
    this.#file ??= this.#store.openPartial(this.#segments, options);
    return this.#file;
  }

  /**
   * Flushes the complete file to disk (a crash must never leave an unflushed file in the cache) and commits it
   * to the cache with `lastModified`. The commit closes the file, whether it succeeds or not: it is forgotten
   * here without being closed, since closing a closed file throws, and Deno builds that error with its stack
   * (50 us of the main thread per download, measured).
   */
  async commit(lastModified: number | undefined): Promise<CachedFile> {
    const file = await this.open({ truncate: false });
    await file.syncData();
    this.#file = undefined;
    return await this.#store.commit(this.#segments, { lastModified, file, noRecord: this.#noRecord });
  }

  /**
   * Empties the file in place for another mirror's bytes (the ones on disk were corrupt): readers that opened it
   * already (none has read a byte: nothing was released) read the new bytes. The record is removed from the
   * disk, so that no restart resumes the new bytes as the discarded ones' mirror sent them.
   */
  async restart(): Promise<void> {
    const file = await this.open({ truncate: false });
    await file.truncate(0);
    await file.seek(0, Deno.SeekMode.Start);
    this.#record = {};
    this.#recordDue = false;
    this.#noRecord = this.#store.removePartialMetaSync(this.#segments);
  }

  /** Closes and removes the file and its record. */
  async discard(): Promise<void> {
    await this.close();
    await this.#store.discardPartial(this.#segments);
  }

  /** Closes the file (waiting for a creation still running), if open; one the commit closed already is fine. */
  async close(): Promise<void> {
    await this.settle();
    closeQuietly(this.#file);
    this.#file = undefined;
  }
}
