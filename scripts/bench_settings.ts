/**
 * The settings of a benchmark run (`scripts/bench.ts`), from its command line: how long and how often each
 * figure is measured, the sizes of the test files, and which groups of figures to measure.
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "./bench_proxies.ts";

const MiB = 1024 * 1024;

/** What a benchmark run does. */
export interface Settings {
  /** Only print {@linkcode BENCH_USAGE}. */
  help: boolean;
  quick: boolean;
  runs: number;
  seconds: number;
  threads: number;
  largeBytes: number;
  smallBytes: number;
  ttfbSamples: number;
  sharedRuns: number;
  /** The large cached file of the cold-disk rows, bytes. */
  coldDiskBytes: number;
  /** The package of the large cold download rows (a fast mirror, verified), bytes. */
  coldLargeBytes: number;
  startupRuns: number;
  latencyMs: number;
  rate: number;
  /** Packages `pacman -Syw` downloads in the pacman rows. */
  pacmanPackages: number;
  /** Cold runs (each followed by a warm one) per source and `ParallelDownloads` in the pacman rows. */
  pacmanRuns: number;
  install: boolean;
  out: string;
  /** Which groups of figures to measure. */
  only: Group[];
}

/** The groups of figures, in the order they are measured. */
export const GROUPS = [
  "large",
  "small",
  "memory",
  "cold",
  "shared",
  "colddisk",
  "startup",
  "pacman",
] as const;
/** One group of figures, as `--only` names it. */
export type Group = typeof GROUPS[number];

/** What `deno task bench --help` prints. */
export const BENCH_USAGE =
  "Usage: deno task bench [--quick] [--only GROUP,...] [--runs N] [--seconds S] [--threads N] [--out FILE] " +
  `[--no-install]\nGroups, in the order measured: ${GROUPS.join(", ")}. Writes bench/latest.json by default.`;

/**
 * The settings of a run from its command line (see the module comment of `scripts/bench.ts`): `--quick` makes
 * every file smaller and every count lower; `--only` takes a comma-separated list of {@linkcode GROUPS}.
 *
 * @throws {Error} for an unknown option or group, or a count or duration that is not a positive number.
 */
export function parseSettings(args: string[]): Settings {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      quick: { type: "boolean", default: false },
      runs: { type: "string" },
      seconds: { type: "string" },
      threads: { type: "string", default: "2" },
      out: { type: "string" },
      only: { type: "string" },
      "no-install": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const quick = values.quick;
  const number = (name: string, value: string | undefined, fallback: number) => {
    if (value === undefined) return fallback;
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed <= 0) {
      throw new Error(`--${name} ${value}: expected a positive number`);
    }
    return parsed;
  };
  const only = (values.only ?? GROUPS.join(",")).split(",").map((g) => g.trim()).filter((g) => g !== "");
  for (const group of only) {
    if (!(GROUPS as readonly string[]).includes(group)) {
      throw new Error(`--only ${values.only}: "${group}" is not one of ${GROUPS.join(", ")}`);
    }
  }
  return {
    help: values.help,
    only: only as Group[],
    quick,
    runs: number("runs", values.runs, quick ? 1 : 5),
    seconds: number("seconds", values.seconds, quick ? 1 : 5),
    threads: number("threads", values.threads, 2),
    largeBytes: quick ? 4 * MiB : 50 * MiB,
    smallBytes: 4 * 1024,
    ttfbSamples: quick ? 2 : 21,
    sharedRuns: quick ? 1 : 3,
    coldDiskBytes: quick ? 16 * MiB : 400 * MiB,
    // CPU time is read in 10 ms ticks: nginx fetched 16 MiB within one tick now and then, and measured 0.
    coldLargeBytes: quick ? 64 * MiB : 500 * MiB,
    startupRuns: quick ? 1 : 5,
    latencyMs: 50,
    rate: 20_000_000,
    pacmanPackages: quick ? 10 : 60,
    pacmanRuns: quick ? 1 : 5,
    install: !values["no-install"],
    out: values.out ?? join(REPO_ROOT, "bench", "latest.json"),
  };
}
