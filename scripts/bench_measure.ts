/**
 * The measurements of the benchmark (`scripts/bench.ts`), each against one or more proxies that are already
 * running in front of the same origin: wrk runs on cached files, peak memory, time to first byte of uncached
 * files, several clients sharing one uncached download, and start-up time.
 *
 * @module
 */

import { join } from "node:path";
import {
  type Child,
  type Children,
  cpuSecondsOf,
  median,
  memoryOf,
  resetPeakRss,
  runWrk,
  sleep,
  type WrkResult,
} from "./bench_tools.ts";

/**
 * The proxies the load rows compare: flexo, nginx as configured for every row, and nginx tuned as its users tune
 * it (`open_file_cache`) with one worker and with `worker_processes auto`.
 */
export type ProxyName = "nginx" | "nginx_tuned" | "nginx_tuned_auto" | "flexo";

/** A proxy under test. */
export interface Proxy {
  name: ProxyName;
  /** `http://127.0.0.1:PORT/` */
  base: string;
  /** The process whose memory counts (nginx's first worker, flexo's only process). */
  pid: number;
  /**
   * The processes that serve, whose CPU time counts: nginx's workers, flexo's deno process (the serve task's
   * `deno run`, not a `deno task` parent).
   */
  cpuPids: number[];
}

/** A wrk run and the CPU time the serving processes spent on it. */
export interface LoadResult extends WrkResult {
  /**
   * CPU seconds (user + system) of the proxy's serving processes from just before wrk started until after
   * `afterRun` (so a log written behind the answers counts).
   */
  cpuSeconds: number;
}

/** How wrk is run. */
export interface LoadOptions {
  connections: number;
  threads: number;
  seconds: number;
  runs: number;
  workDir: string;
}

/**
 * wrk results per proxy, run after run, proxies alternating so that drift hits both alike. `afterRun` is awaited
 * after each run (to let a proxy finish what it does behind its answers before the next one is measured).
 */
export async function measureLoad(
  proxies: readonly Proxy[],
  path: string,
  options: LoadOptions & { afterRun?: (proxy: Proxy) => Promise<void> },
): Promise<Record<string, LoadResult[]>> {
  const results: Record<string, LoadResult[]> = {};
  for (let run = 0; run < options.runs; run++) {
    const order = run % 2 === 0 ? proxies : [...proxies].reverse();
    for (const proxy of order) {
      const cpuBefore = await cpuSecondsOf(proxy.cpuPids);
      const result = await runWrk(proxy.base + path, options);
      if (result.errors > 0) {
        throw new Error(`${proxy.name} had ${result.errors} errors under wrk for ${path}; see its log`);
      }
      await options.afterRun?.(proxy);
      const cpuSeconds = await cpuSecondsOf(proxy.cpuPids) - cpuBefore;
      (results[proxy.name] ??= []).push({ ...result, cpuSeconds });
    }
  }
  return results;
}

/** Peak memory of one run of wrk per proxy and run. */
export interface MemorySample {
  peakBytes: number;
  /** The resident set size when the run began, bytes: what earlier work left behind. */
  startBytes: number;
  /** False when the peak could not be reset before the run (it is then the peak since the process began). */
  peakWasReset: boolean;
  bytesPerSecond: number;
}

/**
 * Runs wrk on each proxy while watching the peak resident set size of its process; throws when wrk saw errors
 * (socket errors, answers other than 2xx/3xx).
 */
export async function measureMemory(
  proxies: readonly Proxy[],
  path: string,
  options: LoadOptions,
): Promise<Record<string, MemorySample[]>> {
  const results: Record<string, MemorySample[]> = {};
  for (let run = 0; run < options.runs; run++) {
    for (const proxy of proxies) {
      const peakWasReset = await resetPeakRss(proxy.pid);
      const startBytes = (await memoryOf(proxy.pid)).current;
      const load = await runWrk(proxy.base + path, options);
      const { peak } = await memoryOf(proxy.pid);
      // A peak under failing requests (errors are cheap to answer) is not the peak under the load asked for.
      if (load.errors > 0) {
        throw new Error(`${proxy.name} had ${load.errors} errors under wrk for ${path}; see its log`);
      }
      (results[proxy.name] ??= []).push({
        peakBytes: peak,
        startBytes,
        peakWasReset,
        bytesPerSecond: load.bytesPerSecond,
      });
    }
  }
  return results;
}

/** One client's download. */
export interface ClientTiming {
  status: number;
  /** Milliseconds from sending the request to the first byte of the body. */
  firstByteMs: number;
  /** Milliseconds from sending the request to the end of the body. */
  totalMs: number;
  bytes: number;
  /** `performance.now()` when the request was sent and when the body ended. */
  startedAt: number;
  endedAt: number;
  headers: Headers;
}

/** Downloads `url` on a connection of its own, timing the first body byte and the end. */
export async function timedGet(url: string, options: { timeoutMs: number }): Promise<ClientTiming> {
  const client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  try {
    const startedAt = performance.now();
    const response = await fetch(url, { client, signal: AbortSignal.timeout(options.timeoutMs) });
    const reader = response.body!.getReader();
    let firstByteAt: number | undefined;
    let bytes = 0;
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      if (value.byteLength > 0) firstByteAt ??= performance.now();
      bytes += value.byteLength;
    }
    const endedAt = performance.now();
    return {
      status: response.status,
      firstByteMs: (firstByteAt ?? endedAt) - startedAt,
      totalMs: endedAt - startedAt,
      bytes,
      startedAt,
      endedAt,
      headers: response.headers,
    };
  } finally {
    client.close();
  }
}

/** Where fresh (never requested) copies of the test files are made in the origin's tree. */
export interface FreshFiles {
  /** The origin's root directory. */
  root: string;
  /** Repository path of the files, e.g. `core/os/x86_64`. */
  dir: string;
}

let freshCounter = 0;

/** Makes a new name for a copy of `source` (a hard link) and returns the request path of it. */
export async function freshCopy(files: FreshFiles, source: string, tag: string): Promise<string> {
  freshCounter++;
  const name = `bench-${tag}${freshCounter}x${Date.now().toString(36)}-1-1-x86_64.pkg.tar.zst`;
  await Deno.link(join(files.root, files.dir, source), join(files.root, files.dir, name));
  return `${files.dir}/${name}`;
}

/** Time to first byte of uncached files: directly from the origin and through each proxy. */
export interface ColdFirstByte {
  /** Milliseconds, sample by sample, per source ("direct" and each proxy). */
  samples: Record<string, number[]>;
  /** Median through each proxy minus median direct, milliseconds. */
  overheadMs: Record<string, number>;
}

/**
 * Measures time to first byte of fresh files, interleaving the sources sample by sample (the order reversed
 * every other sample), after `warmup` samples per source that are not counted.
 */
export async function measureColdFirstByte(
  proxies: readonly Proxy[],
  options: { originBase: string; files: FreshFiles; source: string; samples: number; warmup: number },
): Promise<ColdFirstByte> {
  const samples: Record<string, number[]> = { direct: [] };
  const sources = [{ name: "direct", base: options.originBase }, ...proxies];
  for (let i = -options.warmup; i < options.samples; i++) {
    // The order reversed every other sample: what one source's miss leaves running (a proxy committing the file)
    // would otherwise always fall into the same next source's sample.
    const order = (i + options.warmup) % 2 === 0 ? sources : [...sources].reverse();
    for (const source of order) {
      const path = await freshCopy(options.files, options.source, "ttfb");
      const timing = await timedGet(source.base + path, { timeoutMs: 10_000 });
      if (timing.status !== 200) throw new Error(`${source.name} answered ${timing.status} for ${path}`);
      if (i < 0) continue; // warm-up: the first misses of a process run colder code paths
      (samples[source.name] ??= []).push(timing.firstByteMs);
    }
  }
  const direct = median(samples.direct);
  const overheadMs: Record<string, number> = {};
  for (const proxy of proxies) overheadMs[proxy.name] = median(samples[proxy.name]) - direct;
  return { samples, overheadMs };
}

/** One run of clients sharing one uncached file. */
export interface SharedRun {
  /** GET requests the origin saw for the file. */
  upstreamRequests: number;
  /** Per client, in the order they started: first byte (ms after its own request), end relative to the first
   * client's end (ms). */
  clients: { firstByteMs: number; doneAfterFirstMs: number; bytes: number }[];
  /** The slowest first byte of any client, ms. */
  maxFirstByteMs: number;
  /** The latest end relative to the first client's end, ms. */
  maxDoneAfterFirstMs: number;
}

/** Starts `clients` downloads of one fresh copy of `source`, `gapMs` apart, through one proxy. */
export async function measureSharedCold(
  proxy: Proxy,
  options: {
    originBase: string;
    files: FreshFiles;
    source: string;
    size: number;
    clients: number;
    gapMs: number;
  },
): Promise<SharedRun> {
  const path = await freshCopy(options.files, options.source, "shared");
  const downloads: Promise<ClientTiming>[] = [];
  for (let i = 0; i < options.clients; i++) {
    if (i > 0) await sleep(options.gapMs);
    downloads.push(timedGet(proxy.base + path, { timeoutMs: 60_000 }));
  }
  const timings = await Promise.all(downloads);
  for (const timing of timings) {
    if (timing.status !== 200 || timing.bytes !== options.size) {
      throw new Error(
        `${proxy.name} answered ${timing.status} with ${timing.bytes} of ${options.size} bytes for ${path}`,
      );
    }
  }
  const stats = await (await fetch(`${options.originBase}__stats`)).json();
  const firstEnd = timings[0].endedAt;
  const clients = timings.map((t) => ({
    firstByteMs: t.firstByteMs,
    doneAfterFirstMs: t.endedAt - firstEnd,
    bytes: t.bytes,
  }));
  return {
    upstreamRequests: stats.requests[`/${path}`] ?? 0,
    clients,
    maxFirstByteMs: Math.max(...clients.map((c) => c.firstByteMs)),
    maxDoneAfterFirstMs: Math.max(...clients.map((c) => c.doneAfterFirstMs)),
  };
}

/** One start of flexo: from spawning the process to the first cache hit it served. */
export async function measureStartup(
  children: Children,
  options: {
    spawn: (children: Children) => Child;
    url: string;
    timeoutMs: number;
    pollMs: number;
  },
): Promise<number> {
  const started = performance.now();
  const child = options.spawn(children);
  try {
    const client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
    try {
      while (performance.now() - started < options.timeoutMs) {
        try {
          const response = await fetch(options.url, { client });
          await response.arrayBuffer();
          if (response.status === 200 && response.headers.get("flexo-payload-origin") === "Cache") {
            return performance.now() - started;
          }
          throw new Error(`answered ${response.status} from ${response.headers.get("flexo-payload-origin")}`);
        } catch (error) {
          if (!(error instanceof TypeError)) throw error;
          // Not listening yet.
        }
        await sleep(options.pollMs);
      }
    } finally {
      client.close();
    }
    throw new Error(`flexo served no cache hit within ${options.timeoutMs} ms:\n${child.stderr()}`);
  } finally {
    await child.kill();
  }
}
