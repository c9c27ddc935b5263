/**
 * The real program as a child process for tests: `deno run -A main.ts --config FILE` with a configuration
 * written to a temporary file, its port read from the "Listening on" log line, and its log kept for assertions.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));

/** A running (or ended) flexo process. */
export interface FlexoProcess {
  /** Its process id (for `/proc/PID/...`). */
  pid: number;
  /** The port it listens on. */
  port: number;
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Kills it with `signal` (default SIGTERM) and waits for it to end. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/** Writes `config` (TOML text) to a file in `dir` and returns the file's path. */
export async function writeConfig(dir: string, config: string): Promise<string> {
  const path = join(dir, `flexo-${crypto.randomUUID()}.toml`);
  await Deno.writeTextFile(path, config);
  return path;
}

/**
 * Writes the configuration of a test proxy to a file in `work`: listening on 127.0.0.1 on a free port, the one
 * predefined `mirror`, the cache in `cacheDir` and the state files under `work/state`.
 */
export async function writeTestConfig(
  work: string,
  options: { cacheDir: string; mirror: string },
): Promise<string> {
  return await writeConfig(
    work,
    [
      `cache_directory = ${tomlString(options.cacheDir)}`,
      `mirrorlist_fallback_file = ${tomlString(join(work, "state", "mirrorlist"))}`,
      `mirrorlist_latency_test_results_file = ${tomlString(join(work, "state", "latency.json"))}`,
      "port = 0",
      'listen_ip_address = "127.0.0.1"',
      'mirror_selection_method = "predefined"',
      `mirrors_predefined = [${tomlString(options.mirror)}]`,
    ].join("\n"),
  );
}

/** A TOML string literal. */
export function tomlString(value: string): string {
  return JSON.stringify(value);
}

/** Runs `main.ts` with `args` to its end (for commands that must exit), at most `timeoutMs`. */
export async function runFlexo(
  args: string[],
  options: { timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 20_000);
  try {
    const output = await child.output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts `main.ts --config configPath` (the configuration should set `port = 0`) and resolves once it listens;
 * `options.main` runs another program (a bundle of main.ts) in its place.
 *
 * @throws {Error} with its output when it exits or does not listen within `timeoutMs`.
 */
export async function startFlexo(
  configPath: string,
  options: { timeoutMs?: number; maxOpenFiles?: number; main?: string; denoFlags?: string[] } = {},
): Promise<FlexoProcess> {
  // `main`: another program to run instead of main.ts (such as a bundle of it), with `denoFlags` instead of -A.
  const args = ["run", ...(options.denoFlags ?? ["-A"]), options.main ?? MAIN, "--config", configPath];
  // prlimit sets the descriptor limit and then executes Deno in its place: the pid stays the proxy's.
  const io = { stdin: "null", stdout: "piped", stderr: "piped" } as const;
  const command = options.maxOpenFiles === undefined
    ? new Deno.Command(Deno.execPath(), { args, ...io })
    : new Deno.Command("prlimit", {
      args: [`--nofile=${options.maxOpenFiles}`, Deno.execPath(), ...args],
      ...io,
    });
  const child = command.spawn();
  let text = "";
  let listening: (port: number) => void;
  const port = new Promise<number>((resolve) => listening = resolve);
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      const match = /Listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(text);
      if (match) listening(Number(match[1]));
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const failed = Promise.race([
    child.status.then((status) => `exited with code ${status.code}`),
    new Promise<string>((resolve) =>
      timer = setTimeout(() => resolve("did not listen in time"), options.timeoutMs ?? 20_000)
    ),
  ]);
  const first = await Promise.race([port, failed]);
  clearTimeout(timer);
  if (typeof first === "string") {
    child.kill("SIGKILL");
    await child.status.catch(() => {});
    await drained;
    throw new Error(`flexo ${first}:\n${text}`);
  }
  let stopped: Promise<Deno.CommandStatus> | undefined;
  return {
    pid: child.pid,
    port: first,
    url: `http://127.0.0.1:${first}`,
    output: () => text,
    stop(signal: Deno.Signal = "SIGTERM") {
      stopped ??= (async () => {
        try {
          child.kill(signal);
        } catch {
          // already ended
        }
        const status = await child.status;
        await drained;
        return status;
      })();
      return stopped;
    },
  };
}
