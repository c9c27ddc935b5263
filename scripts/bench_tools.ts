/**
 * Tools for the benchmark (`scripts/bench.ts`): finding or installing nginx and wrk, running child processes
 * that are always killed, nginx as a pacman caching proxy, wrk with a machine-readable summary, peak memory of
 * a process, and medians.
 *
 * @module
 */

import { join } from "node:path";
import { writeAll } from "../src/write_all.ts";

/** Where Debian's nginx-light puts its binary. */
export const NGINX_BINARY = "/usr/sbin/nginx";

/** The programs the benchmark needs. */
export interface Tools {
  nginx: string;
  wrk: string;
  nginxVersion: string;
  wrkVersion: string;
}

/** Finds nginx and wrk; installs Debian's `nginx-light` and `wrk` when missing and `install` is set. */
export async function ensureTools(options: { install: boolean }): Promise<Tools> {
  let found = await findTools();
  if (found) return found;
  if (!options.install) {
    throw new Error(
      `nginx (${NGINX_BINARY}) or wrk is missing: install them with "apt-get install -y nginx-light wrk" ` +
        "or run the benchmark without --no-install",
    );
  }
  if (Deno.uid() !== 0) {
    throw new Error(
      'nginx or wrk is missing and this is not root: run "sudo apt-get install -y nginx-light wrk" first',
    );
  }
  console.error("Installing nginx-light and wrk with apt-get ...");
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  let install = await run("apt-get", ["install", "-y", "--no-install-recommends", "nginx-light", "wrk"], {
    env,
  });
  if (!install.success) {
    await run("apt-get", ["update"], { env });
    install = await run("apt-get", ["install", "-y", "--no-install-recommends", "nginx-light", "wrk"], {
      env,
    });
  }
  found = await findTools();
  if (!found) {
    throw new Error(`apt-get could not install nginx-light and wrk:\n${install.output.slice(-2000)}`);
  }
  return found;
}

async function findTools(): Promise<Tools | undefined> {
  const nginx = await run(NGINX_BINARY, ["-v"]);
  const wrk = await run("wrk", ["--version"]);
  // wrk --version exits 1 after printing its version and usage.
  if (!nginx.success || !wrk.spawned || !wrk.output.startsWith("wrk ")) return undefined;
  return {
    nginx: NGINX_BINARY,
    wrk: "wrk",
    nginxVersion: nginx.output.trim().replace(/^nginx version: /, ""),
    wrkVersion: wrk.output.split(" ").slice(0, 2).join(" "),
  };
}

/**
 * The `deno` arguments of the `serve` task in `deno.json` (the command line users run), with the entry point
 * replaced by `mainPath` and `extra` arguments appended, so that the benchmark runs flexo exactly as users do:
 * the same permissions and the same runtime flags (`--v8-flags=...`). Throws when the task is not a plain
 * `deno run [flags] main.ts`.
 */
export function serveTaskArgs(denoJson: string, options: { mainPath: string; extra: string[] }): string[] {
  const task = (JSON.parse(denoJson) as { tasks?: Record<string, unknown> }).tasks?.serve;
  const words = typeof task === "string" ? task.trim().split(/\s+/) : [];
  if (words[0] !== "deno" || words[1] !== "run" || words.at(-1) !== "main.ts") {
    throw new Error(
      `deno.json: the serve task should be "deno run [flags] main.ts" for the benchmark to run it, not ${
        JSON.stringify(task)
      }`,
    );
  }
  const flags = words.slice(2, -1);
  const odd = flags.find((flag) => !flag.startsWith("--"));
  if (odd !== undefined) {
    throw new Error(
      `deno.json: the serve task has "${odd}", which is not a deno flag; the benchmark cannot run it`,
    );
  }
  return ["run", ...flags, options.mainPath, ...options.extra];
}

/** Runs a program to its end; never throws for a missing program (`spawned` is then false) or a failure. */
export async function run(
  program: string,
  args: string[],
  options: { env?: Record<string, string> } = {},
): Promise<{ success: boolean; spawned: boolean; output: string }> {
  try {
    const out = await new Deno.Command(program, { args, env: options.env, stdin: "null" }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return { success: out.success, spawned: true, output: text };
  } catch (error) {
    return { success: false, spawned: false, output: String(error) };
  }
}

/** A child process that {@linkcode Children.killAll} will end. */
export interface Child {
  process: Deno.ChildProcess;
  pid: number;
  /** What it wrote to stderr (the last 16 KiB), for error messages. */
  stderr: () => string;
  /** Ends it: SIGTERM, then SIGKILL after `graceMs`. */
  kill(graceMs?: number): Promise<void>;
}

/** Every process the benchmark started, so that all of them are killed also on failure. */
export class Children {
  #live = new Set<Child>();

  /**
   * Starts a program with stdin closed, stdout piped (if `stdout` is set) and stderr kept for errors. With
   * `stderrFile`, everything it writes to stderr is also appended to that file, read from the pipe as a log
   * collector (journald, a container runtime) would.
   */
  spawn(
    program: string,
    args: string[],
    options: {
      env?: Record<string, string>;
      clearEnv?: boolean;
      stdout?: boolean;
      cwd?: string;
      stderrFile?: string;
    } = {},
  ): Child {
    const file = options.stderrFile === undefined
      ? undefined
      : Deno.openSync(options.stderrFile, { append: true, create: true });
    let process: Deno.ChildProcess;
    try {
      process = new Deno.Command(program, {
        args,
        env: options.env,
        clearEnv: options.clearEnv,
        cwd: options.cwd,
        stdin: "null",
        stdout: options.stdout ? "piped" : "null",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      file?.close();
      throw error;
    }
    let errText = "";
    (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of process.stderr) {
          if (file) await writeAll(file, chunk);
          errText = (errText + decoder.decode(chunk, { stream: true })).slice(-16384);
        }
      } catch {
        // the process went away
      } finally {
        file?.close();
      }
    })();
    const live = this.#live;
    const child: Child = {
      process,
      pid: process.pid,
      stderr: () => errText,
      async kill(graceMs = 2000) {
        live.delete(child);
        await stopProcess(process, graceMs);
      },
    };
    live.add(child);
    return child;
  }

  /** Kills every process still running. */
  async killAll(): Promise<void> {
    await Promise.all([...this.#live].map((child) => child.kill()));
  }
}

async function stopProcess(process: Deno.ChildProcess, graceMs: number): Promise<void> {
  const ended = process.status.then(() => true);
  try {
    process.kill("SIGTERM");
  } catch {
    // already gone
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)));
  const done = await Promise.race([ended, late]);
  clearTimeout(timer);
  if (!done) {
    try {
      process.kill("SIGKILL");
    } catch {
      // already gone
    }
    await process.status;
  }
}

/** Reads the first line a child prints on stdout, within `timeoutMs`. */
export async function firstLine(child: Child, timeoutMs: number): Promise<string> {
  const reader = child.process.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = performance.now() + timeoutMs;
  try {
    while (!text.includes("\n")) {
      const left = deadline - performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((
        resolve,
      ) => (timer = setTimeout(() => resolve("timeout"), left)));
      const result = await Promise.race([reader.read(), timeout]);
      clearTimeout(timer);
      if (result === "timeout" || result.done) {
        throw new Error(`process ${child.pid} printed no line within ${timeoutMs} ms: ${child.stderr()}`);
      }
      text += decoder.decode(result.value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
  return text.slice(0, text.indexOf("\n"));
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Waits until `url` answers 200 (polling every `intervalMs`); throws after `timeoutMs`. */
export async function waitForOk(
  url: string,
  options: { timeoutMs: number; intervalMs?: number; child?: Child },
): Promise<void> {
  const deadline = performance.now() + options.timeoutMs;
  let last = "";
  while (performance.now() < deadline) {
    try {
      const response = await fetch(url);
      await response.body?.cancel();
      if (response.status === 200) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await sleep(options.intervalMs ?? 20);
  }
  const stderr = options.child ? `\n${options.child.stderr()}` : "";
  throw new Error(`${url} did not answer 200 within ${options.timeoutMs} ms (last: ${last})${stderr}`);
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * An nginx configuration for a pacman caching proxy: one worker (or `workers`), sendfile, `proxy_cache` with
 * `proxy_cache_lock on`, everything (pid, logs, temp files, cache) below `prefix`, in the foreground. The
 * access log is off unless `accessLog` is set; then it is nginx's default, the `combined` format written to
 * `<prefix>/access.log` line by line. `tuned` adds what nginx's users add for static files, `open_file_cache`
 * (the cache files' descriptors and metadata kept open between requests), beside `sendfile on` and
 * `tcp_nopush on`, which every configuration here has.
 */
export function nginxConfig(
  prefix: string,
  options: {
    port: number;
    originPort: number;
    accessLog?: boolean;
    tuned?: boolean;
    workers?: number | "auto";
  },
): string {
  const user = Deno.uid() === 0 ? "user root;\n" : "";
  const tuning = options.tuned
    ? `    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 60s;
    open_file_cache_min_uses 1;
    open_file_cache_errors on;
`
    : "";
  return `# Written by scripts/bench.ts: nginx as a pacman caching proxy.
${user}worker_processes ${options.workers ?? 1};
daemon off;
pid ${join(prefix, "nginx.pid")};
error_log ${join(prefix, "error.log")} warn;
events {
    worker_connections 4096;
}
http {
    access_log ${options.accessLog ? `${join(prefix, "access.log")} combined` : "off"};
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
${tuning}    default_type application/octet-stream;
    client_body_temp_path ${join(prefix, "client_body")};
    proxy_temp_path ${join(prefix, "proxy_temp")};
    fastcgi_temp_path ${join(prefix, "fastcgi_temp")};
    uwsgi_temp_path ${join(prefix, "uwsgi_temp")};
    scgi_temp_path ${join(prefix, "scgi_temp")};
    proxy_cache_path ${join(prefix, "cache")} levels=1:2 keys_zone=pacman:10m max_size=10g inactive=7d
        use_temp_path=off;
    server {
        listen 127.0.0.1:${options.port};
        location / {
            proxy_pass http://127.0.0.1:${options.originPort};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache pacman;
            proxy_cache_lock on;
            proxy_cache_valid 200 7d;
            add_header X-Cache-Status $upstream_cache_status;
        }
    }
}
`;
}

/** The pid of the worker process of an nginx master process (`worker_processes 1`). */
export async function nginxWorkerPid(masterPid: number, timeoutMs = 5000): Promise<number> {
  return (await nginxWorkerPids(masterPid, { count: 1, timeoutMs }))[0];
}

/** The pids of the worker processes of an nginx master process, once `count` of them run. */
export async function nginxWorkerPids(
  masterPid: number,
  options: { count: number; timeoutMs?: number },
): Promise<number[]> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const deadline = performance.now() + timeoutMs;
  let workers: number[] = [];
  while (performance.now() < deadline) {
    workers = [];
    for await (const entry of Deno.readDir("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
        // pid (comm) state ppid ...: comm may contain spaces, so split after the last ")".
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        if (Number(fields[1]) !== masterPid) continue;
        // Its other children are the cache manager and the cache loader.
        const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`);
        if (cmdline.includes("worker process")) workers.push(Number(entry.name));
      } catch {
        // it ended while we looked
      }
    }
    if (workers.length >= options.count) return workers.sort((a, b) => a - b);
    await sleep(20);
  }
  throw new Error(
    `nginx master ${masterPid} has ${workers.length} of ${options.count} worker processes after ${timeoutMs} ms; ` +
      "see its error.log",
  );
}

/** Clock ticks per second of `/proc/PID/stat`'s times (`getconf CLK_TCK`; 100 on Linux everywhere). */
const CLOCK_TICKS = 100;

/**
 * CPU seconds (user + system, all its threads, also those that ended) that processes have used so far, from
 * `/proc/PID/stat`, summed.
 */
export async function cpuSecondsOf(pids: readonly number[]): Promise<number> {
  let ticks = 0;
  for (const pid of pids) {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // After "pid (comm) ": state is field 3, utime field 14 and stime field 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / CLOCK_TICKS;
}

/** Resets a process's peak resident set size (Linux `clear_refs` 5); false when not allowed. */
export async function resetPeakRss(pid: number): Promise<boolean> {
  try {
    await Deno.writeTextFile(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/** A process's peak resident set size in bytes (VmHWM), or current size (VmRSS). */
export async function memoryOf(pid: number): Promise<{ peak: number; current: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status);
    if (!match) throw new Error(`/proc/${pid}/status has no ${name}`);
    return Number(match[1]) * 1024;
  };
  return { peak: field("VmHWM"), current: field("VmRSS") };
}

/** What one wrk run measured. */
export interface WrkResult {
  requests: number;
  bytes: number;
  seconds: number;
  /** Socket errors and non-2xx/3xx answers. */
  errors: number;
  requestsPerSecond: number;
  bytesPerSecond: number;
}

const WRK_REPORT = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_JSON {\\"requests\\":%.0f,\\"bytes\\":%.0f,\\"duration_us\\":%.0f,\\"errors\\":%.0f}\\n",
    summary.requests, summary.bytes, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout))
end
`;

/** Lua for wrk: every request asks for the next of `paths` (each thread starts at a random one). */
function wrkPathsScript(paths: string[]): string {
  return `local paths = { ${paths.map((p) => JSON.stringify(p)).join(", ")} }
local next_path = 0
init = function(args)
  next_path = math.random(#paths)
end
request = function()
  next_path = next_path % #paths + 1
  return wrk.format("GET", paths[next_path])
end
`;
}

/**
 * Runs wrk against `url` and reads its summary. With `paths`, each connection asks for them in turn (from a
 * different start), instead of `url`'s path over and over: a balancer that hashes the path then spreads them.
 */
export async function runWrk(
  url: string,
  options: { connections: number; threads: number; seconds: number; workDir: string; paths?: string[] },
): Promise<WrkResult> {
  const script = join(options.workDir, "wrk_report.lua");
  await Deno.writeTextFile(script, options.paths ? wrkPathsScript(options.paths) + WRK_REPORT : WRK_REPORT);
  const args = [
    "-t",
    String(options.threads),
    "-c",
    String(options.connections),
    "-d",
    `${options.seconds}s`,
    "--timeout",
    "10s",
    "-s",
    script,
    url,
  ];
  const out = await run("wrk", args);
  const line = out.output.split("\n").find((l) => l.startsWith("WRK_JSON "));
  if (!out.success || !line) throw new Error(`wrk ${args.join(" ")} failed:\n${out.output.slice(-2000)}`);
  const parsed = JSON.parse(line.slice("WRK_JSON ".length));
  const seconds = parsed.duration_us / 1e6;
  return {
    requests: parsed.requests,
    bytes: parsed.bytes,
    seconds,
    errors: parsed.errors,
    requestsPerSecond: parsed.requests / seconds,
    bytesPerSecond: parsed.bytes / seconds,
  };
}

/** The median of some numbers (the mean of the middle two for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}
