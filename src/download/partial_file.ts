/**
 * The partial file of one download, on disk while its bytes arrive. A new download creates it in the
 * background while the first mirror is being asked ({@linkcode PartialFile.prepare}), so that creating a file
 * (a fraction of a millisecond, more on a busy disk) lies neither before the request to the mirror nor between
 * the mirror's answer and the first bytes for clients, who read the file as it grows.
 *
 * @module
 */

import type { CacheStore } from "../cache/cache_store.ts";

type Opening = { file: Deno.FsFile } | { error: unknown };

/** The open partial file of one download, if any. {@linkcode PartialFile.close} ends it. */
export class PartialFile {
  #store: CacheStore;
  #segments: readonly string[];
  #file?: Deno.FsFile;
  #opening?: Promise<Opening>;

  /** For the download of `segments` in `store`; nothing is opened yet. */
  constructor(store: CacheStore, segments: readonly string[]) {
    this.#store = store;
    this.#segments = segments;
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
   * Forgets the open file without closing it: its new owner closes it (the commit does). Closing a closed file
   * throws, and Deno builds that error with its stack: 50 us of the main thread per download, measured.
   */
  forget(): void {
    this.#file = undefined;
  }

  /** Closes the file (waiting for a creation still running), if open; one the commit closed already is fine. */
  async close(): Promise<void> {
    await this.settle();
    try {
      this.#file?.close();
    } catch {
      // already closed
    }
    this.#file = undefined;
  }
}
