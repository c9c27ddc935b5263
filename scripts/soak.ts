/**
 * The soak: many concurrent clients against one proxy for a while, mixing cache hits, misses of the same file
 * (joined downloads), misses of different files, Range requests and HEAD. Every body is checked against the
 * origin's bytes (SHA-256 for whole files, a byte comparison for ranges), every unexpected status or broken
 * body is an error, every file must have been fetched upstream at most once, and the process's open file
 * descriptors (`/proc/self/fd`) and memory (RSS) must come back near their baseline afterwards.
 *
 * The proxy (`createApp` + `startServer`), the origin mirror and the clients share this process, so the
 * descriptor and memory figures are this process's; the clients' own connections are closed before the final
 * measurement.
 *
 * ```
 * deno run -A scripts/soak.ts [--clients 200] [--duration 60] [--json]
 * ```
 *
 * Memory is compared with a baseline taken after a warm-up with the same load (the first load makes V8 and the
 * allocators size their pools, which they keep). Before each memory sample the soak runs a full V8 GC and asks
 * glibc (`malloc_trim` through FFI, hence `-A`) to return freed memory to the system; RSS otherwise stays near
 * its peak after a load whether or not anything leaked.
 *
 * It exits with status 1 when any check fails. `tests/e2e/soak_test.ts` runs a short version.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createApp } from "../src/app/app.ts";
import { configSchema } from "../src/config/config_schema.ts";
import { setupLogging } from "../src/logging.ts";
import { startServer } from "../src/server/server.ts";
import { startFakeMirror } from "../tests/helpers/fake_mirror.ts";
import { checkResponse, formatSample, type OriginFile, sampleResources, settle } from "./soak_checks.ts";
import {
  formatReport,
  type Operation,
  OPERATIONS,
  type OperationStats,
  soakFailures,
  type SoakResult,
} from "./soak_report.ts";

export type { ResourceSample } from "./soak_checks.ts";
export { formatReport, type Operation, OPERATIONS, type OperationStats, soakFailures, type SoakResult };

/** How the soak runs. */
export interface SoakOptions {
  /** Concurrent clients, each sending one request after another. */
  clients: number;
  /** How long the clients keep sending after the warm-up, in milliseconds. */
  durationMs: number;
  /** How long the same load runs before the baseline is taken. Default: half the duration, at most 5 s. */
  warmupMs?: number;
  /** Number of files cached before the clients start (the cache hits). Default 24. */
  hotFiles?: number;
  /** Upstream pacing per response in bytes per second (0: none). Default 8 MB/s, so that misses overlap. */
  upstreamBytesPerSecond?: number;
  /** Milliseconds after which the file all "miss-same" clients ask for is replaced by a new one. Default 400. */
  rotateMs?: number;
  /** Seed for the choice of operations. */
  seed?: number;
  /** Progress lines (default: none). */
  progress?: (line: string) => void;
}

const REPO_DIR = "core/os/x86_64";

/** A small deterministic random number generator (mulberry32). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random bytes (incompressible, unlike a pattern) of `size`. */
function randomBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let offset = 0; offset < size; offset += 65536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(size, offset + 65536)));
  }
  return bytes;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]);
}

/** Runs the soak; resolves when every client, download and server has stopped. */
export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const rand = random(options.seed ?? 7);
  const progress = options.progress ?? (() => {});
  const root = await Deno.makeTempDir({ prefix: "flexo-soak-" });
  const originDir = join(root, "origin");
  const cacheDir = join(root, "cache");
  await Deno.mkdir(join(originDir, REPO_DIR), { recursive: true });
  await Deno.mkdir(cacheDir);
  const files = new Map<string, OriginFile>();
  let fileCounter = 0;
  const addFile = async (size: number, kind: string): Promise<OriginFile> => {
    const name = `${kind}${fileCounter++}-1.0-1-x86_64.pkg.tar.zst`;
    const bytes = randomBytes(size);
    await Deno.writeFile(join(originDir, REPO_DIR, name), bytes);
    const file = {
      path: `/${REPO_DIR}/${name}`,
      size,
      sha256: createHash("sha256").update(bytes).digest("hex"),
    };
    files.set(file.path, file);
    return file;
  };
  const sizeBetween = (min: number, max: number) => Math.round(min * (max / min) ** rand());

  const mirror = await startFakeMirror(originDir, {
    bytesPerSecond: options.upstreamBytesPerSecond ?? 8_000_000,
  });
  const config = configSchema.parse({
    cache_directory: cacheDir,
    mirror_selection_method: "predefined",
    mirrors_predefined: [mirror.url],
  });
  const app = createApp(config);
  const server = startServer(app, { hostnames: ["127.0.0.1"], port: 0 });
  const base = `http://127.0.0.1:${server.addresses[0].port}`;
  const clientsToClose = new Set<Deno.HttpClient>();
  const warmupMs = options.warmupMs ?? Math.min(5_000, options.durationMs / 2);
  const counts = Object.fromEntries(
    OPERATIONS.map((op) => [op, { requests: 0, errors: 0, bytes: 0, latencies: [] as number[] }]),
  ) as Record<Operation, { requests: number; errors: number; bytes: number; latencies: number[] }>;
  const errorSamples: string[] = [];
  let wrongBytes = 0;
  let errors = 0;
  const fail = (op: Operation, message: string) => {
    counts[op].errors++;
    errors++;
    if (errorSamples.length < 20) errorSamples.push(`${op}: ${message}`);
  };

  try {
    // The hot files: cached before the clients start.
    const hot: OriginFile[] = [];
    const hotCount = options.hotFiles ?? 24;
    for (let i = 0; i < hotCount; i++) hot.push(await addFile(sizeBetween(1_000, 2_000_000), "hot"));
    const warmClient = Deno.createHttpClient({});
    try {
      for (const file of hot) {
        const response = await fetch(base + file.path, { client: warmClient });
        const body = new Uint8Array(await response.arrayBuffer());
        if (response.status !== 200 || body.length !== file.size) {
          throw new Error(`warming ${file.path} failed: HTTP ${response.status}, ${body.length} bytes`);
        }
      }
    } finally {
      warmClient.close();
    }
    await app.downloads.idle();
    await settle();
    const cold = sampleResources();
    const peak = { ...cold };
    progress(`before any load: ${formatSample(cold)}`);

    // Fresh files for misses, made ahead of the clients so that no client waits for the disk of the origin.
    const fresh: OriginFile[] = [];
    let shared = await addFile(sizeBetween(200_000, 3_000_000), "shared");
    let running = true;
    const producer = (async () => {
      let lastRotation = performance.now();
      while (running) {
        if (performance.now() - lastRotation >= (options.rotateMs ?? 400)) {
          shared = await addFile(sizeBetween(200_000, 3_000_000), "shared");
          lastRotation = performance.now();
        }
        if (fresh.length < 64) fresh.push(await addFile(sizeBetween(10_000, 600_000), "fresh"));
        else await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const sampler = setInterval(() => {
      const now = sampleResources();
      peak.fds = Math.max(peak.fds, now.fds);
      peak.files = Math.max(peak.files, now.files);
      peak.rss = Math.max(peak.rss, now.rss);
      peak.heapUsed = Math.max(peak.heapUsed, now.heapUsed);
    }, 250);
    const reporter = setInterval(() => {
      const done = OPERATIONS.reduce((n, op) => n + counts[op].requests, 0);
      progress(`${done} requests, ${errors} errors; ${formatSample(sampleResources())}`);
    }, 5_000);

    /** Picks what one request does. */
    const pick = (): Operation => {
      const r = rand();
      if (r < 0.35) return "hit";
      if (r < 0.55) return "miss_same";
      if (r < 0.67) return "miss_other";
      if (r < 0.87) return "range";
      return "head";
    };
    /** Any file the origin has: mostly hot ones, sometimes a fresh or shared one (cached or not). */
    const anyFile = (): OriginFile => {
      const all = [...files.values()];
      return rand() < 0.6 ? hot[Math.floor(rand() * hot.length)] : all[Math.floor(rand() * all.length)];
    };

    const one = async (op: Operation, client: Deno.HttpClient): Promise<void> => {
      let file: OriginFile;
      const init: RequestInit & { client: Deno.HttpClient } = {
        client,
        signal: AbortSignal.timeout(30_000),
      };
      let expected: { status: number; start: number; end: number } | undefined;
      switch (op) {
        case "hit":
          file = hot[Math.floor(rand() * hot.length)];
          break;
        case "miss_same":
          file = shared;
          break;
        case "miss_other": {
          const next = fresh.shift();
          if (!next) return;
          file = next;
          break;
        }
        case "range": {
          file = anyFile();
          const a = Math.floor(rand() * file.size);
          const b = a + Math.floor(rand() * (file.size - a));
          const form = rand();
          if (form < 0.4) {
            init.headers = { Range: `bytes=${a}-${b}` };
            expected = { status: 206, start: a, end: b };
          } else if (form < 0.7) {
            init.headers = { Range: `bytes=${a}-` };
            expected = { status: 206, start: a, end: file.size - 1 };
          } else if (form < 0.95) {
            const n = 1 + Math.floor(rand() * file.size);
            init.headers = { Range: `bytes=-${n}` };
            expected = { status: 206, start: file.size - n, end: file.size - 1 };
          } else {
            init.headers = { Range: `bytes=${file.size + 10}-` };
            expected = { status: 416, start: 0, end: -1 };
          }
          break;
        }
        case "head":
          file = anyFile();
          init.method = "HEAD";
          break;
      }
      const started = performance.now();
      counts[op].requests++;
      try {
        const response = await fetch(base + file.path, init);
        const received = await checkResponse(response, file, { head: op === "head", expected, originDir });
        counts[op].bytes += received.bytes;
        if (received.wrongBytes) wrongBytes++;
        if (received.error) {
          fail(op, `${file.path} ${init.headers ? JSON.stringify(init.headers) : ""} ${received.error}`);
        }
      } catch (error) {
        fail(op, `${file.path}: ${error instanceof Error ? error.message : String(error)}`);
      }
      counts[op].latencies.push(performance.now() - started);
    };

    /** All clients sending requests for `ms`; their connections are closed and the downloads ended after. */
    const phase = async (ms: number): Promise<void> => {
      const deadline = performance.now() + ms;
      const client = Deno.createHttpClient({});
      clientsToClose.add(client);
      try {
        await Promise.all(Array.from({ length: options.clients }, async () => {
          while (performance.now() < deadline) await one(pick(), client);
        }));
      } finally {
        client.close();
        clientsToClose.delete(client);
      }
      await app.downloads.idle();
    };

    // The first load makes the allocators and V8 size their pools; the baseline is taken after it.
    await phase(warmupMs);
    await settle();
    const baseline = sampleResources();
    progress(`baseline after ${warmupMs / 1000} s of warm-up: ${formatSample(baseline)}`);
    await phase(options.durationMs);
    running = false;
    await producer;
    clearInterval(sampler);
    clearInterval(reporter);
    // The proxy keeps idle upstream connections for reuse; closing the origin ends them, so that what remains
    // open is what the proxy itself holds.
    await mirror.close();
    await settle();
    const after = sampleResources();
    progress(`after: ${formatSample(after)}`);

    let duplicateUpstreamFetches = 0;
    const upstream = new Map<string, number>();
    for (const request of mirror.requests) {
      if (request.method !== "GET") continue;
      upstream.set(request.path, (upstream.get(request.path) ?? 0) + 1);
    }
    for (const [path, n] of upstream) {
      if (n > 1) {
        duplicateUpstreamFetches++;
        if (errorSamples.length < 20) errorSamples.push(`upstream: ${path} was fetched ${n} times`);
      }
    }
    const operations = Object.fromEntries(OPERATIONS.map((op) => {
      const sorted = counts[op].latencies.sort((a, b) => a - b);
      return [op, {
        requests: counts[op].requests,
        errors: counts[op].errors,
        bytes: counts[op].bytes,
        p50Ms: percentile(sorted, 50),
        p99Ms: percentile(sorted, 99),
        maxMs: Math.round(sorted.at(-1) ?? 0),
      }];
    })) as Record<Operation, OperationStats>;
    return {
      clients: options.clients,
      durationMs: options.durationMs,
      warmupMs,
      operations,
      wrongBytes,
      errorSamples,
      errors,
      duplicateUpstreamFetches,
      upstreamFiles: upstream.size,
      cold,
      baseline,
      peak,
      after,
    };
  } finally {
    for (const client of clientsToClose) client.close();
    await server.shutdown({ graceMs: 5_000 });
    await app.downloads.idle();
    await mirror.close();
    await Deno.remove(root, { recursive: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      clients: { type: "string", default: "200" },
      duration: { type: "string", default: "60" },
      warmup: { type: "string" },
      seed: { type: "string", default: "7" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno run -A scripts/soak.ts [--clients 200] [--duration SECONDS] [--warmup SECONDS] [--seed N] " +
        "[--json]\n--json prints the result and the failed checks as one JSON object on stdout.",
    );
    Deno.exit(0);
  }
  const clients = Number(values.clients);
  const seconds = Number(values.duration);
  const warmup = values.warmup === undefined ? undefined : Number(values.warmup);
  const seed = Number(values.seed);
  if (
    !Number.isInteger(clients) || clients < 1 || !(seconds > 0) || (warmup !== undefined && !(warmup >= 0)) ||
    !Number.isInteger(seed)
  ) {
    console.error(
      "soak: --clients must be a whole number of at least 1, --duration and --warmup numbers of seconds, " +
        "--seed a whole number",
    );
    Deno.exit(2);
  }
  await setupLogging({ level: "warning" });
  const result = await runSoak({
    clients,
    durationMs: seconds * 1000,
    warmupMs: warmup === undefined ? undefined : warmup * 1000,
    seed,
    progress: (line) => console.error(`soak: ${line}`),
  });
  const failures = soakFailures(result, { fdSlack: 8, rssSlackBytes: 128 * 1024 * 1024 });
  if (values.json) {
    console.log(JSON.stringify({ ...result, failures }));
  } else {
    console.log(formatReport(result));
    for (const failure of failures) console.log(`FAILED: ${failure}`);
    console.log(failures.length === 0 ? "soak passed" : "soak failed");
  }
  Deno.exit(failures.length === 0 ? 0 : 1);
}
