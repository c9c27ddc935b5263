/**
 * The benchmark's cold-disk rows (issue 20 part 3): how long small cached requests take while four clients
 * download a large cached file, once with the file in the page cache and once after the page cache was dropped
 * (`sync`, then `echo 1 > /proc/sys/vm/drop_caches`, as root), so that the large file's bytes come from the disk.
 * A server that reads the disk on its event loop stalls the small requests for as long as each read takes. The
 * large file's residency after the drop is checked (`fincore`): a phase whose file stayed in memory is not
 * counted as cold.
 *
 * @module
 */

import { median } from "./bench_tools.ts";

/**
 * Each large download is paced to this many bytes per second (clients on a fast network): four clients as fast
 * as loopback would take both cores of the benchmark's machine from the server, and the figures would measure
 * that instead of the disk.
 */
export const DOWNLOAD_RATE = 40_000_000;

/** How many of a phase's slowest small requests are kept. */
const SLOWEST_KEPT = 20;

/** Latencies of the small requests during one phase. */
export interface ColdDiskPhase {
  /** How many small requests were answered. */
  requests: number;
  /**
   * The slowest small requests, ms, slowest first (not all of them: a phase on a slow disk answers 200,000,
   * megabytes of JSON).
   */
  slowestMs: number[];
  p99Ms: number;
  maxMs: number;
  medianMs: number;
  /** How long the large downloads took, ms. */
  downloadMs: number;
}

/** Both phases. */
export interface ColdDiskMeasured {
  /** The large file's size, bytes. */
  largeBytes: number;
  downloads: number;
  warm: ColdDiskPhase;
  cold: ColdDiskPhase;
  /** False when the page cache could not be dropped (not root): then "cold" is warm too. */
  dropped: boolean;
  /**
   * Bytes of the large file still in the page cache right after the drop (`fincore`), null when that could not
   * be told. Pages that were dirty (written and not yet on disk) survive `drop_caches`.
   */
  residentAfterDropBytes: number | null;
  /**
   * Whether the cold phase was cold: the drop worked and at most 1 % of the large file was left in the page
   * cache. The cold rows meet their goal only when it was.
   */
  coldVerified: boolean;
  /** Where the large file was: the slow disk of `bench_slow_disk.ts`, or the cache's own disk. */
  disk: string;
}

/** The `q` quantile (0..1) of `values`, nearest rank. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/**
 * Writes every dirty page to disk (`sync`), then drops the page cache; false when that is not allowed.
 * `drop_caches` drops clean pages only: a file written a moment ago (the benchmark writes the large file just
 * before the rows, and the kernel writes dirty pages back only after 30 s) would otherwise stay in memory and
 * the "cold" phase would read it from there.
 */
export async function dropPageCache(): Promise<boolean> {
  try {
    await new Deno.Command("sync", { stdin: "null", stdout: "null", stderr: "null" }).output();
  } catch {
    // no sync program: drop what is clean; residentBytes() tells what stayed
  }
  try {
    await Deno.writeTextFile("/proc/sys/vm/drop_caches", "1");
    return true;
  } catch {
    return false;
  }
}

/** How many bytes of the file at `path` are in the page cache (util-linux `fincore`); null when unknown. */
export async function residentBytes(path: string): Promise<number | null> {
  try {
    const out = await new Deno.Command("fincore", {
      args: ["--bytes", "--noheadings", "--output", "RES", path],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    const value = Number(new TextDecoder().decode(out.stdout).trim());
    return out.success && Number.isFinite(value) ? value : null;
  } catch {
    return null;
  }
}

/**
 * Downloads `url` to nowhere with curl, a process of its own: draining four large files in the benchmark's own
 * event loop would delay its small requests more than the server does.
 */
async function drain(url: string, size: number): Promise<void> {
  const output = await new Deno.Command("curl", {
    args: [
      "--silent",
      "--show-error",
      "--limit-rate",
      String(DOWNLOAD_RATE),
      "--output",
      "/dev/null",
      "--write-out",
      "%{http_code} %{size_download}",
      url,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const [status, bytes] = new TextDecoder().decode(output.stdout).trim().split(" ").map(Number);
  if (!output.success || status !== 200 || bytes !== size) {
    throw new Error(
      `${url}: HTTP ${status} with ${bytes} of ${size} bytes ${new TextDecoder().decode(output.stderr)}`,
    );
  }
}

/** Where the files are and how many clients download the large one. */
export interface ColdDiskOptions {
  largeUrl: string;
  largeBytes: number;
  smallUrl: string;
  downloads: number;
  /** Where the large file is, for the reader of the figures. */
  disk: string;
  /** The large file's path (as flexo opens it), to check that the drop took it out of the page cache. */
  largePath: string;
  /** Drops the page cache (default {@linkcode dropPageCache}; tests give another). */
  dropCache?: () => Promise<boolean>;
}

/** One phase: `downloads` clients fetch the large file while one client asks for the small one again and again. */
async function phase(
  options: ColdDiskOptions,
): Promise<ColdDiskPhase> {
  const started = performance.now();
  let done = false;
  const all = Promise.all(
    Array.from({ length: options.downloads }, () => drain(options.largeUrl, options.largeBytes)),
  ).finally(() => done = true);
  const client = Deno.createHttpClient({});
  const latenciesMs: number[] = [];
  try {
    while (!done) {
      const t = performance.now();
      const response = await fetch(options.smallUrl, { client });
      await response.arrayBuffer();
      if (response.status !== 200) throw new Error(`${options.smallUrl}: HTTP ${response.status}`);
      latenciesMs.push(performance.now() - t);
    }
    await all;
  } finally {
    client.close();
  }
  const slowestMs = [...latenciesMs].sort((a, b) => b - a).slice(0, SLOWEST_KEPT);
  return {
    requests: latenciesMs.length,
    slowestMs,
    p99Ms: quantile(latenciesMs, 0.99),
    maxMs: slowestMs[0] ?? NaN,
    medianMs: median(latenciesMs),
    downloadMs: performance.now() - started,
  };
}

/**
 * Measures the small requests during large downloads with the large file in memory (after one download of it),
 * then again after dropping the page cache, checking that the large file left it.
 */
export async function measureColdDisk(options: ColdDiskOptions): Promise<ColdDiskMeasured> {
  await drain(options.largeUrl, options.largeBytes);
  const warm = await phase(options);
  const dropped = await (options.dropCache ?? dropPageCache)();
  const residentAfterDropBytes = await residentBytes(options.largePath);
  const coldVerified = dropped && residentAfterDropBytes !== null &&
    residentAfterDropBytes <= options.largeBytes / 100;
  const cold = await phase(options);
  const { largeBytes, downloads, disk } = options;
  return { largeBytes, downloads, warm, cold, dropped, residentAfterDropBytes, coldVerified, disk };
}
