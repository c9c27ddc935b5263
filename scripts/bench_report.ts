/**
 * The benchmark's report: what was measured, the figures of issue 6 with their goals (and the pacman rows'),
 * and the table that `scripts/bench.ts` prints.
 *
 * @module
 */

import { median, type WrkResult } from "./bench_tools.ts";
import type { ColdFirstByte, MemorySample, SharedRun } from "./bench_measure.ts";
import type { PacmanMeasured, PacmanRun, PacmanSource } from "./bench_pacman.ts";
import type { ColdDiskMeasured } from "./bench_cold_disk.ts";

const MiB = 1024 * 1024;

/** One row of the table. */
export interface Figure {
  id: string;
  label: string;
  unit: string;
  nginx: number | null;
  flexo: number;
  /** flexo / nginx, where that means something. */
  ratio: number | null;
  goal: string;
  pass: boolean;
  /** Rows compared with fetching straight from the mirror: that figure (the goal is relative to it). */
  direct?: number;
  /** With `direct`: nginx's and flexo's figure minus it. */
  overDirect?: { nginx: number; flexo: number };
}

/** Everything measured, per group (absent when the group was not asked for). */
export interface Measured {
  large?: Record<string, WrkResult[]>;
  small?: Record<string, WrkResult[]>;
  /** The small file rate with nginx's access log and flexo's request log on. */
  smallLogged?: {
    runs: Record<string, WrkResult[]>;
    /** How much each log grew over the runs, bytes. */
    logBytes: Record<string, number>;
    /** Per run, how long the log still grew after wrk ended, ms (waited for before the next run). */
    logSettleMs: Record<string, number[]>;
    /** The logging flexo's peak resident set size (from its start, through its runs), bytes. */
    flexoPeakRssBytes: number;
  };
  memory?: Record<string, MemorySample[]>;
  cold?: ColdFirstByte;
  shared?: Record<string, SharedRun[]>;
  /** Small cached requests during large downloads, the large file in memory and on disk (flexo only). */
  coldDisk?: ColdDiskMeasured;
  /** Milliseconds from spawning flexo to its first cache hit, run by run. */
  startupMs?: number[];
  /** `pacman -Syw` straight from the mirror and through each proxy. */
  pacman?: PacmanMeasured;
  /** The main flexo process's peak resident set size over all the measurements, bytes. */
  flexoLifetimePeakBytes?: number;
  /** The main flexo process's resident set size once both caches were warm, bytes. */
  flexoRssAfterWarmBytes?: number;
  /** The main flexo process's resident set size after each group of figures, bytes. */
  flexoRssAfterBytes?: Record<string, number>;
}

/** The figures of the table from what was measured, each with its goal and whether flexo meets it. */
export function figuresOf(m: Measured): Figure[] {
  const perProxy = <T>(data: Record<string, T[]>, pick: (value: T) => number) => ({
    nginx: median(data.nginx.map(pick)),
    flexo: median(data.flexo.map(pick)),
  });
  const figures: Figure[] = [];
  if (m.large) {
    const value = perProxy(m.large, (r) => r.bytesPerSecond / 1e6);
    const ratio = value.flexo / value.nginx;
    figures.push({
      id: "warm_large_throughput",
      label: "warm large file throughput (16 clients)",
      unit: "MB/s",
      ...value,
      ratio,
      goal: ">= 1.0 x nginx",
      pass: ratio >= 1.0,
    });
  }
  if (m.small) {
    const value = perProxy(m.small, (r) => r.requestsPerSecond);
    const ratio = value.flexo / value.nginx;
    figures.push({
      id: "warm_small_rate",
      label: "warm small file rate (64 clients)",
      unit: "req/s",
      ...value,
      ratio,
      goal: ">= 0.6 x nginx",
      pass: ratio >= 0.6,
    });
  }
  if (m.smallLogged) {
    const value = perProxy(m.smallLogged.runs, (r) => r.requestsPerSecond);
    const ratio = value.flexo / value.nginx;
    figures.push({
      id: "warm_small_rate_logged",
      label: "warm small file rate (64 clients), logs on",
      unit: "req/s",
      ...value,
      ratio,
      goal: ">= 0.6 x nginx",
      pass: ratio >= 0.6,
    });
  }
  if (m.cold) {
    figures.push({
      id: "cold_miss_first_byte_overhead",
      label: "cold miss first byte, proxy - direct",
      unit: "ms",
      nginx: m.cold.overheadMs.nginx,
      flexo: m.cold.overheadMs.flexo,
      ratio: null,
      goal: "<= 5 ms",
      pass: m.cold.overheadMs.flexo <= 5,
    });
  }
  if (m.shared) {
    const upstream = {
      nginx: Math.max(...m.shared.nginx.map((r) => r.upstreamRequests)),
      flexo: Math.max(...m.shared.flexo.map((r) => r.upstreamRequests)),
    };
    const firstByte = perProxy(m.shared, (r) => r.maxFirstByteMs / 1000);
    const doneAfter = perProxy(m.shared, (r) => r.maxDoneAfterFirstMs / 1000);
    figures.push(
      {
        id: "shared_cold_upstream_requests",
        label: "shared cold download: upstream requests",
        unit: "count",
        ...upstream,
        ratio: null,
        goal: "1",
        pass: upstream.flexo === 1,
      },
      {
        id: "shared_cold_first_byte",
        label: "shared cold download: slowest first byte",
        unit: "s",
        ...firstByte,
        ratio: null,
        goal: "< 0.1 s",
        pass: firstByte.flexo < 0.1,
      },
      {
        id: "shared_cold_done_after_first",
        label: "shared cold download: last done after first",
        unit: "s",
        ...doneAfter,
        ratio: null,
        goal: "<= 0.25 s",
        pass: doneAfter.flexo <= 0.25,
      },
    );
  }
  if (m.memory) {
    const value = {
      nginx: Math.max(...m.memory.nginx.map((s) => s.peakBytes)) / MiB,
      flexo: Math.max(...m.memory.flexo.map((s) => s.peakBytes)) / MiB,
    };
    figures.push({
      id: "memory_peak_rss",
      label: "peak RSS, large file, 64 clients",
      unit: "MiB",
      ...value,
      ratio: value.flexo / value.nginx,
      goal: "<= 96 MiB",
      pass: value.flexo <= 96,
    });
  }
  if (m.coldDisk) {
    const { warm, cold, downloads, largeBytes } = m.coldDisk;
    const during = `during ${downloads} downloads of ${Math.round(largeBytes / MiB)} MiB on disk`;
    for (const [id, what, pick] of [["p99", "p99", "p99Ms"], ["max", "max", "maxMs"]] as const) {
      const ratio = cold[pick] / warm[pick];
      figures.push({
        id: `cold_disk_small_${id}`,
        label: `small hit ${what} ${during} (ratio: to in memory)`,
        unit: "ms",
        nginx: null,
        flexo: cold[pick],
        ratio,
        goal: "<= 2 x in memory",
        pass: ratio <= 2,
      });
    }
  }
  if (m.startupMs) {
    const value = median(m.startupMs);
    figures.push({
      id: "startup",
      label: "start-up to first cache hit",
      unit: "ms",
      nginx: null,
      flexo: value,
      ratio: null,
      goal: "<= 300 ms",
      pass: value <= 300,
    });
  }
  if (m.pacman) figures.push(...pacmanFigures(m.pacman));
  return figures;
}

/** Goals of the pacman rows: at most this many seconds slower than pacman straight from the mirror. */
const PACMAN_SLACK = { cold: 0.15, warm: 0.05 };

/** Per `ParallelDownloads` value and phase, quiet and then with the logs on. */
function pacmanFigures(p: PacmanMeasured): Figure[] {
  const figures: Figure[] = [];
  for (const [downloads, phases] of Object.entries(p.parallel)) {
    for (const phase of ["cold", "warm"] as const) {
      const runs = phases[phase];
      const seconds = (source: PacmanSource) => median((runs[source] ?? []).map((r: PacmanRun) => r.seconds));
      const direct = seconds("direct");
      for (const logged of [false, true]) {
        const nginx = seconds(logged ? "nginx_logged" : "nginx");
        const flexo = seconds(logged ? "flexo_logged" : "flexo");
        figures.push({
          id: `pacman_p${downloads}_${phase}${logged ? "_logged" : ""}`,
          label: `pacman -Syw ${p.packages.count} pkgs, ${downloads} parallel, ${phase}${
            logged ? ", logs on" : ""
          }`,
          unit: "s",
          nginx,
          flexo,
          ratio: null,
          goal: `<= direct + ${PACMAN_SLACK[phase]} s`,
          pass: flexo - direct <= PACMAN_SLACK[phase],
          direct,
          overDirect: { nginx: nginx - direct, flexo: flexo - direct },
        });
      }
    }
  }
  return figures;
}

function formatNumber(value: number | null): string {
  if (value === null || Number.isNaN(value)) return "-";
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

/** A figure, and for rows compared with the mirror its difference from it, e.g. `0.512 (+0.031)`. */
function formatCell(value: number | null, direct: number | undefined): string {
  if (direct === undefined || value === null) return formatNumber(value);
  const difference = value - direct;
  return `${formatNumber(value)} (${difference >= 0 ? "+" : ""}${formatNumber(difference)})`;
}

/**
 * The figures as an aligned text table. The column "direct" holds the figure straight from the mirror for the
 * rows compared with it; their nginx and flexo cells add the difference from it in parentheses.
 */
export function table(figures: Figure[]): string {
  const rows = [
    ["figure", "unit", "direct", "nginx", "flexo", "ratio", "goal", "result"],
    ...figures.map((f) => [
      f.label,
      f.unit,
      f.direct === undefined ? "-" : formatNumber(f.direct),
      formatCell(f.nginx, f.direct),
      formatCell(f.flexo, f.direct),
      f.ratio === null ? "-" : `${f.ratio.toFixed(2)} x`,
      f.goal,
      f.pass ? "pass" : "FAIL",
    ]),
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) =>
    r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])))
      .join("  ")
  ).join("\n");
}
