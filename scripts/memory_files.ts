/**
 * How resident memory grows with the number of files in the cache (issue 20, part 1b): for each count, builds a
 * cache of that many small files (packages and their `.sig`, half each) in a temporary directory, plus one probe
 * package with its signature that every run serves (so that each count answers the same requests), starts flexo
 * exactly as `deno task serve` does (the serve task's flags from `deno.json`, settings from `FLEXO_*`, no
 * reachable mirror), waits until the start-up scan has counted every file, lets it settle, and reads the serving
 * process's own VmRSS and VmHWM; then serves a few cached files and reads them again.
 * "After the scan" means after the start-up work: the count, then the cleaner's scan, then the memory release;
 * the script waits until the RSS has stopped changing for `--settle-ms`.
 *
 * Usage: deno run --allow-all scripts/memory_files.ts [--files 0,20000,40000] [--settle-ms 3000] [--json]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, memoryOf, serveTaskArgs, sleep } from "./bench_tools.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const FOLDER = ["core", "os", "x86_64"];
/** The package (and signature) in every cache, served after the scan; not counted in `files`. */
const PROBE = "memprobe-1.0-1-x86_64.pkg.tar.zst";

/** What one count measured, in bytes. */
export interface FilesMemory {
  files: number;
  /** After the start-up scan counted every file and the process settled. */
  rssAfterScan: number;
  /** Peak since the start (the scan included). */
  peakAfterScan: number;
  /** After serving the probe package and its signature ten times each. */
  rssAfterRequests: number;
  /** How long the scan took to count every file. */
  scanMs: number;
}

/** The name of the `i`-th test package. */
export function testPackageName(i: number): string {
  return `memtest${String(i).padStart(6, "0")}-1.0.${i % 10}-1-x86_64.pkg.tar.zst`;
}

/**
 * Writes `files` small files (packages and signatures, half each) and the probe package with its signature under
 * `cacheDir/core/os/x86_64`.
 */
export async function fillCache(cacheDir: string, files: number): Promise<void> {
  const dir = join(cacheDir, ...FOLDER);
  await Deno.mkdir(dir, { recursive: true });
  const body = new Uint8Array(64).fill(7);
  await Deno.writeFile(join(dir, PROBE), body);
  await Deno.writeFile(join(dir, `${PROBE}.sig`), body.subarray(0, 16));
  const packages = Math.ceil(files / 2);
  const writes: Promise<void>[] = [];
  for (let i = 0; i < packages; i++) {
    const name = testPackageName(i);
    writes.push(Deno.writeFile(join(dir, name), body));
    if (2 * i + 1 < files) writes.push(Deno.writeFile(join(dir, `${name}.sig`), body.subarray(0, 16)));
    if (writes.length >= 256) await Promise.all(writes.splice(0));
  }
  await Promise.all(writes);
}

/** Waits until flexo's start-up scan has counted `files` files. */
export async function waitForScan(url: string, files: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const report = await (await fetch(`${url}/status`)).json();
      if (report.cache.complete && report.cache.files === files) return;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  throw new Error(`the start-up scan did not count ${files} files within ${timeoutMs} ms`);
}

/** A flexo process started as `deno task serve` starts it. */
export interface ServingFlexo {
  pid: number;
  url: string;
  /** Kills it and waits for its end. */
  stop(): Promise<void>;
}

/**
 * Starts flexo as `deno task serve` does (the serve task's flags from `deno.json`), configured by `FLEXO_*`
 * only: the cache in `cacheDir`, state files in `work`, `mirror` as the only mirror, log level "warning", and
 * any other variables in `env`; `mainPath` runs another program in main.ts's place (a bundle of it).
 */
export async function startServing(
  work: string,
  options: { cacheDir: string; mirror: string; env?: Record<string, string>; mainPath?: string },
): Promise<ServingFlexo> {
  // A port free now (bound and released): a random one collided with other processes now and then.
  const port = freePort();
  const args = serveTaskArgs(await Deno.readTextFile(join(ROOT, "deno.json")), {
    mainPath: options.mainPath ?? join(ROOT, "main.ts"),
    extra: [],
  });
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: work,
    stdin: "null",
    stdout: "null",
    stderr: "null",
    env: {
      FLEXO_CACHE_DIRECTORY: options.cacheDir,
      FLEXO_PORT: String(port),
      FLEXO_LISTEN_IP_ADDRESS: "127.0.0.1",
      FLEXO_MIRROR_SELECTION_METHOD: "predefined",
      FLEXO_MIRRORS_PREDEFINED: `['${options.mirror}']`,
      FLEXO_MIRRORLIST_FALLBACK_FILE: join(work, "mirrorlist"),
      FLEXO_MIRRORLIST_LATENCY_TEST_RESULTS_FILE: join(work, "latency.json"),
      FLEXO_LOG: "warning",
      ...options.env,
    },
  }).spawn();
  return {
    pid: child.pid,
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      child.kill("SIGKILL");
      await child.status;
    },
  };
}

/**
 * Waits until `pid`'s VmRSS has stayed within 0.5 MiB for `settleMs` (sampled every 500 ms): the start-up work
 * after the count (the cleaner's scan, the release after it) has then ended. At most 60 s.
 */
export async function settle(pid: number, settleMs: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  let stableSince = Date.now();
  let last = (await memoryOf(pid)).current;
  while (Date.now() - stableSince < settleMs && Date.now() < deadline) {
    await sleep(500);
    const now = (await memoryOf(pid)).current;
    if (Math.abs(now - last) > 512 * 1024) stableSince = Date.now();
    last = now;
  }
}

/** Starts flexo on a cache of `files` files and measures it. */
export async function measureFiles(files: number, settleMs: number): Promise<FilesMemory> {
  const work = await Deno.makeTempDir({ prefix: "flexo-memfiles-" });
  const cacheDir = join(work, "cache");
  await fillCache(cacheDir, files);
  const flexo = await startServing(work, { cacheDir, mirror: "http://127.0.0.1:9/" });
  const url = flexo.url;
  try {
    const started = performance.now();
    await waitForScan(url, files + 2, 120_000);
    const scanMs = performance.now() - started;
    await settle(flexo.pid, settleMs);
    const afterScan = await memoryOf(flexo.pid);
    for (let i = 0; i < 10; i++) {
      for (const name of [PROBE, `${PROBE}.sig`]) {
        const response = await fetch(`${url}/${FOLDER.join("/")}/${name}`);
        if (!response.ok) throw new Error(`GET ${name}: ${response.status}`);
        await response.body?.cancel();
      }
    }
    await sleep(settleMs);
    const afterRequests = await memoryOf(flexo.pid);
    return {
      files,
      rssAfterScan: afterScan.current,
      peakAfterScan: afterScan.peak,
      rssAfterRequests: afterRequests.current,
      scanMs: Math.round(scanMs),
    };
  } finally {
    await flexo.stop();
    await Deno.remove(work, { recursive: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      files: { type: "string", default: "0,20000,40000" },
      "settle-ms": { type: "string", default: "3000" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno run --allow-all scripts/memory_files.ts [--files 0,20000,40000] [--settle-ms 3000] [--json]\n" +
        "Resident memory of a serving flexo with that many cached files, after its start-up scan.",
    );
    return;
  }
  const counts = values.files!.split(",").map(Number);
  const results: FilesMemory[] = [];
  const mib = (bytes: number) => (bytes / 1048576).toFixed(1);
  for (const files of counts) {
    const result = await measureFiles(files, Number(values["settle-ms"]));
    results.push(result);
    const base = results[0];
    const perFile = files > base.files
      ? ((result.rssAfterScan - base.rssAfterScan) / (files - base.files)).toFixed(0)
      : "-";
    if (!values.json) {
      console.log(
        `${files} files: RSS ${mib(result.rssAfterScan)} MiB after the scan (${result.scanMs} ms, peak ` +
          `${mib(result.peakAfterScan)} MiB), ${
            mib(result.rssAfterRequests)
          } MiB after 20 requests of cached files; ` +
          `${perFile} bytes per file more than ${base.files} files`,
      );
    }
  }
  if (values.json) console.log(JSON.stringify(results, null, 2));
}

if (import.meta.main) await main();
