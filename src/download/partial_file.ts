/**
 * The partial file of one download, on disk while its bytes arrive. A new download creates it in the
 * background while the first mirror is being asked ({@linkcode PartialFile.prepare}), so that creating a file
 * (a fraction of a millisecond, more on a busy disk) lies neither before the request to the mirror nor between
 * the mirror's answer and the first bytes for clients, who read the file as it grows.
 *
 * The creation starts a turn of the event loop after it is asked for: the request to the mirror leaves only when
 * the turn that made it ends, and starting `Deno.open` (its permission check resolves every directory of the
 * path on the main thread) took 0.13-0.25 ms of that turn on a cold miss (see BENCHMARKS.md, session seven).
 *
 * @module
 */

import type { CacheStore } from "../cache/cache_store.ts";

type Opening = { file: Deno.FsFile } | { error: unknown };

/** Runs a callback in a later turn of the event loop. */
export type Defer = (callback: () => void) => void;

/** The system's {@linkcode Defer}: a timer of 0 ms, which runs after the turn's pending I/O has been started. */
export const NEXT_TURN: Defer = (callback) => {
  setTimeout(callback, 0);
};

/** The open partial file of one download, if any. {@linkcode PartialFile.close} ends it. */
export class PartialFile {
  #store: CacheStore;
  #segments: readonly string[];
  #file?: Deno.FsFile;
  #opening?: Promise<Opening>;
  #defer: Defer;
  /** A creation asked for by prepare() and not started yet; anything that needs the file cancels it. */
  #deferred = false;

  /**
   * For the download of `segments` in `store`; nothing is opened yet.
   *
   * @param defer Starts {@linkcode PartialFile.prepare}'s creation (default {@linkcode NEXT_TURN}).
   */
  constructor(store: CacheStore, segments: readonly string[], defer: Defer = NEXT_TURN) {
    this.#store = store;
    this.#segments = segments;
    this.#defer = defer;
  }

  /** The open file, once {@linkcode PartialFile.open} has returned it (until closed). */
  get file(): Deno.FsFile | undefined {
    return this.#file;
  }

  /**
   * Creates the partial file empty, in the background, from the next turn of the event loop: for a download that
   * has no bytes on disk yet. Whoever may remove the file afterwards must {@linkcode PartialFile.settle} first,
   * or the creation could come after the removal (a creation not started by then never starts). A failure is not
   * reported here: {@linkcode PartialFile.open} then tries again and throws what it meets.
   */
  prepare(): void {
    if (this.#file !== undefined || this.#opening !== undefined || this.#deferred) return;
    this.#deferred = true;
    this.#defer(() => {
      if (!this.#deferred) return;
      this.#deferred = false;
      this.#opening = this.#store.createPartial(this.#segments).then(
        (file) => ({ file }),
        (error) => ({ error }),
      );
    });
  }

  /**
   * Waits for a creation started by {@linkcode PartialFile.prepare}, keeping the file it opened; one asked for
   * but not started yet is called off.
   */
  async settle(): Promise<void> {
    this.#deferred = false;
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

  /** Closes the file (waiting for a creation still running), if open. */
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
