/**
 * `GET /metrics`: the proxy's counters in the Prometheus text exposition format (version 0.0.4), built with
 * prom-client. Every value is read from the live state when scraped; nothing is counted twice.
 *
 * @module
 */

import { Counter, Gauge, Registry } from "prom-client";
import type { MirrorStats } from "../mirrors/mirrors.ts";
import type { PrefetchSummary, StatusOptions, StatusSource } from "./status_source.ts";
import { VERSION } from "../version.ts";
import { redactedRanking } from "./status_report.ts";

/** What the metrics are read from: parts of the running proxy (app.ts's `FlexoApp` has them). */
export type MetricsSource = Pick<
  StatusSource,
  "pool" | "customPools" | "downloads" | "stats" | "startedAt" | "nodeName" | "outage"
>;

/**
 * Options for {@linkcode createMetrics}: the clock, for the uptime, and the cache's size (without it the
 * cache size metrics are left out).
 */
export type MetricsOptions = StatusOptions;

/** A metrics registry bound to one app. */
export interface Metrics {
  /** The `Content-Type` of {@linkcode Metrics.render}'s text. */
  contentType: string;
  /** The current values in the text format. */
  render(): Promise<string>;
}

/** Counter labels used for request results: the proxy's own words, lower-cased with underscores. */
export function resultLabel(result: string): string {
  return result.toLowerCase().replace(/[^a-z0-9]+/g, "_");
}

/** Builds the metrics of one app in their own registry (so several apps in one process do not mix). */
export function createMetrics(app: MetricsSource, options: MetricsOptions): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const mirrors = (): { pool: string; mirror: MirrorStats }[] => [
    ...redactedRanking(app.pool.snapshot()).map((mirror) => ({ pool: "official", mirror })),
    ...[...app.customPools].flatMap(([name, pool]) =>
      redactedRanking(pool.snapshot()).map((mirror) => ({ pool: `custom_repo/${name}`, mirror }))
    ),
  ];

  new Counter({
    name: "flexo_requests_total",
    help: "Requests answered, by result (cache_hit, cache_miss, joined_download, not_found, ...).",
    labelNames: ["result"],
    registers,
    collect() {
      this.reset();
      for (const [result, count] of app.stats.requests) this.inc({ result: resultLabel(result) }, count);
    },
  });
  new Counter({
    name: "flexo_log_lines_dropped_total",
    help: "Log lines dropped because the log's output (stderr) could not keep up.",
    registers,
    collect() {
      this.reset();
      this.inc(options.logDropped?.() ?? 0);
    },
  });
  new Counter({
    name: "flexo_served_bytes_total",
    help:
      "Body bytes sent to clients, by origin: cache (cached files, databases served stale while the mirrors " +
      "fail, and a download another client started: bytes that did not cross the internet for this client) " +
      "or upstream (live downloads and passed-through files).",
    labelNames: ["origin"],
    registers,
    collect() {
      this.reset();
      this.inc({ origin: "cache" }, app.stats.bytesFromCache);
      this.inc({ origin: "upstream" }, app.stats.bytesFromUpstream);
    },
  });
  for (
    const [name, help, value] of [
      ["flexo_prefetch_runs_total", "Prefetch runs that ended.", (p: PrefetchSummary) => p.runs],
      [
        "flexo_prefetch_files_total",
        "Files (packages and signatures) downloaded by prefetch.",
        (p: PrefetchSummary) => p.files,
      ],
      ["flexo_prefetch_bytes_total", "Bytes downloaded by prefetch.", (p: PrefetchSummary) => p.bytes],
    ] as const
  ) {
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        const prefetch = options.prefetch?.();
        if (prefetch) this.inc(value(prefetch));
      },
    });
  }
  new Gauge({
    name: "flexo_cache_hit_ratio",
    help:
      "Cache hits divided by GET requests for packages and databases since start (HEAD requests apart; 0 without any).",
    registers,
    collect() {
      this.set(app.stats.hitRatio());
    },
  });
  new Counter({
    name: "flexo_upstream_received_bytes_total",
    help:
      "Bytes received from each upstream mirror (a download's and a probe's when its transfer ends, a passed-through file's as it flows).",
    labelNames: ["pool", "mirror"],
    registers,
    collect() {
      this.reset();
      for (const { pool, mirror } of mirrors()) this.inc({ pool, mirror: mirror.url }, mirror.bytes);
    },
  });
  new Counter({
    name: "flexo_upstream_errors_total",
    help: "Failed transfers from each upstream mirror (timeouts, errors, too slow, bad data).",
    labelNames: ["pool", "mirror"],
    registers,
    collect() {
      this.reset();
      for (const { pool, mirror } of mirrors()) this.inc({ pool, mirror: mirror.url }, mirror.failures);
    },
  });
  new Counter({
    name: "flexo_upstream_transfers_total",
    help: "Completed transfers from each upstream mirror.",
    labelNames: ["pool", "mirror"],
    registers,
    collect() {
      this.reset();
      for (const { pool, mirror } of mirrors()) this.inc({ pool, mirror: mirror.url }, mirror.successes);
    },
  });
  new Gauge({
    name: "flexo_upstream_throughput_bytes_per_second",
    help: "Moving average of the measured throughput of each mirror (only mirrors with a measurement).",
    labelNames: ["pool", "mirror"],
    registers,
    collect() {
      this.reset();
      for (const { pool, mirror } of mirrors()) {
        if (mirror.throughputBps !== undefined) this.set({ pool, mirror: mirror.url }, mirror.throughputBps);
      }
    },
  });
  const pools = () => [
    { pool: "official", budget: app.pool.hedgeBudget, overtakes: app.pool.overtakes },
    ...[...app.customPools].map(([name, pool]) => ({
      pool: `custom_repo/${name}`,
      budget: pool.hedgeBudget,
      overtakes: pool.overtakes,
    })),
  ];
  new Counter({
    name: "flexo_hedged_requests_total",
    help:
      "Hedged requests: a second mirror asked because the first sent no response head within its hedge delay.",
    labelNames: ["pool"],
    registers,
    collect() {
      this.reset();
      for (const { pool, budget } of pools()) this.inc({ pool }, budget.hedges);
    },
  });
  new Counter({
    name: "flexo_hedged_requests_won_total",
    help: "Hedged requests whose mirror answered first, so that its answer was used.",
    labelNames: ["pool"],
    registers,
    collect() {
      this.reset();
      for (const { pool, budget } of pools()) this.inc({ pool }, budget.wins);
    },
  });
  new Counter({
    name: "flexo_overtake_probes_total",
    help: "Probes of the next mirror (a 1 MiB Range request) while a package trickled from another.",
    labelNames: ["pool"],
    registers,
    collect() {
      this.reset();
      for (const { pool, overtakes } of pools()) this.inc({ pool }, overtakes.probes);
    },
  });
  new Counter({
    name: "flexo_overtaken_transfers_total",
    help:
      "Package transfers ended because a probe showed the next mirror at least twice as fast; resumed there.",
    labelNames: ["pool"],
    registers,
    collect() {
      this.reset();
      for (const { pool, overtakes } of pools()) this.inc({ pool }, overtakes.overtaken);
    },
  });
  new Gauge({
    name: "flexo_serving_cached_databases",
    help: "1 while every mirror fails and databases are answered from the cache (stale-if-error), else 0.",
    registers,
    collect() {
      this.set(app.outage.since === undefined ? 0 : 1);
    },
  });
  new Gauge({
    name: "flexo_downloads_in_flight",
    help: "Downloads from upstream into the cache running now.",
    registers,
    collect() {
      this.set(app.downloads.list().length);
    },
  });
  if (options.cacheUsage) {
    const usage = options.cacheUsage;
    new Gauge({
      name: "flexo_cache_size_bytes",
      help: "Bytes in complete files in the cache directory (partial downloads not counted).",
      registers,
      collect() {
        this.set(usage()?.bytes ?? 0);
      },
    });
    new Gauge({
      name: "flexo_cache_files",
      help: "Complete files in the cache directory.",
      registers,
      collect() {
        this.set(usage()?.files ?? 0);
      },
    });
    new Gauge({
      name: "flexo_cache_scan_complete",
      help: "1 once the cache directory has been counted since start; 0 while the size is still partial.",
      registers,
      collect() {
        this.set(usage()?.complete ? 1 : 0);
      },
    });
  }
  new Counter({
    name: "flexo_retention_removed_files_total",
    help: "Files removed by the retention policy or the cache size limit.",
    registers,
    collect() {
      this.reset();
      this.inc(app.stats.retentionRemovals);
    },
  });
  new Counter({
    name: "flexo_retention_freed_bytes_total",
    help: "Bytes freed by the retention policy or the cache size limit.",
    registers,
    collect() {
      this.reset();
      this.inc(app.stats.retentionBytesFreed);
    },
  });
  new Counter({
    name: "flexo_refused_requests_total",
    help:
      "Requests the server refused before answering them (unreadable heads, methods not served, clients " +
      "outside allowed_clients), by status; they have no line in the request log.",
    labelNames: ["status"],
    registers,
    collect() {
      this.reset();
      for (const [status, count] of app.stats.refusedRequests) this.inc({ status: String(status) }, count);
    },
  });
  new Counter({
    name: "flexo_connections_refused_total",
    help:
      "New client connections closed at once because max_connections were open, each answering a request.",
    registers,
    collect() {
      this.reset();
      this.inc(app.stats.refusedConnections);
    },
  });
  new Counter({
    name: "flexo_peer_hits_total",
    help: "Misses of a package or signature found on a cache peer (cache_peers) and taken from it.",
    registers,
    collect() {
      this.reset();
      this.inc(app.stats.peerHits);
    },
  });
  new Counter({
    name: "flexo_peer_loops_total",
    help:
      "Peer lookups a cache peer answered 508 Loop Detected: it has this node's node_name, or is this node.",
    registers,
    collect() {
      this.reset();
      this.inc(app.stats.peerLoops);
    },
  });
  new Counter({
    name: "flexo_integrity_rejections_total",
    help: "Downloads discarded because they did not match the repository database.",
    registers,
    collect() {
      this.reset();
      this.inc(app.stats.integrityRejections);
    },
  });
  new Gauge({
    name: "flexo_uptime_seconds",
    help: "Seconds since the proxy started.",
    registers,
    collect() {
      this.set(Math.max(0, (options.now() - app.startedAt) / 1000));
    },
  });
  new Gauge({
    name: "flexo_start_time_seconds",
    help: "When the proxy started, in seconds since the Unix epoch.",
    registers,
    collect() {
      this.set(app.startedAt / 1000);
    },
  });
  new Gauge({
    name: "flexo_build_info",
    help: "Always 1; the labels say which flexo and which Deno runtime run, and the node's name (node_name).",
    labelNames: ["version", "deno", "node"],
    registers,
    collect() {
      this.set({ version: VERSION, deno: Deno.version.deno, node: app.nodeName }, 1);
    },
  });

  return {
    contentType: registry.contentType,
    render: () => registry.metrics(),
  };
}
