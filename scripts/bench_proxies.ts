/**
 * Starting the proxies the benchmark (`scripts/bench.ts`) measures: nginx as a pacman caching proxy and flexo
 * as `deno task serve` runs it, each in front of one origin on 127.0.0.1, either quiet (no access log, flexo at
 * `log_level = "warning"`) or logging as users run them (nginx's access log, flexo's request log).
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type Child,
  type Children,
  firstLine,
  freePort,
  nginxConfig,
  serveTaskArgs,
  sleep,
} from "./bench_tools.ts";

/** The repository's root directory (where `deno.json` and `main.ts` are). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** A proxy process started by {@linkcode startNginx} or {@linkcode startFlexo}. */
export interface StartedProxy {
  child: Child;
  /** `http://127.0.0.1:PORT/` */
  base: string;
  /** The file its log goes to, when it logs. */
  logFile?: string;
}

/** Environment for flexo: this one without FLEXO_* settings, which would override the benchmark's file. */
function flexoEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(Deno.env.toObject()).filter(([key]) => !key.startsWith("FLEXO_")));
}

/**
 * Starts flexo as `deno task serve` does (same permissions and runtime flags), with the benchmark's config.
 * With `stderrFile`, its log lines (stderr) are appended to that file; `mainPath` runs another program in
 * main.ts's place (the executable's bundle of it).
 */
export function spawnFlexo(
  children: Children,
  configPath: string,
  options: { stderrFile?: string; mainPath?: string } = {},
): Child {
  const args = serveTaskArgs(Deno.readTextFileSync(join(REPO_ROOT, "deno.json")), {
    mainPath: options.mainPath ?? join(REPO_ROOT, "main.ts"),
    extra: ["--config", configPath],
  });
  return children.spawn(Deno.execPath(), args, {
    env: flexoEnv(),
    clearEnv: true,
    cwd: REPO_ROOT,
    stderrFile: options.stderrFile,
  });
}

/**
 * Starts flexo literally as users start it from a checkout: `deno task serve --config FILE` in the repository,
 * a `deno task` process that runs the serve task's `deno run` as its child (and forwards SIGTERM to it).
 */
export function spawnFlexoTask(children: Children, configPath: string): Child {
  const task = children.spawn(Deno.execPath(), ["task", "serve", "--config", configPath], {
    env: flexoEnv(),
    clearEnv: true,
    cwd: REPO_ROOT,
  });
  const killTask = task.kill;
  // `deno task` may end before the flexo it forwarded SIGTERM to: wait for that one too.
  task.kill = async (graceMs = 2000) => {
    const flexos = await childPidsOf(task.pid);
    await killTask(graceMs);
    const deadline = performance.now() + graceMs;
    for (const pid of flexos) {
      while (await isRunning(pid)) {
        if (performance.now() > deadline) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch {
            // gone
          }
        }
        await sleep(10);
      }
    }
  };
  return task;
}

/** The pids of a process's children. */
async function childPidsOf(parent: number): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === parent) {
        pids.push(Number(entry.name));
      }
    } catch {
      // it ended while we looked
    }
  }
  return pids;
}

/** False once a process has ended (or is a zombie no one waits for). */
async function isRunning(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/**
 * Writes flexo's configuration for the benchmark: the origin as its only mirror. `logged` leaves `log_level`
 * at flexo's default (a line per request); otherwise it is `"warning"`.
 */
export async function writeFlexoConfig(
  path: string,
  options: { port: number; originPort: number; cache: string; logged?: boolean },
): Promise<void> {
  await Deno.writeTextFile(
    path,
    `# Written by scripts/bench.ts
mirror_selection_method = "predefined"
mirrors_predefined = ["http://127.0.0.1:${options.originPort}/"]
cache_directory = "${options.cache}"
listen_ip_address = "127.0.0.1"
port = ${options.port}
# No balancer to drain for: stop at once.
shutdown_drain_secs = 0
${options.logged ? "# log_level: flexo's default\n" : 'log_level = "warning"\n'}`,
  );
}

/**
 * Starts flexo with a new cache `<dir>/cache` and config `<dir>/flexo.toml` in front of the origin; with
 * `logged`, at its default log level with its log appended to `<dir>/flexo.log`. Does not wait for it.
 */
export async function startFlexo(
  children: Children,
  options: { dir: string; originPort: number; logged?: boolean },
): Promise<StartedProxy> {
  await Deno.mkdir(options.dir, { recursive: true });
  const port = freePort();
  const config = join(options.dir, "flexo.toml");
  await writeFlexoConfig(config, {
    port,
    originPort: options.originPort,
    cache: join(options.dir, "cache"),
    logged: options.logged,
  });
  const logFile = options.logged ? join(options.dir, "flexo.log") : undefined;
  const child = spawnFlexo(children, config, { stderrFile: logFile });
  return { child, base: `http://127.0.0.1:${port}/`, logFile };
}

/**
 * Starts nginx as configured by `nginxConfig()` with everything below `prefix`; with `accessLog`, its access
 * log on (`<prefix>/access.log`); with `tuned`, `open_file_cache` on; `workers` worker processes (default 1).
 * Does not wait for it.
 */
export async function startNginx(
  children: Children,
  options: {
    nginx: string;
    prefix: string;
    originPort: number;
    accessLog?: boolean;
    tuned?: boolean;
    workers?: number | "auto";
  },
): Promise<StartedProxy> {
  const { prefix } = options;
  await Deno.mkdir(prefix, { recursive: true });
  const port = freePort();
  await Deno.writeTextFile(
    join(prefix, "nginx.conf"),
    nginxConfig(prefix, {
      port,
      originPort: options.originPort,
      accessLog: options.accessLog,
      tuned: options.tuned,
      workers: options.workers,
    }),
  );
  const child = children.spawn(options.nginx, [
    "-p",
    prefix,
    "-c",
    join(prefix, "nginx.conf"),
    "-e",
    join(prefix, "error.log"),
  ]);
  return {
    child,
    base: `http://127.0.0.1:${port}/`,
    logFile: options.accessLog ? join(prefix, "access.log") : undefined,
  };
}

/** The size of a log file in bytes; 0 when there is none. */
export async function logBytes(proxy: StartedProxy): Promise<number> {
  if (proxy.logFile === undefined) return 0;
  try {
    return (await Deno.stat(proxy.logFile)).size;
  } catch {
    return 0;
  }
}

/** The value of an unlabelled metric (`NAME VALUE`) in Prometheus text; undefined when it is not there. */
export function metricValue(text: string, name: string): number | undefined {
  for (const line of text.split("\n")) {
    const [key, value, extra] = line.trim().split(/\s+/);
    if (key === name && value !== undefined && extra === undefined) return Number(value);
  }
  return undefined;
}

/**
 * The log lines a flexo dropped since its start because its output (stderr) did not keep up
 * (`flexo_log_lines_dropped_total` of `GET /metrics`): a logging row is only a like-for-like comparison with
 * nginx, which writes every line, when this is 0.
 */
export async function flexoLogLinesDropped(base: string): Promise<number> {
  const response = await fetch(`${base}metrics`);
  const text = await response.text();
  const value = metricValue(text, "flexo_log_lines_dropped_total");
  if (response.status !== 200 || value === undefined) {
    throw new Error(`${base}metrics answered ${response.status} without flexo_log_lines_dropped_total`);
  }
  return value;
}

/** The benchmark's origin (`scripts/bench_origin.ts`), running as its own process. */
export interface StartedOrigin {
  child: Child;
  port: number;
  /** `http://127.0.0.1:PORT/` */
  base: string;
}

/**
 * Starts `scripts/bench_origin.ts` serving `root`, waiting `latencyMs` before every answer and pacing every
 * body to `rate` bytes per second (0: no limit); resolves once it listens.
 */
export async function startOrigin(
  children: Children,
  options: { root: string; latencyMs: number; rate: number },
): Promise<StartedOrigin> {
  const child = children.spawn(Deno.execPath(), [
    "run",
    "--allow-net=127.0.0.1",
    `--allow-read=${options.root}`,
    join(REPO_ROOT, "scripts", "bench_origin.ts"),
    "--root",
    options.root,
    "--latency-ms",
    String(options.latencyMs),
    "--rate",
    String(options.rate),
  ], { stdout: true });
  const port = JSON.parse(await firstLine(child, 30_000)).port as number;
  return { child, port, base: `http://127.0.0.1:${port}/` };
}

/**
 * Waits until a proxy's log file has stopped growing for `quietMs` (flexo writes its log lines behind its
 * answers, seconds behind under load), so that the writing does not fall into the next measurement. Returns
 * the milliseconds it waited; throws after `timeoutMs`.
 */
export async function settleLog(
  proxy: StartedProxy,
  options: { quietMs: number; timeoutMs: number },
): Promise<number> {
  const began = performance.now();
  let size = await logBytes(proxy);
  let changedAt = began;
  while (performance.now() - changedAt < options.quietMs) {
    if (performance.now() - began > options.timeoutMs) {
      throw new Error(
        `${proxy.logFile} still grew ${options.timeoutMs} ms after the load ended; is the process stuck writing?`,
      );
    }
    await sleep(50);
    const now = await logBytes(proxy);
    if (now !== size) {
      size = now;
      changedAt = performance.now();
    }
  }
  return changedAt - began;
}
