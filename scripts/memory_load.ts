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
 * Usage: deno run --allow-all scripts/memory_load.ts [--clients 64] [--size-mib 50] [--settle-ms 3000]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { memoryOf, resetPeakRss, sleep } from "./bench_tools.ts";
import { startServing, waitForScan } from "./memory_files.ts";

const PACKAGE = "core/os/x86_64/memload-1.0-1-x86_64.pkg.tar.zst";

/** The figures, in bytes. */
export interface LoadMemory {
  idle: number;
  idleAfterDownload: number;
  peakUnderLoad: number;
  afterLoad: number;
  afterIdleRelease: number;
}

async function download(url: string): Promise<number> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  let bytes = 0;
  for await (const chunk of response.body!) bytes += chunk.byteLength;
  return bytes;
}

/** Runs the sequence above and returns its figures. */
export async function measureLoad(
  options: { clients: number; sizeBytes: number; settleMs: number },
): Promise<LoadMemory> {
  const work = await Deno.makeTempDir({ prefix: "flexo-memload-" });
  const body = new Uint8Array(options.sizeBytes);
  for (let i = 0; i < body.length; i += 4096) body[i] = i & 0xff;
  const mirror = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    if (new URL(request.url).pathname !== `/${PACKAGE}`) return new Response("not here", { status: 404 });
    return new Response(body, { headers: { "content-type": "application/octet-stream" } });
  });
  const cacheDir = join(work, "cache");
  await Deno.mkdir(cacheDir);
  const flexo = await startServing(work, { cacheDir, mirror: `http://127.0.0.1:${mirror.addr.port}/` });
  try {
    await waitForScan(flexo.url, 0, 60_000);
    await sleep(options.settleMs);
    const idle = (await memoryOf(flexo.pid)).current;
    const fileUrl = `${flexo.url}/${PACKAGE}`;
    if (await download(fileUrl) !== body.length) throw new Error("the cold download came short");
    await sleep(options.settleMs);
    const idleAfterDownload = (await memoryOf(flexo.pid)).current;
    if (!await resetPeakRss(flexo.pid)) throw new Error("cannot reset VmHWM (needs root)");
    const sizes = await Promise.all(Array.from({ length: options.clients }, () => download(fileUrl)));
    if (sizes.some((size) => size !== body.length)) throw new Error("a download under load came short");
    const peakUnderLoad = (await memoryOf(flexo.pid)).peak;
    await sleep(options.settleMs);
    const afterLoad = (await memoryOf(flexo.pid)).current;
    await sleep(65_000);
    const afterIdleRelease = (await memoryOf(flexo.pid)).current;
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
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno run --allow-all scripts/memory_load.ts [--clients 64] [--size-mib 50] [--settle-ms 3000]\n" +
        "Resident memory of a serving flexo idle, after one download and under that many clients.",
    );
    return;
  }
  const result = await measureLoad({
    clients: Number(values.clients),
    sizeBytes: Number(values["size-mib"]) * 1048576,
    settleMs: Number(values["settle-ms"]),
  });
  for (const [name, bytes] of Object.entries(result)) {
    console.log(`${name}: ${(bytes / 1048576).toFixed(1)} MiB`);
  }
}

if (import.meta.main) await main();
