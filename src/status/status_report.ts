/**
 * The status report: what `GET /status` answers as JSON, what the status page is filled from, and how it is
 * made from the live state of the proxy.
 *
 * @module
 */

import { redactUrl, redactUrls } from "../redact_url.ts";
import type { DownloadState } from "../download/download.ts";
import type { MirrorStats } from "../mirrors/mirrors.ts";
import type { PrefetchSummary, StatusOptions, StatusSource } from "./status_source.ts";
import type { TrafficSnapshot } from "./traffic_history.ts";
import { VERSION } from "../version.ts";

/** One download in progress, as reported. */
export interface DownloadReport {
  /** Path below the cache directory, e.g. `core/os/x86_64/zstd-1.5.7-1-x86_64.pkg.tar.zst`. */
  path: string;
  /** The mirror sending bytes now; null before one answered. */
  mirror: string | null;
  /** Bytes on disk so far. */
  written: number;
  /** The whole file's length; null while unknown. */
  total: number | null;
  /** Where the download is: waiting for a mirror, receiving bytes, ... */
  state: DownloadState;
  /** When the download started (milliseconds since the epoch). */
  startedAt: number;
  /**
   * Recent speed in bytes per second: over the last 5 s, or since the start for a younger download; null in
   * its first half second.
   */
  bytesPerSecond: number | null;
}

/** A pool's probes of a next mirror while a package trickled, and the transfers they overtook. */
export interface OvertakeCounts {
  probes: number;
  overtaken: number;
}

/** The JSON of `GET /status`. */
export interface StatusReport {
  /** flexo's version. */
  version: string;
  /**
   * This node in a cluster: its name (`node_name`, as in `Via`), its cache peers, and how many missed packages
   * or signatures it took from a peer instead of a mirror.
   */
  node: { name: string; cachePeers: string[]; peerHits: number; peerLoops: number };
  /** The server's clock when the report was made (milliseconds since the epoch). */
  now: number;
  /** When the proxy started (milliseconds since the epoch). */
  startedAt: number;
  /** Seconds since the proxy started, rounded. */
  uptimeSeconds: number;
  /** The cache's size; `bytes` and `files` are null when not tracked, `complete` false while still counting. */
  cache: { directory: string; bytes: number | null; files: number | null; complete: boolean };
  /**
   * Requests answered: by result (`CACHE HIT`, ...) and in all (HEAD requests included), the HEAD requests
   * among them, the GET file requests that the hit ratio counts (`lookups`: HEAD apart), and that ratio.
   */
  requests: {
    byResult: Record<string, number>;
    total: number;
    head: number;
    lookups: number;
    hitRatio: number;
  };
  /**
   * Client connections: `refused` counts new ones closed at once because `max_connections` were open and
   * each was answering a request (the limit is hit: clients see their connections dropped).
   */
  connections: { refused: number };
  /**
   * Requests the server refused before the app saw them, by status (unreadable heads, methods not served,
   * clients outside `allowed_clients`): the request log has no line for them.
   */
  refusedRequests: Record<string, number>;
  /** Body bytes sent to clients from the cache and from upstream (live downloads). */
  served: { fromCacheBytes: number; fromUpstreamBytes: number };
  /** The downloads running now. */
  downloads: DownloadReport[];
  /**
   * Set while every mirror fails and databases are served stale from the cache (stale-if-error): `since` is
   * when that began (milliseconds since the epoch). Null while the mirrors answer.
   */
  servingCachedDatabases: { since: number } | null;
  /**
   * The official mirrors, best first, and where the ranking came from. A mirror's `throughputBps` is the
   * average of its finished transfers, or, before one finished, the speed of its running downloads.
   * `overtakes`: the pool's probes of a next mirror while a package trickled, and the transfers they ended
   * because the next mirror was at least twice as fast (`src/download/overtake.ts`).
   */
  mirrors: { source: string; ranking: MirrorStats[]; overtakes: OvertakeCounts };
  /** The mirrors of each custom repository, and their overtakes as for the official ones. */
  customRepos: { name: string; ranking: MirrorStats[]; overtakes: OvertakeCounts }[];
  /** Files removed and bytes freed by the retention policy or the cache size limit. */
  retention: { removals: number; bytesFreed: number };
  /** Downloads discarded because they did not match the repository database. */
  integrityRejections: number;
  /** The last errors, newest first. */
  recentErrors: { at: number; message: string }[];
  /**
   * Prefetch runs, files and bytes so far, the last and the next run; null when not reported. Of the files the
   * last run fetched, `lastFetched` holds the first {@linkcode LAST_FETCHED_SHOWN} and `lastFetchedCount` says
   * how many there were.
   */
  prefetch: (PrefetchSummary & { lastFetchedCount: number }) | null;
  /** Bytes from the cache and from upstream and requests of the last 24 hours, for the chart. */
  traffic: TrafficSnapshot;
}

/**
 * How many of the files the last prefetch run fetched the report lists: a run of the default 5 GiB budget fetches
 * thousands, and the status page asks for the report every 2 seconds.
 */
export const LAST_FETCHED_SHOWN = 100;

/** What {@linkcode SpeedMeter.sample} needs to know of a download. */
export interface MeteredDownload {
  /** When it started (milliseconds since the epoch). */
  readonly startedAt: number;
  /** Bytes on disk when it started (a resumed partial file). */
  readonly resumedFrom: number;
  /** Bytes on disk now. */
  readonly written: number;
}

/** Measures the recent speed of downloads from how their byte counts change between looks. */
export class SpeedMeter {
  #samples = new WeakMap<object, { at: number; written: number }[]>();
  #windowMs: number;

  /**
   * A meter with no samples yet.
   *
   * @param options `windowMs`: how far back the speed is measured (default 5 s).
   */
  constructor(options: { windowMs?: number } = {}) {
    this.#windowMs = options.windowMs ?? 5_000;
  }

  /**
   * Records the byte count of `download` at `now` and returns its speed in bytes per second: over the last
   * window, or since its start at the first looks (so that a page opened during a transfer shows a speed at
   * once); null in the download's first half second.
   */
  sample(download: MeteredDownload, now: number): number | null {
    let samples = this.#samples.get(download);
    if (!samples) {
      samples = [{ at: download.startedAt, written: download.resumedFrom }];
      this.#samples.set(download, samples);
    }
    const written = download.written;
    const last = samples.at(-1)!;
    if (now - last.at >= 200) samples.push({ at: now, written });
    // Keep the newest sample that is at least a window old as the base, and drop the older ones.
    while (samples.length > 2 && now - samples[1].at >= this.#windowMs) samples.shift();
    const base = samples[0];
    if (now - base.at < 500) return null;
    return Math.max(0, (written - base.written) / ((now - base.at) / 1000));
  }
}

/** The status of the app now, as `GET /status` answers it. */
export function statusReport(
  app: StatusSource,
  options: StatusOptions & { speeds?: SpeedMeter },
): StatusReport {
  const now = options.now();
  const usage = options.cacheUsage?.();
  const byResult = Object.fromEntries(app.stats.requests);
  const lookups = app.stats.lookups();
  const downloads = app.downloads.list().map((d) => ({
    path: d.segments.join("/"),
    mirror: d.mirror === undefined ? null : redactUrl(d.mirror),
    written: d.written,
    total: d.total ?? null,
    state: d.state,
    startedAt: d.startedAt,
    bytesPerSecond: options.speeds?.sample(d, now) ?? null,
  }));
  // Before a mirror's first transfer ends, its throughput is what its running downloads get now.
  const live = new Map<string, number>();
  for (const d of downloads) {
    if (d.mirror !== null && d.bytesPerSecond !== null) {
      live.set(d.mirror, (live.get(d.mirror) ?? 0) + d.bytesPerSecond);
    }
  }
  const withLive = (ranking: MirrorStats[]) =>
    ranking.map((m) =>
      m.throughputBps === undefined && live.has(m.url) ? { ...m, throughputBps: live.get(m.url) } : m
    );
  return {
    version: VERSION,
    node: {
      name: app.nodeName,
      cachePeers: app.config.cache_peers.map(redactUrl),
      peerHits: app.stats.peerHits,
      peerLoops: app.stats.peerLoops,
    },
    now,
    startedAt: app.startedAt,
    uptimeSeconds: Math.max(0, Math.round((now - app.startedAt) / 1000)),
    cache: {
      directory: app.store.root,
      bytes: usage?.bytes ?? null,
      files: usage?.files ?? null,
      complete: usage?.complete ?? false,
    },
    requests: {
      byResult,
      total: Object.values(byResult).reduce((sum, n) => sum + n, 0),
      head: [...app.stats.headRequests.values()].reduce((sum, n) => sum + n, 0),
      lookups: lookups.hits + lookups.misses,
      hitRatio: app.stats.hitRatio(),
    },
    connections: { refused: app.stats.refusedConnections },
    refusedRequests: Object.fromEntries(app.stats.refusedRequests),
    served: { fromCacheBytes: app.stats.bytesFromCache, fromUpstreamBytes: app.stats.bytesFromUpstream },
    downloads,
    servingCachedDatabases: app.outage.since === undefined ? null : { since: app.outage.since },
    mirrors: {
      source: app.pool.source,
      ranking: withLive(redactedRanking(app.pool.snapshot())),
      overtakes: overtakeCounts(app.pool.overtakes),
    },
    customRepos: [...app.customPools].map(([name, pool]) => ({
      name,
      ranking: withLive(redactedRanking(pool.snapshot())),
      overtakes: overtakeCounts(pool.overtakes),
    })),
    /** Files removed and bytes freed by the retention policy or the cache size limit. */
    retention: { removals: app.stats.retentionRemovals, bytesFreed: app.stats.retentionBytesFreed },
    integrityRejections: app.stats.integrityRejections,
    recentErrors: [...app.stats.recentErrors].reverse().map((e) => ({
      at: e.at,
      message: redactUrls(e.message),
    })),
    prefetch: prefetchReport(options.prefetch?.()),
    traffic: app.stats.history.snapshot(),
  };
}

function prefetchReport(summary: PrefetchSummary | undefined): StatusReport["prefetch"] {
  if (summary === undefined) return null;
  const { lastFetched } = summary;
  return {
    ...summary,
    lastFetched: lastFetched.slice(0, LAST_FETCHED_SHOWN),
    lastFetchedCount: lastFetched.length,
  };
}

/** A pool's overtake counters as reported: a copy, holding only the two numbers. */
function overtakeCounts(counts: OvertakeCounts): OvertakeCounts {
  return { probes: counts.probes, overtaken: counts.overtaken };
}

/** Mirrors as shown: their URLs and last errors without passwords (see redact_url.ts). */
export function redactedRanking(ranking: MirrorStats[]): MirrorStats[] {
  return ranking.map((m) => ({
    ...m,
    url: redactUrl(m.url),
    ...(m.lastError ? { lastError: { ...m.lastError, message: redactUrls(m.lastError.message) } } : {}),
  }));
}
