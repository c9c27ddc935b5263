/**
 * `deno task bench`: flexo side by side with nginx as a pacman caching proxy, both in front of the same local
 * origin, on 127.0.0.1. Prints a table of the figures of issue 6 (nginx, flexo, ratio, goal, pass/fail) and
 * writes them as JSON (default `bench/latest.json`). See BENCHMARKS.md for the method.
 *
 * ```
 * deno run --allow-all scripts/bench.ts [--quick] [--runs N] [--seconds S] [--out FILE] [--no-install]
 * ```
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  type Child,
  Children,
  ensureTools,
  firstLine,
  freePort,
  memoryOf,
  nginxConfig,
  nginxWorkerPid,
  serveTaskArgs,
  type Tools,
  waitForOk,
} from "./bench_tools.ts";
import { figuresOf, type Measured, table } from "./bench_report.ts";
import {
  type FreshFiles,
  measureColdFirstByte,
  measureLoad,
  measureMemory,
  measureSharedCold,
  measureStartup,
  type Proxy,
  type SharedRun,
} from "./bench_measure.ts";

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const MiB = 1024 * 1024;
const REPO_DIR = "core/os/x86_64";
const LARGE = "bench-large-1-1-x86_64.pkg.tar.zst";
const SMALL = "bench-small-1-1-x86_64.pkg.tar.zst";

/** What a benchmark run does. */
interface Settings {
  quick: boolean;
  runs: number;
  seconds: number;
  threads: number;
  largeBytes: number;
  smallBytes: number;
  ttfbSamples: number;
  sharedRuns: number;
  startupRuns: number;
  latencyMs: number;
  rate: number;
  install: boolean;
  out: string;
  /** Which groups of figures to measure. */
  only: Group[];
}

/** The groups of figures, in the order they are measured. */
const GROUPS = ["large", "small", "memory", "cold", "shared", "startup"] as const;
type Group = typeof GROUPS[number];

function parseSettings(args: string[]): Settings {
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
    only: only as Group[],
    quick,
    runs: number("runs", values.runs, quick ? 1 : 5),
    seconds: number("seconds", values.seconds, quick ? 1 : 5),
    threads: number("threads", values.threads, 2),
    largeBytes: quick ? 4 * MiB : 50 * MiB,
    smallBytes: 4 * 1024,
    ttfbSamples: quick ? 2 : 21,
    sharedRuns: quick ? 1 : 3,
    startupRuns: quick ? 1 : 5,
    latencyMs: 50,
    rate: 20_000_000,
    install: !values["no-install"],
    out: values.out ?? join(REPO_ROOT, "bench", "latest.json"),
  };
}

async function writeRandomFile(path: string, size: number): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const block = new Uint8Array(64 * 1024);
    for (let written = 0; written < size; written += block.byteLength) {
      crypto.getRandomValues(block);
      const part = block.subarray(0, Math.min(block.byteLength, size - written));
      let offset = 0;
      while (offset < part.byteLength) offset += await file.write(part.subarray(offset));
    }
  } finally {
    file.close();
  }
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Environment for flexo: this one without FLEXO_* settings, which would override the benchmark's file. */
function flexoEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(Deno.env.toObject()).filter(([key]) => !key.startsWith("FLEXO_")));
}

/** Starts flexo as `deno task serve` does (same permissions and runtime flags), with the benchmark's config. */
function spawnFlexo(children: Children, configPath: string): Child {
  const args = serveTaskArgs(Deno.readTextFileSync(join(REPO_ROOT, "deno.json")), {
    mainPath: join(REPO_ROOT, "main.ts"),
    extra: ["--config", configPath],
  });
  return children.spawn(Deno.execPath(), args, { env: flexoEnv(), clearEnv: true, cwd: REPO_ROOT });
}

async function writeFlexoConfig(path: string, options: { port: number; originPort: number; cache: string }) {
  await Deno.writeTextFile(
    path,
    `# Written by scripts/bench.ts
mirror_selection_method = "predefined"
mirrors_predefined = ["http://127.0.0.1:${options.originPort}/"]
cache_directory = "${options.cache}"
listen_ip_address = "127.0.0.1"
port = ${options.port}
log_level = "warning"
`,
  );
}

/** Fetches both test files through a proxy until it serves them from its cache, checking the bytes. */
async function warm(proxy: Proxy, expected: Record<string, string>): Promise<void> {
  for (const [name, digest] of Object.entries(expected)) {
    const url = `${proxy.base}${REPO_DIR}/${name}`;
    for (let attempt = 0; attempt < 20; attempt++) {
      const response = await fetch(url);
      const bytes = new Uint8Array(await response.arrayBuffer());
      if (response.status !== 200 || (await sha256(bytes)) !== digest) {
        throw new Error(
          `${proxy.name} served ${name} wrongly (HTTP ${response.status}, ${bytes.length} bytes)`,
        );
      }
      const hit = proxy.name === "flexo"
        ? response.headers.get("flexo-payload-origin") === "Cache"
        : response.headers.get("x-cache-status") === "HIT";
      if (hit) break;
      if (attempt === 19) throw new Error(`${proxy.name} does not serve ${name} from its cache`);
    }
  }
}

async function benchmark(
  settings: Settings,
  children: Children,
  options: { tools: Tools; work: string },
): Promise<Measured> {
  const { tools, work } = options;
  const root = join(work, "origin");
  await Deno.mkdir(join(root, REPO_DIR), { recursive: true });
  await writeRandomFile(join(root, REPO_DIR, LARGE), settings.largeBytes);
  await writeRandomFile(join(root, REPO_DIR, SMALL), settings.smallBytes);
  const expected = {
    [SMALL]: await sha256(await Deno.readFile(join(root, REPO_DIR, SMALL))),
    [LARGE]: await sha256(await Deno.readFile(join(root, REPO_DIR, LARGE))),
  };
  const files: FreshFiles = { root, dir: REPO_DIR };

  const origin = children.spawn(Deno.execPath(), [
    "run",
    "--allow-net=127.0.0.1",
    `--allow-read=${root}`,
    join(REPO_ROOT, "scripts", "bench_origin.ts"),
    "--root",
    root,
    "--latency-ms",
    String(settings.latencyMs),
    "--rate",
    String(settings.rate),
  ], { stdout: true });
  const originPort = JSON.parse(await firstLine(origin, 30_000)).port as number;
  const originBase = `http://127.0.0.1:${originPort}/`;

  const nginxPrefix = join(work, "nginx");
  await Deno.mkdir(nginxPrefix, { recursive: true });
  const nginxPort = freePort();
  await Deno.writeTextFile(
    join(nginxPrefix, "nginx.conf"),
    nginxConfig(nginxPrefix, { port: nginxPort, originPort }),
  );
  const nginx = children.spawn(tools.nginx, [
    "-p",
    nginxPrefix,
    "-c",
    join(nginxPrefix, "nginx.conf"),
    "-e",
    join(nginxPrefix, "error.log"),
  ]);

  const flexoPort = freePort();
  const flexoCache = join(work, "flexo-cache");
  const flexoConfig = join(work, "flexo.toml");
  await writeFlexoConfig(flexoConfig, { port: flexoPort, originPort, cache: flexoCache });
  const flexo = spawnFlexo(children, flexoConfig);

  await waitForOk(`http://127.0.0.1:${nginxPort}/${REPO_DIR}/${SMALL}`, { timeoutMs: 10_000, child: nginx });
  await waitForOk(`http://127.0.0.1:${flexoPort}/`, { timeoutMs: 30_000, child: flexo });
  const proxies: Proxy[] = [
    { name: "nginx", base: `http://127.0.0.1:${nginxPort}/`, pid: await nginxWorkerPid(nginx.pid) },
    { name: "flexo", base: `http://127.0.0.1:${flexoPort}/`, pid: flexo.pid },
  ];
  for (const proxy of proxies) await warm(proxy, expected);
  const measured: Measured = { flexoRssAfterWarmBytes: (await memoryOf(flexo.pid)).current };
  log("caches warm; measuring");

  const wants = (group: Group) => settings.only.includes(group);
  const rssAfter: Record<string, number> = {};
  measured.flexoRssAfterBytes = rssAfter;
  const load = { threads: settings.threads, seconds: settings.seconds, runs: settings.runs, workDir: work };
  if (wants("large")) {
    measured.large = await measureLoad(proxies, `${REPO_DIR}/${LARGE}`, { ...load, connections: 16 });
    rssAfter.large = (await memoryOf(flexo.pid)).current;
    log("warm large file throughput done");
  }
  if (wants("small")) {
    measured.small = await measureLoad(proxies, `${REPO_DIR}/${SMALL}`, { ...load, connections: 64 });
    rssAfter.small = (await memoryOf(flexo.pid)).current;
    log("warm small file rate done");
  }
  if (wants("memory")) {
    measured.memory = await measureMemory(proxies, `${REPO_DIR}/${LARGE}`, {
      ...load,
      connections: 64,
      runs: 1,
    });
    rssAfter.memory = (await memoryOf(flexo.pid)).current;
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
    rssAfter.cold = (await memoryOf(flexo.pid)).current;
    log("cold miss first byte done");
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
    rssAfter.shared = (await memoryOf(flexo.pid)).current;
    log("shared cold download done");
  }
  // Both still serve the right bytes after all that load (and flexo its small file from memory).
  for (const proxy of proxies) await warm(proxy, expected);
  measured.flexoLifetimePeakBytes = (await memoryOf(flexo.pid)).peak;
  await flexo.kill();
  if (wants("startup")) {
    const startup: number[] = [];
    for (let run = 0; run < settings.startupRuns; run++) {
      const port = freePort();
      const config = join(work, `flexo-startup-${run}.toml`);
      await writeFlexoConfig(config, { port, originPort, cache: flexoCache });
      startup.push(
        await measureStartup(children, {
          spawn: (c) => spawnFlexo(c, config),
          url: `http://127.0.0.1:${port}/${REPO_DIR}/${SMALL}`,
          timeoutMs: 20_000,
          pollMs: 2,
        }),
      );
    }
    measured.startupMs = startup;
    log("start-up done");
  }
  return measured;
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
  const tools = await ensureTools({ install: settings.install });
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
    passed: figures.filter((f) => f.pass).length,
    total: figures.length,
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
