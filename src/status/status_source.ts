/**
 * What the status routes and the metrics read from the running proxy, stated here so that src/status/ needs
 * nothing from src/app/app.ts: app.ts's `FlexoApp` has all of it and is passed as it is (structural typing),
 * and a test can pass a small stand-in. Each part is narrowed to the members read, all of them read-only.
 *
 * @module
 */

import type { CacheStore } from "../cache/cache_store.ts";
import type { CacheUsageSnapshot } from "../cache/cache_usage.ts";
import type { DownloadManager } from "../download/download_manager.ts";
import type { MirrorPool } from "../mirrors/mirrors.ts";
import type { HedgeBudget } from "../mirrors/hedge_measures.ts";
import type { Stats } from "./stats.ts";

/** The parts of the running proxy that the status page, `GET /status` and `GET /metrics` read. */
export interface StatusSource {
  /** The official mirrors: where their ranking came from and what is known of each. */
  readonly pool: Pick<MirrorPool, "source" | "snapshot"> & HedgeCounts;
  /** The mirrors of each custom repository, by the repository's name. */
  readonly customPools: ReadonlyMap<string, Pick<MirrorPool, "snapshot"> & HedgeCounts>;
  /** The cache, for its directory. */
  readonly store: Pick<CacheStore, "root">;
  /** The downloads running now. */
  readonly downloads: Pick<DownloadManager, "list">;
  /** What the proxy did so far. */
  readonly stats: Stats;
  /** When the proxy started (milliseconds since the epoch). */
  readonly startedAt: number;
  /** This node's name, as it signs requests with `Via` (`node_name`). */
  readonly nodeName: string;
  /** The settings reported: the cache peers of a cluster. */
  readonly config: { readonly cache_peers: readonly string[] };
  /**
   * Stale-if-error's state (`src/app/stale.ts`'s `Outage`): `since` is when databases began to be answered
   * from the cache because every mirror failed, undefined while the mirrors answer.
   */
  readonly outage: { readonly since: number | undefined };
}

/**
 * A pool's hedged requests: how many were started and how many won their race (`src/download/hedge.ts`); and
 * its probes of a next mirror and the transfers they overtook (`src/download/overtake.ts`).
 */
export interface HedgeCounts {
  readonly hedgeBudget: Pick<HedgeBudget, "hedges" | "wins">;
  readonly overtakes: { readonly probes: number; readonly overtaken: number };
}

/** Prefetch's counters and times, as the status page and metrics show them. */
export interface PrefetchSummary {
  enabled: boolean;
  running: boolean;
  runs: number;
  files: number;
  bytes: number;
  lastRunAt?: number;
  nextRunAt?: number;
  lastFetched: string[];
  lastError?: { at: number; message: string };
}

/** How the status routes and the metrics see time and the cache's size. */
export interface StatusOptions {
  /** Clock in milliseconds. */
  now: () => number;
  /** The cache's size, if it is being tracked (see `cache_usage.ts`); without it the size is not reported. */
  cacheUsage?: () => CacheUsageSnapshot | undefined;
  /** What prefetch did so far (see `src/prefetch/prefetcher.ts`); without it prefetch is not reported. */
  prefetch?: () => PrefetchSummary;
  /** Log lines dropped so far because the output could not keep up (see `log_sink.ts`); for `/metrics`. */
  logDropped?: () => number;
}
