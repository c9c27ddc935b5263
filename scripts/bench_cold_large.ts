/**
 * The benchmark's large cold download (issue 20 part 4): one client downloads a large package that no proxy has
 * yet, from a fast local mirror (an origin that answers at once and unpaced), straight from the mirror and
 * through nginx and flexo. flexo verifies it: the repository database it synced first lists the package's
 * SHA-256 and size, so every byte is hashed on the way through. The figures are the client's MB/s and the
 * serving processes' CPU seconds per GiB.
 *
 * A second package, listed with a wrong SHA-256, is asked for after the measured downloads: flexo must reject
 * it (its integrity rejections go up), which shows that the database was indexed and the measured downloads
 * were checked.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { type Children, cpuSecondsOf, nginxWorkerPids, run, sleep, waitForOk } from "./bench_tools.ts";
import { startFlexo, startNginx, startOrigin } from "./bench_proxies.ts";
import { concat } from "../src/byte_reader.ts";
import { tarEntry } from "../tests/helpers/test_database.ts";
import { writeAll } from "../src/write_all.ts";

const GiB = 1024 * 1024 * 1024;
const REPO_DIR = "core/os/x86_64";
const DATABASE = "core.db";

/** One download by one client. */
export interface ColdLargeRun {
  bytes: number;
  seconds: number;
  megabytesPerSecond: number;
  /** CPU seconds of the serving processes (the origin's for "direct"), from the request until after the end. */
  cpuSeconds: number;
  cpuSecondsPerGiB: number;
  /** How long the write-back of earlier work took before this download (not timed), ms. */
  writeBackMs: number;
}

/** Everything the large cold rows measured. */
export interface ColdLargeMeasured {
  bytes: number;
  /** Per source ("direct", "nginx", "flexo"), run by run. */
  runs: Record<string, ColdLargeRun[]>;
  /** The package listed with a wrong SHA-256, asked for through flexo after the measured downloads. */
  canary: {
    status: number;
    bytes: number;
    integrityRejectionsBefore: number;
    integrityRejectionsAfter: number;
  };
}

/** Writes `size` random bytes to `path` and returns their SHA-256 (hex). */
export async function writeRandomFileHashed(path: string, size: number): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const block = new Uint8Array(1024 * 1024);
    for (let written = 0; written < size; written += block.byteLength) {
      for (let i = 0; i < block.byteLength; i += 65536) crypto.getRandomValues(block.subarray(i, i + 65536));
      const part = block.subarray(0, Math.min(block.byteLength, size - written));
      hash.update(part);
      await writeAll(file, part);
    }
  } finally {
    file.close();
  }
  return hash.digest("hex");
}

const encoder = new TextEncoder();

/** An uncompressed tar sync database with a `desc` entry per package (pacman reads it; so does flexo). */
export function syncDatabase(
  packages: { name: string; fileName: string; size: number; sha256: string }[],
): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const p of packages) {
    const desc = encoder.encode(
      `%FILENAME%\n${p.fileName}\n\n%NAME%\n${p.name}\n\n%VERSION%\n1-1\n\n%CSIZE%\n${p.size}\n\n` +
        `%SHA256SUM%\n${p.sha256}\n\n%ARCH%\nx86_64\n`,
    );
    parts.push(tarEntry(`${p.name}-1-1/desc`, desc));
  }
  parts.push(new Uint8Array(1024));
  return concat(parts);
}

/**
 * Writes every dirty page to disk (`sync`) and returns how long that took, ms. Before each download, so that
 * none starts while the kernel is still writing back earlier work (this module's 500 MiB file written just
 * before, the previous download's cached copy, the earlier rows' logs; it writes dirty pages 30 s after they
 * were dirtied, and holds back writers once there are too many): a proxy that writes its cache file on its event
 * loop (nginx) would be slowed by it, and by more the later it came.
 */
export async function syncWriteBack(): Promise<number> {
  const began = performance.now();
  const out = await run("sync", []);
  if (!out.success) throw new Error(`sync failed: ${out.output.slice(-500)}`);
  return performance.now() - began;
}

/** Downloads `url` to nowhere with curl (a process of its own, cheap on the CPU). */
async function curl(url: string): Promise<{ status: number; bytes: number; seconds: number }> {
  const out = await run("curl", [
    "-s",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code} %{size_download} %{time_total}",
    url,
  ]);
  const [status, bytes, seconds] = out.output.trim().split(" ").map(Number);
  if (!out.spawned || !Number.isFinite(seconds)) {
    throw new Error(`curl ${url} failed: ${out.output.slice(-500)}`);
  }
  return { status, bytes, seconds };
}

async function integrityRejections(flexoBase: string): Promise<number> {
  const status = await (await fetch(`${flexoBase}status`)).json();
  return status.integrityRejections;
}

/**
 * Measures `runs` cold downloads of a `bytes`-sized package per source, sources alternating, each run on a new
 * package (a hard link with a new name, listed in the database), each after `settleWriteBack` (default
 * {@linkcode syncWriteBack}; tests give another), outside its timed window.
 */
export async function measureColdLarge(
  children: Children,
  options: {
    nginx: string;
    work: string;
    bytes: number;
    runs: number;
    settleWriteBack?: () => Promise<number>;
  },
): Promise<ColdLargeMeasured> {
  const { work, bytes, runs } = options;
  const root = join(work, "coldlarge-origin");
  const dir = join(root, REPO_DIR);
  await Deno.mkdir(dir, { recursive: true });
  const source = join(dir, "bench-coldsource-1-1-x86_64.pkg.tar.zst");
  const sha256 = await writeRandomFileHashed(source, bytes);
  const sources = ["direct", "nginx", "flexo"] as const;
  const packages: { name: string; fileName: string; size: number; sha256: string }[] = [];
  const fileOf = (runIndex: number, name: string) => `bench-cold${runIndex}${name}-1-1-x86_64.pkg.tar.zst`;
  for (let i = 0; i < runs; i++) {
    for (const name of sources) {
      await Deno.link(source, join(dir, fileOf(i, name)));
      packages.push({ name: `bench-cold${i}${name}`, fileName: fileOf(i, name), size: bytes, sha256 });
    }
  }
  const canaryFile = "bench-canary-1-1-x86_64.pkg.tar.zst";
  const canarySize = 4096;
  await writeRandomFileHashed(join(dir, canaryFile), canarySize);
  packages.push({ name: "bench-canary", fileName: canaryFile, size: canarySize, sha256: "0".repeat(64) });
  await Deno.writeFile(join(dir, DATABASE), syncDatabase(packages));

  const origin = await startOrigin(children, { root, latencyMs: 0, rate: 0 });
  const nginx = await startNginx(children, {
    nginx: options.nginx,
    prefix: join(work, "coldlarge-nginx"),
    originPort: origin.port,
    tuned: true,
  });
  const flexo = await startFlexo(children, { dir: join(work, "coldlarge-flexo"), originPort: origin.port });
  try {
    await waitForOk(`${nginx.base}${REPO_DIR}/${DATABASE}`, { timeoutMs: 10_000, child: nginx.child });
    await waitForOk(flexo.base, { timeoutMs: 30_000, child: flexo.child });
    // The database synced through flexo, as pacman -Sy does: its entries are what flexo verifies against.
    const db = await fetch(`${flexo.base}${REPO_DIR}/${DATABASE}`);
    await db.arrayBuffer();
    if (db.status !== 200) throw new Error(`flexo answered ${db.status} for ${DATABASE}`);
    const base = { direct: origin.base, nginx: nginx.base, flexo: flexo.base };
    const cpuPids = {
      direct: [origin.child.pid],
      nginx: await nginxWorkerPids(nginx.child.pid, { count: 1 }),
      flexo: [flexo.child.pid],
    };
    const results: Record<string, ColdLargeRun[]> = {};
    for (let i = 0; i < runs; i++) {
      const order = i % 2 === 0 ? sources : [...sources].reverse();
      for (const name of order) {
        const writeBackMs = await (options.settleWriteBack ?? syncWriteBack)();
        const cpuBefore = await cpuSecondsOf(cpuPids[name]);
        const got = await curl(`${base[name]}${REPO_DIR}/${fileOf(i, name)}`);
        if (got.status !== 200 || got.bytes !== bytes) {
          throw new Error(`${name} answered ${got.status} with ${got.bytes} of ${bytes} bytes (cold, large)`);
        }
        // What a proxy does after the last byte (closing, committing the file) is part of the download.
        await sleep(300);
        const cpuSeconds = await cpuSecondsOf(cpuPids[name]) - cpuBefore;
        (results[name] ??= []).push({
          bytes,
          seconds: got.seconds,
          megabytesPerSecond: bytes / got.seconds / 1e6,
          cpuSeconds,
          cpuSecondsPerGiB: cpuSeconds / (bytes / GiB),
          writeBackMs,
        });
      }
    }
    const before = await integrityRejections(flexo.base);
    if (before !== 0) throw new Error(`flexo rejected ${before} of the measured downloads as corrupt`);
    const canary = await curl(`${flexo.base}${REPO_DIR}/${canaryFile}`);
    let after = before;
    for (let waited = 0; waited < 3000 && after === before; waited += 50) {
      await sleep(50);
      after = await integrityRejections(flexo.base);
    }
    if (after !== before + 1) {
      throw new Error(
        `flexo did not reject a package whose SHA-256 the database contradicts (HTTP ${canary.status}): ` +
          "it did not verify the measured downloads either",
      );
    }
    return {
      bytes,
      runs: results,
      canary: {
        status: canary.status,
        bytes: canary.bytes,
        integrityRejectionsBefore: before,
        integrityRejectionsAfter: after,
      },
    };
  } finally {
    await flexo.child.kill();
    await nginx.child.kill();
    await origin.child.kill();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}
