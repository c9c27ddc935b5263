/**
 * Resident memory of a serving flexo at rest and under load (issue 20, part 1), measured on the serving process
 * itself (started as `deno task serve` starts it, see `memory_files.ts`), in this order:
 *
 * 1. idle after start (empty cache);
 * 2. idle after one cold download of a 50 MiB package from a local mirror (this script serves it);
 * 3. the peak (VmHWM, reset just before) while 64 clients download the now cached package at once;
 * 4. right after that load, and after flexo's idle release (`src/memory_release.ts`, 30-60 s after the last
 *    request).
 *
 * With `--breakdown` it also prints where the resident memory is at each step (`smaps_breakdown.ts`; for the
 * peak, the sample of `/proc/PID/smaps` taken at the highest VmRSS seen every 50 ms during the load).
 *
 * With `--bundle` it measures main.ts bundled into one module, as `deno compile --bundle` builds the executable.
 *
 * Usage: deno run --allow-all scripts/memory_load.ts [--clients 64] [--size-mib 50] [--settle-ms 3000] [--breakdown]
 *        [--bundle]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { buildBundle } from "./compile.ts";
import { memoryOf, resetPeakRss, sleep } from "./bench_tools.ts";
import { startServing, waitForScan } from "./memory_files.ts";
import { type Kind, KINDS, smapsBreakdown } from "./smaps_breakdown.ts";

const PACKAGE = "core/os/x86_64/memload-1.0-1-x86_64.pkg.tar.zst";

/** The figures, in bytes. */
export interface LoadMemory {
  idle: number;
  idleAfterDownload: number;
  peakUnderLoad: number;
  afterLoad: number;
  afterIdleRelease: number;
}

/** Where the resident memory was at each step (see `smaps_breakdown.ts`), with the VmRSS of the same moment. */
export type LoadBreakdown = Record<keyof LoadMemory, Record<Kind, number> & { rss: number }>;

async function breakdownOf(pid: number): Promise<Record<Kind, number> & { rss: number }> {
  const parts = smapsBreakdown(await Deno.readTextFile(`/proc/${pid}/smaps`), Deno.execPath());
  return { ...parts, rss: (await memoryOf(pid)).current };
}

/** Samples `pid` every 50 ms until `until` settles; returns the breakdown at the highest VmRSS seen. */
async function breakdownAtPeak(
  pid: number,
  until: Promise<unknown>,
): Promise<LoadBreakdown["peakUnderLoad"]> {
  let done = false;
  until.finally(() => done = true).catch(() => {});
  let highest = await breakdownOf(pid);
  while (!done) {
    await sleep(50);
    if ((await memoryOf(pid)).current > highest.rss) highest = await breakdownOf(pid);
  }
  return highest;
}

async function download(url: string): Promise<number> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  let bytes = 0;
  for await (const chunk of response.body!) bytes += chunk.byteLength;
  return bytes;
}

/** Runs the sequence above and returns its figures (`bundle`: of main.ts bundled, as the executable runs it). */
export async function measureLoad(
  options: {
    clients: number;
    sizeBytes: number;
    settleMs: number;
    breakdown?: Partial<LoadBreakdown>;
    bundle?: boolean;
  },
): Promise<LoadMemory> {
  const parts = options.breakdown;
  const work = await Deno.makeTempDir({ prefix: "flexo-memload-" });
  // The bundle the executable embeds (scripts/compile.ts), where no executable can be built.
  const mainPath = options.bundle ? await buildBundle() : undefined;
  const body = new Uint8Array(options.sizeBytes);
  for (let i = 0; i < body.length; i += 4096) body[i] = i & 0xff;
  const mirror = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    if (new URL(request.url).pathname !== `/${PACKAGE}`) return new Response("not here", { status: 404 });
    return new Response(body, { headers: { "content-type": "application/octet-stream" } });
  });
  const cacheDir = join(work, "cache");
  await Deno.mkdir(cacheDir);
  const flexo = await startServing(work, {
    cacheDir,
    mirror: `http://127.0.0.1:${mirror.addr.port}/`,
    mainPath,
  });
  try {
    await waitForScan(flexo.url, 0, 60_000);
    await sleep(options.settleMs);
    const idle = (await memoryOf(flexo.pid)).current;
    if (parts) parts.idle = await breakdownOf(flexo.pid);
    const fileUrl = `${flexo.url}/${PACKAGE}`;
    if (await download(fileUrl) !== body.length) throw new Error("the cold download came short");
    await sleep(options.settleMs);
    const idleAfterDownload = (await memoryOf(flexo.pid)).current;
    if (parts) parts.idleAfterDownload = await breakdownOf(flexo.pid);
    if (!await resetPeakRss(flexo.pid)) throw new Error("cannot reset VmHWM (needs root)");
    const loads = Promise.all(Array.from({ length: options.clients }, () => download(fileUrl)));
    if (parts) parts.peakUnderLoad = await breakdownAtPeak(flexo.pid, loads);
    const sizes = await loads;
    if (sizes.some((size) => size !== body.length)) throw new Error("a download under load came short");
    const peakUnderLoad = (await memoryOf(flexo.pid)).peak;
    await sleep(options.settleMs);
    const afterLoad = (await memoryOf(flexo.pid)).current;
    if (parts) parts.afterLoad = await breakdownOf(flexo.pid);
    await sleep(65_000);
    const afterIdleRelease = (await memoryOf(flexo.pid)).current;
    if (parts) parts.afterIdleRelease = await breakdownOf(flexo.pid);
    return { idle, idleAfterDownload, peakUnderLoad, afterLoad, afterIdleRelease };
  } finally {
    await flexo.stop();
    await mirror.shutdown();
    await Deno.remove(work, { recursive: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      clients: { type: "string", default: "64" },
      "size-mib": { type: "string", default: "50" },
      "settle-ms": { type: "string", default: "3000" },
      breakdown: { type: "boolean", default: false },
      bundle: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno run --allow-all scripts/memory_load.ts [--clients 64] [--size-mib 50] [--settle-ms 3000] " +
        "[--breakdown] [--bundle]\n" +
        "Resident memory of a serving flexo idle, after one download and under that many clients;\n" +
        "--breakdown: and where it is at each step (executable, V8 heap, malloc arenas, stacks, files);\n" +
        "--bundle: of main.ts bundled into one module, as deno compile --bundle builds the executable.",
    );
    return;
  }
  const breakdown: Partial<LoadBreakdown> | undefined = values.breakdown ? {} : undefined;
  const result = await measureLoad({
    clients: Number(values.clients),
    sizeBytes: Number(values["size-mib"]) * 1048576,
    settleMs: Number(values["settle-ms"]),
    breakdown,
    bundle: values.bundle,
  });
  const mib = (bytes: number) => (bytes / 1048576).toFixed(1);
  for (const [name, bytes] of Object.entries(result)) console.log(`${name}: ${mib(bytes)} MiB`);
  if (breakdown === undefined) return;
  const steps = Object.keys(result) as (keyof LoadMemory)[];
  console.log(`\n${"MiB".padEnd(30)}${steps.map((step) => step.padStart(18)).join("")}`);
  for (const row of [...KINDS, "rss"] as const) {
    const label = row === "rss" ? "VmRSS at the breakdown" : row;
    console.log(
      `${label.padEnd(30)}${steps.map((step) => mib(breakdown[step]?.[row] ?? NaN).padStart(18)).join("")}`,
    );
  }
}

if (import.meta.main) await main();
