/**
 * What a {@linkcode Download} is given: where the file goes, the mirrors and their order, the limits, and what the
 * file must be.
 *
 * @module
 */

import type { CacheStore } from "../cache/cache_store.ts";
import type { MirrorPool } from "../mirrors/mirrors.ts";
import type { ExpectedFile } from "./download_integrity.ts";
import type { TransferDeps, TransferLimits } from "./transfer.ts";
import type { OrderRules } from "./failover.ts";
import type { ContentCheck, RejectedCopies } from "./content_check.ts";

/** Everything a download needs. */
export interface DownloadOptions {
  /** Safe path segments below the cache directory. */
  segments: readonly string[];
  /** Path appended to each mirror's base URL. */
  upstreamPath: string;
  /** The mirrors to use, and where outcomes are recorded. */
  mirrors: MirrorPool;
  /** Which mirrors to try in which order (from `mirrors.plan(...)`). */
  plan: () => string[];
  store: CacheStore;
  deps: TransferDeps;
  limits: TransferLimits;
  rules: OrderRules;
  /** Ask upstream only for a newer file than this (milliseconds since the epoch). */
  ifModifiedSince?: number;
  /** The `Via` of the client request that started it, carried upstream (see src/app/loop_guard.ts). */
  via?: string;
  /**
   * What the repository database says the file is; a download that does not match is discarded. A promise is
   * awaited before the first request upstream (the database may still be being read).
   */
  expect?: ExpectedFile | Promise<ExpectedFile | undefined>;
  /** Checks the complete file's content before its release (databases must parse); treated like `expect`. */
  check?: ContentCheck;
  /** Copies that failed `check` before, refused from their head on; a failed one is added. */
  rejected?: RejectedCopies;
  /**
   * Called when a download was discarded because it did not match `expect`; `blamed` are the mirrors (or cache
   * peers) whose bytes went into it.
   */
  onIntegrityFailure?: (
    download: { readonly finalPath: string },
    reason: string,
    blamed: readonly string[],
  ) => void;
  /**
   * Resolves when the previous download of the same file has finished: one that has ended (its clients have
   * their answer) may still be removing its partial file, which this one must not have created yet.
   */
  after?: Promise<unknown>;
  /**
   * The date (milliseconds since the epoch) of the database snapshot this file is the signature of: a cached
   * copy counts as this file only when it carries that date, and the file is committed with it (see
   * `src/app/database_signature.ts`). Undefined for every other file.
   */
  pairedWith?: number;
  /**
   * The caller has just found the file missing: unless `after` may have completed it since, the download does
   * not look again (a failed lookup on every miss). Otherwise it looks first and ends at once if it is there.
   */
  missing?: boolean;
  /**
   * Whether a mirror is known to lag: its 304 counts as "unchanged" only when no better mirror answers in the
   * same race. None known when absent.
   */
  isLagging?: (mirror: string) => boolean;
}
