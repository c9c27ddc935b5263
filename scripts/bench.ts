/**
 * `deno task bench`: flexo side by side with nginx as a pacman caching proxy, both in front of the same local
 * origin, on 127.0.0.1. Prints a table of the figures of issue 6 (nginx, flexo, ratio, goal, pass/fail), the
 * same with the proxies' logs on, against nginx tuned as its users tune it (1 worker and `auto`), the CPU
 * seconds per GiB served, a verified cold download of a large package from a fast mirror
 * (`scripts/bench_cold_large.ts`), start-up to the first answer, and the real pacman client's downloads
 * (`scripts/bench_pacman.ts`), and writes them as JSON (default `bench/latest.json`). See BENCHMARKS.md for the
 * method.
 *
 * ```
 * deno run --allow-all scripts/bench.ts [--quick] [--only GROUP,...] [--runs N] [--seconds S] [--out FILE]
 *   [--no-install]
 * ```
 *
 * @module
 */

import { dirname, join } from "node:path";
import {
  Children,
  ensureTools,
  freePort,
  memoryOf,
  nginxWorkerPids,
  serveTaskArgs,
  type Tools,
  waitForOk,
} from "./bench_tools.ts";
import { figuresOf, type Measured, NO_GOAL, table } from "./bench_report.ts";
import {
  type FreshFiles,
  measureColdFirstByte,
  measureLoad,
  measureMemory,
  measureSharedCold,
  measureStartup,
  type Proxy,
  type ProxyName,
  type SharedRun,
} from "./bench_measure.ts";
import {
  flexoLogLinesDropped,
  logBytes,
  REPO_ROOT,
  settleLog,
  spawnFlexo,
  spawnFlexoTask,
  type StartedProxy,
  startFlexo,
  startNginx,
  startOrigin,
  writeFlexoConfig,
} from "./bench_proxies.ts";
import { checkPacmanTools, measurePacman } from "./bench_pacman.ts";
import { measureColdDisk } from "./bench_cold_disk.ts";
import { mountSlowDisk } from "./bench_slow_disk.ts";
import { measureColdLarge, syncWriteBack } from "./bench_cold_large.ts";
import { BENCH_USAGE, type Group, parseSettings, type Settings } from "./bench_settings.ts";
import { writeAll } from "../src/write_all.ts";
import { buildBundle } from "./compile.ts";

const REPO_DIR = "core/os/x86_64";
const LARGE = "bench-large-1-1-x86_64.pkg.tar.zst";
const SMALL = "bench-small-1-1-x86_64.pkg.tar.zst";

async function writeRandomFile(path: string, size: number): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const block = new Uint8Array(64 * 1024);
    for (let written = 0; written < size; written += block.byteLength) {
      crypto.getRandomValues(block);
      await writeAll(file, block.subarray(0, Math.min(block.byteLength, size - written)));
    }
  } finally {
    file.close();
  }
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Fetches both test files through a proxy until it serves them from its cache, checking the bytes. */
async function warm(proxy: Proxy, expected: Record<string, string>): Promise<void> {
  for (const [name, digest] of Object.entries(expected)) {
    const url = `${proxy.base}${REPO_DIR}/${name}`;
    // A download's commit (its flush to disk) can take a while on a loaded machine: ask again for up to 10 s.
    const attempts = 100;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 100));
      const response = await fetch(url);
      const bytes = new Uint8Array(await response.arrayBuffer());
      if (response.status !== 200 || (await sha256(bytes)) !== digest) {
        throw new Error(
          `${proxy.name} served ${name} wrongly (HTTP ${response.status}, ${bytes.length} bytes)`,
        );
      }
      const hit = proxy.name.startsWith("flexo")
        ? response.headers.get("flexo-payload-origin") === "Cache"
        : response.headers.get("x-cache-status") === "HIT";
      if (hit) break;
      if (attempt === attempts - 1) throw new Error(`${proxy.name} does not serve ${name} from its cache`);
    }
  }
}

async function benchmark(
  settings: Settings,
  children: Children,
  options: { tools: Tools; work: string },
): Promise<Measured> {
  const measured: Measured = {};
  if (settings.only.some((group) => group !== "pacman")) {
    await benchmarkFiles(settings, children, { ...options, measured });
  }
  if (settings.only.includes("pacman")) {
    measured.pacman = await measurePacman(children, {
      nginx: options.tools.nginx,
      work: join(options.work, "pacman"),
      packages: settings.pacmanPackages,
      runs: settings.pacmanRuns,
      warmupRounds: settings.quick ? 0 : 1,
      parallel: [1, 5],
      log,
    });
    log("pacman done");
  }
  return measured;
}

/** Measures the groups on the two test files (all but "pacman") into `measured`. */
async function benchmarkFiles(
  settings: Settings,
  children: Children,
  options: { tools: Tools; work: string; measured: Measured },
): Promise<void> {
  const { tools, work, measured } = options;
  const root = join(work, "origin");
  await Deno.mkdir(join(root, REPO_DIR), { recursive: true });
  await writeRandomFile(join(root, REPO_DIR, LARGE), settings.largeBytes);
  await writeRandomFile(join(root, REPO_DIR, SMALL), settings.smallBytes);
  const expected = {
    [SMALL]: await sha256(await Deno.readFile(join(root, REPO_DIR, SMALL))),
    [LARGE]: await sha256(await Deno.readFile(join(root, REPO_DIR, LARGE))),
  };
  const files: FreshFiles = { root, dir: REPO_DIR };

  const origin = await startOrigin(children, { root, latencyMs: settings.latencyMs, rate: settings.rate });
  const originBase = origin.base;
  const nginx = await startNginx(children, {
    nginx: tools.nginx,
    prefix: join(work, "nginx"),
    originPort: origin.port,
  });
  const flexoDir = join(work, "flexo");
  const flexo = await startFlexo(children, { dir: flexoDir, originPort: origin.port });
  const proxies = await readyProxies({ nginx, flexo });
  for (const proxy of proxies) await warm(proxy, expected);
  const flexoPid = flexo.child.pid;
  measured.flexoRssAfterWarmBytes = (await memoryOf(flexoPid)).current;

  const wants = (group: Group) => settings.only.includes(group);
  // The warm load rows also compare nginx tuned as its users tune it, with 1 worker and with one per core, and
  // all four again with their logs on, as users run them: a second nginx of each kind and a second flexo.
  const loadProxies: ReadyProxy[] = [];
  const loggedProxies: ReadyProxy[] = [];
  if (wants("large") || wants("small")) {
    const tunedNginx = (name: string, accessLog: boolean, workers: 1 | "auto") =>
      startNginx(children, {
        nginx: tools.nginx,
        prefix: join(work, name),
        originPort: origin.port,
        accessLog,
        tuned: true,
        workers,
      });
    const tuned = await readyNginx("nginx_tuned", await tunedNginx("nginx-tuned", false, 1));
    const tunedAuto = await readyNginx(
      "nginx_tuned_auto",
      await tunedNginx("nginx-tuned-auto", false, "auto"),
    );
    loadProxies.push(proxies[0], tuned, tunedAuto, proxies[1]);
    const [nginxLogged, flexoLogged] = await readyProxies({
      nginx: await startNginx(children, {
        nginx: tools.nginx,
        prefix: join(work, "nginx-logged"),
        originPort: origin.port,
        accessLog: true,
      }),
      flexo: await startFlexo(children, {
        dir: join(work, "flexo-logged"),
        originPort: origin.port,
        logged: true,
      }),
    });
    loggedProxies.push(
      nginxLogged,
      await readyNginx("nginx_tuned", await tunedNginx("nginx-tuned-logged", true, 1)),
      await readyNginx("nginx_tuned_auto", await tunedNginx("nginx-tuned-auto-logged", true, "auto")),
      flexoLogged,
    );
    for (const proxy of [tuned, tunedAuto, ...loggedProxies]) await warm(proxy, expected);
  }
  // The warm-ups wrote every proxy's copy of the files (over 400 MiB): written back from 30 s later on, in the
  // middle of the first runs, unless done now.
  measured.writeBackAfterWarmMs = await syncWriteBack();
  log("caches warm; measuring");

  const rssAfter: Record<string, number> = {};
  measured.flexoRssAfterBytes = rssAfter;
  const load = { threads: settings.threads, seconds: settings.seconds, runs: settings.runs, workDir: work };
  /** The load rows with the logs on: after each run, waits until the proxy's log stopped growing. */
  const loggedLoad = async (path: string, connections: number) => {
    const flexoBase = loggedProxies.find((p) => p.name === "flexo")!.base;
    const droppedBefore = await flexoLogLinesDropped(flexoBase);
    const logStart = await logSizes(loggedProxies);
    const logSettleMs: Record<string, number[]> = {};
    const runs = await measureLoad(loggedProxies, path, {
      ...load,
      connections,
      afterRun: async (proxy) => {
        const started = loggedProxies.find((p) => p.name === proxy.name)!.started;
        (logSettleMs[proxy.name] ??= []).push(await settleLog(started, { quietMs: 300, timeoutMs: 120_000 }));
      },
    });
    const logEnd = await logSizes(loggedProxies);
    return {
      runs,
      logBytes: Object.fromEntries(loggedProxies.map((p) => [p.name, logEnd[p.name] - logStart[p.name]])),
      logSettleMs,
      flexoPeakRssBytes: (await memoryOf(loggedProxies.find((p) => p.name === "flexo")!.pid)).peak,
      flexoLogLinesDropped: await flexoLogLinesDropped(flexoBase) - droppedBefore,
    };
  };
  if (wants("large")) {
    measured.large = await measureLoad(loadProxies, `${REPO_DIR}/${LARGE}`, { ...load, connections: 16 });
    rssAfter.large = (await memoryOf(flexoPid)).current;
    log("warm large file throughput done");
    measured.largeLogged = await loggedLoad(`${REPO_DIR}/${LARGE}`, 16);
    log("warm large file throughput with logs done");
  }
  if (wants("small")) {
    measured.small = await measureLoad(loadProxies, `${REPO_DIR}/${SMALL}`, { ...load, connections: 64 });
    rssAfter.small = (await memoryOf(flexoPid)).current;
    log("warm small file rate done");
    measured.smallLogged = await loggedLoad(`${REPO_DIR}/${SMALL}`, 64);
    log("warm small file rate with logs done");
  }
  for (const proxy of [...loadProxies.slice(1, 3), ...loggedProxies]) await proxy.started.child.kill();
  if (wants("memory")) {
    measured.memory = await measureMemory(proxies, `${REPO_DIR}/${LARGE}`, {
      ...load,
      connections: 64,
      runs: 1,
    });
    rssAfter.memory = (await memoryOf(flexoPid)).current;
    log("memory done");
  }
  if (wants("cold")) {
    measured.cold = await measureColdFirstByte(proxies, {
      originBase,
      files,
      source: SMALL,
      samples: settings.ttfbSamples,
      warmup: 2,
    });
    rssAfter.cold = (await memoryOf(flexoPid)).current;
    log("cold miss first byte done");
    measured.coldLarge = await measureColdLarge(children, {
      nginx: tools.nginx,
      work,
      bytes: settings.coldLargeBytes,
      runs: settings.runs,
    });
    log("large cold download done");
  }
  if (wants("shared")) {
    const shared: Record<string, SharedRun[]> = {};
    for (let run = 0; run < settings.sharedRuns; run++) {
      for (const proxy of proxies) {
        const result = await measureSharedCold(proxy, {
          originBase,
          files,
          source: LARGE,
          size: settings.largeBytes,
          clients: 5,
          gapMs: 500,
        });
        (shared[proxy.name] ??= []).push(result);
      }
    }
    measured.shared = shared;
    rssAfter.shared = (await memoryOf(flexoPid)).current;
    log("shared cold download done");
  }
  if (wants("colddisk")) {
    // Straight into flexo's cache: fetching it through the paced origin would take a minute.
    const huge = "bench-huge-1-1-x86_64.pkg.tar.zst";
    const cached = join(flexoDir, "cache", REPO_DIR, huge);
    // On a slow disk where FUSE allows (this file linked from the cache), else on the cache's own disk.
    const slow = await mountSlowDisk(work);
    if (!slow.ok) log(`colddisk: no slow disk, the cache's own disk instead: ${slow.reason}`);
    try {
      await writeRandomFile(slow.ok ? join(slow.disk.backing, huge) : cached, settings.coldDiskBytes);
      if (slow.ok) await Deno.symlink(join(slow.disk.mountpoint, huge), cached);
      measured.coldDisk = await measureColdDisk({
        largeUrl: `${flexo.base}${REPO_DIR}/${huge}`,
        largeBytes: settings.coldDiskBytes,
        smallUrl: `${flexo.base}${REPO_DIR}/${SMALL}`,
        downloads: 4,
        disk: slow.ok ? slow.disk.description : "the cache's own disk",
        largePath: cached,
      });
    } finally {
      await Deno.remove(cached).catch(() => {});
      if (slow.ok) await slow.disk.unmount();
    }
    log("cold disk done");
  }
  // Both still serve the right bytes after all that load (and flexo its small file from memory).
  for (const proxy of proxies) await warm(proxy, expected);
  measured.flexoLifetimePeakBytes = (await memoryOf(flexoPid)).peak;
  await flexo.child.kill();
  if (wants("startup")) {
    // Three times per run: the serve task's `deno run` command line spawned directly, `deno task serve` itself
    // (which first reads deno.json and then spawns that command line), and that command line running the
    // bundle the executable embeds (scripts/compile.ts; no executable can be built here), from one place so that
    // Deno's code cache knows it after the first run, as it knows main.ts's modules.
    const bundle = await buildBundle();
    const times = { run: [] as number[], task: [] as number[], bundle: [] as number[] };
    for (let run = 0; run < settings.startupRuns; run++) {
      for (const how of ["run", "task", "bundle"] as const) {
        const port = freePort();
        const config = join(work, `flexo-startup-${run}-${how}.toml`);
        await writeFlexoConfig(config, { port, originPort: origin.port, cache: join(flexoDir, "cache") });
        const ms = await measureStartup(children, {
          spawn: (c) =>
            how === "task"
              ? spawnFlexoTask(c, config)
              : spawnFlexo(c, config, how === "bundle" ? { mainPath: bundle } : {}),
          url: `http://127.0.0.1:${port}/${REPO_DIR}/${SMALL}`,
          timeoutMs: 20_000,
          pollMs: 2,
        });
        times[how].push(ms);
      }
    }
    measured.startupMs = times.run;
    measured.startupTaskMs = times.task;
    measured.startupBundleMs = times.bundle;
    log("start-up done");
  }
  await nginx.child.kill();
  await origin.child.kill();
}

/** A proxy under test together with its process. */
type ReadyProxy = Proxy & { started: StartedProxy };

/** Waits until nginx and flexo answer, and describes them as the measurements want them. */
async function readyProxies(started: { nginx: StartedProxy; flexo: StartedProxy }): Promise<ReadyProxy[]> {
  const { nginx, flexo } = started;
  await waitForOk(flexo.base, { timeoutMs: 30_000, child: flexo.child });
  return [
    await readyNginx("nginx", nginx),
    // The serve task's deno process itself: spawnFlexo runs `deno run`, with no `deno task` parent.
    { name: "flexo", base: flexo.base, pid: flexo.child.pid, cpuPids: [flexo.child.pid], started: flexo },
  ];
}

/** Waits until an nginx answers, and finds its workers (all of them with `worker_processes auto`). */
async function readyNginx(name: ProxyName, nginx: StartedProxy): Promise<ReadyProxy> {
  await waitForOk(`${nginx.base}${REPO_DIR}/${SMALL}`, { timeoutMs: 10_000, child: nginx.child });
  // The master forks its workers one after another; by now it has, but give the last a moment to show up.
  await new Promise((resolve) => setTimeout(resolve, 200));
  const workers = await nginxWorkerPids(nginx.child.pid, { count: 1 });
  return { name, base: nginx.base, pid: workers[0], cpuPids: workers, started: nginx };
}

async function logSizes(proxies: readonly ReadyProxy[]): Promise<Record<string, number>> {
  const sizes: Record<string, number> = {};
  for (const proxy of proxies) sizes[proxy.name] = await logBytes(proxy.started);
  return sizes;
}

function log(message: string): void {
  console.error(`bench: ${message}`);
}

async function gitCommit(): Promise<string | null> {
  try {
    const out = await new Deno.Command("git", { args: ["rev-parse", "HEAD"], cwd: REPO_ROOT }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  } catch {
    return null;
  }
}

async function main(args: string[]): Promise<number> {
  const settings = parseSettings(args);
  if (settings.help) {
    console.log(BENCH_USAGE);
    return 0;
  }
  const tools = await ensureTools({ install: settings.install });
  // Before minutes of other measurements, rather than after them.
  if (settings.only.includes("pacman")) await checkPacmanTools();
  const children = new Children();
  const work = await Deno.makeTempDir({ prefix: "flexo-bench-" });
  const interrupted = async () => {
    await children.killAll();
    await Deno.remove(work, { recursive: true }).catch(() => {});
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupted);
  Deno.addSignalListener("SIGTERM", interrupted);
  const began = performance.now();
  let measured: Measured;
  try {
    measured = await benchmark(settings, children, { tools, work });
  } finally {
    await children.killAll();
    await Deno.remove(work, { recursive: true }).catch(() => {});
    Deno.removeSignalListener("SIGINT", interrupted);
    Deno.removeSignalListener("SIGTERM", interrupted);
  }
  const figures = figuresOf(measured);
  const result = {
    schema: "flexo-bench/1",
    date: new Date().toISOString(),
    commit: await gitCommit(),
    machine: {
      cpus: navigator.hardwareConcurrency,
      os: `${Deno.build.os} ${Deno.osRelease()}`,
      deno: Deno.version.deno,
      nginx: tools.nginxVersion,
      wrk: tools.wrkVersion,
    },
    settings: { ...settings, out: undefined, install: undefined },
    // How flexo was started: the serve task of deno.json, as users run it.
    flexoCommand: [
      "deno",
      ...serveTaskArgs(await Deno.readTextFile(join(REPO_ROOT, "deno.json")), {
        mainPath: "main.ts",
        extra: ["--config", "FILE"],
      }),
    ].join(" "),
    seconds: Math.round((performance.now() - began) / 100) / 10,
    // Rows without a goal (NO_GOAL) are there for reference and count neither way.
    passed: figures.filter((f) => f.goal !== NO_GOAL && f.pass).length,
    total: figures.filter((f) => f.goal !== NO_GOAL).length,
    figures,
    details: measured,
  };
  await Deno.mkdir(dirname(settings.out), { recursive: true });
  await Deno.writeTextFile(settings.out, JSON.stringify(result, null, 2) + "\n");
  console.log(table(figures));
  console.log(
    `\n${result.passed} of ${result.total} goals met; ${settings.runs} run(s) of ${settings.seconds} s per load ` +
      `figure, medians; took ${result.seconds} s; written to ${settings.out}`,
  );
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(1);
  }
}
