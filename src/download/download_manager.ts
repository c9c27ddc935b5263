/**
 * The download manager: exactly one upstream transfer per file at a time. A client asking for a file that is
 * already downloading joins that download instead of starting another.
 *
 * @module
 */

import type { CacheStore } from "../cache/cache_store.ts";
import { Download, type OrderRules } from "./download.ts";
import type { ExpectedFile } from "./download_integrity.ts";
import { checkDatabase, RejectedCopies } from "./content_check.ts";
import type { FileKind } from "../repo/file_kind.ts";
import type { MirrorPool, OrderPurpose } from "../mirrors/mirrors.ts";
import type { RequestTarget } from "../repo/request_path.ts";
import type { TransferDeps, TransferLimits } from "./transfer.ts";
import { sameSecond } from "./snapshot_order.ts";

/** What the manager needs to start downloads. */
export interface DownloadManagerOptions {
  store: CacheStore;
  /** The mirror pool for a target (the official mirrors, or a custom repo's URLs). */
  poolFor: (target: RequestTarget) => MirrorPool;
  /**
   * A source to try before the pool's mirrors for the next download of `target`, if any (a cache peer known to
   * have the file). It is not one of the pool's mirrors, so the pool's counters stay those of its mirrors.
   */
  firstFrom?: (target: RequestTarget) => string | undefined;
  deps: TransferDeps;
  limits: TransferLimits;
  /** Called when a download has committed a complete file to the cache. */
  onComplete?: (download: Download, target: RequestTarget) => void;
  /** What a file must be (from the repository databases), if known; a promise when that takes a moment. */
  expectFor?: (
    target: RequestTarget,
  ) => ExpectedFile | undefined | Promise<ExpectedFile | undefined>;
  /**
   * Called when a download was discarded because it did not match what the databases say, with the mirrors (or
   * cache peers) whose bytes went into it.
   */
  onIntegrityFailure?: (
    download: { readonly finalPath: string },
    reason: string,
    blamed: readonly string[],
  ) => void;
}

/** The rules for each kind of cacheable file. */
export function rulesFor(kind: FileKind): OrderRules {
  switch (kind) {
    case "package":
    case "package_signature":
      return { resumeAcrossMirrors: true, notFoundIsFinal: false, keepPartialOnFailure: true, movesOn: true };
    case "database_signature":
      return {
        resumeAcrossMirrors: false,
        notFoundIsFinal: true,
        keepPartialOnFailure: false,
        movesOn: false,
      };
    default:
      return {
        resumeAcrossMirrors: false,
        notFoundIsFinal: false,
        keepPartialOnFailure: false,
        movesOn: true,
      };
  }
}

/** How mirrors are ordered for a kind of file. */
export function purposeOf(kind: FileKind): OrderPurpose {
  if (kind === "package" || kind === "package_signature") return "package";
  if (kind === "database" || kind === "database_signature") return "database";
  return "other";
}

/** Runs downloads, one per file. */
export class DownloadManager {
  #active = new Map<string, Download>();
  #options: DownloadManagerOptions;
  /** Databases that failed their check, refused when a mirror sends the same copy again. */
  #rejected = new RejectedCopies();
  /** Per cached database: the mirror known to hold that snapshot, and the snapshot's date. */
  #sources = new Map<string, { mirror: string; lastModified: number }>();

  /** @param options The store, mirrors, I/O and limits shared by all downloads. */
  constructor(options: DownloadManagerOptions) {
    this.#options = options;
  }

  /** The download of this file running now, if any. */
  active(target: RequestTarget): Download | undefined {
    const download = this.#active.get(keyOf(target));
    // One that has just ended is no longer joined: a new request deserves a fresh answer from upstream.
    return download && !download.ended ? download : undefined;
  }

  /** All downloads running now. */
  list(): Download[] {
    return [...this.#active.values()];
  }

  /**
   * The mirror known to hold the snapshot of the database `target` dated `lastModified` (the one it was
   * downloaded from, or the last to answer 304 to it), if any.
   */
  databaseSource(target: RequestTarget, lastModified: number): string | undefined {
    const source = this.#sources.get(keyOf(target));
    return source && sameSecond(source.lastModified, lastModified) ? source.mirror : undefined;
  }

  /**
   * The download of this file: the running one, or a new one.
   *
   * @param options `ifModifiedSince` asks upstream only for a newer file (used to revalidate databases); `via`
   *   is the `Via` of the client request that starts it, carried upstream (a running download keeps its own);
   *   `from` asks that mirror only; `pairedWith` is the date of the database snapshot a signature belongs to
   *   ({@linkcode DownloadOptions.pairedWith}); `missing`: the caller has just found the file missing from the
   *   cache (see `DownloadOptions.missing`).
   */
  obtain(
    target: RequestTarget,
    options: {
      ifModifiedSince?: number;
      via?: string;
      from?: string;
      pairedWith?: number;
      missing?: boolean;
    } = {},
  ): Download {
    const key = keyOf(target);
    const running = this.active(target);
    if (running) return running;
    // One that has ended may still be cleaning up its files on disk: the new one waits for it to finish.
    const previous = this.#active.get(key);
    const pool = this.#options.poolFor(target);
    const first = options.from === undefined ? this.#options.firstFrom?.(target) : undefined;
    const plan = () => pool.plan(purposeOf(target.kind));
    const download = new Download({
      segments: target.cacheSegments,
      upstreamPath: target.upstreamPath,
      mirrors: pool,
      plan: () =>
        options.from !== undefined
          ? [options.from]
          : first !== undefined
          ? [first, ...plan().filter((mirror) => mirror !== first)]
          : plan(),
      store: this.#options.store,
      deps: this.#options.deps,
      limits: this.#options.limits,
      rules: rulesFor(target.kind),
      ifModifiedSince: options.ifModifiedSince,
      via: options.via,
      pairedWith: options.pairedWith,
      expect: this.#options.expectFor?.(target),
      // A database is verified by parsing it, as a package by its SHA-256, before it is released and committed.
      check: target.kind === "database" ? checkDatabase : undefined,
      rejected: this.#rejected,
      onIntegrityFailure: this.#options.onIntegrityFailure,
      after: previous?.finished,
      missing: options.missing,
      // Its 304 says only that it caught up with the cache: a better mirror may have a newer snapshot.
      isLagging: (mirror) => pool.snapshotMark(mirror).type === "lagging",
    });
    this.#active.set(key, download);
    download.finished.then(() => {
      if (this.#active.get(key) === download) this.#active.delete(key);
      if (target.kind === "database") this.#noteSource(key, download, options.ifModifiedSince);
      if (download.state === "complete") this.#options.onComplete?.(download, target);
    });
    return download.start();
  }

  /** Remembers which mirror holds the database snapshot the cache has after `download`. */
  #noteSource(key: string, download: Download, ifModifiedSince: number | undefined): void {
    const lastModified = download.state === "complete" ? download.file?.mtime.getTime() : ifModifiedSince;
    if (download.source !== undefined && lastModified !== undefined) {
      this.#sources.set(key, { mirror: download.source, lastModified });
    }
  }

  /** Resolves when every running download has ended. */
  async idle(): Promise<void> {
    while (this.#active.size > 0) {
      await Promise.all([...this.#active.values()].map((d) => d.finished));
    }
  }
}

function keyOf(target: RequestTarget): string {
  return target.cacheSegments.join("/");
}
