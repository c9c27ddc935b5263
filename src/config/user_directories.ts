/**
 * Where a user without write access to /var/cache/flexo keeps the cache: the default directories move to
 * `$XDG_CACHE_HOME/flexo` or `$HOME/.cache/flexo`, so that `deno task serve` works for anyone.
 *
 * @module
 */

import { dirname, isAbsolute, join } from "node:path";
import { ConfigError } from "./config.ts";
import { showValue } from "./config_env.ts";
import {
  type Config,
  DEFAULT_CACHE_DIRECTORY,
  DEFAULT_LATENCY_TEST_RESULTS_FILE,
  DEFAULT_MIRRORLIST_FALLBACK_FILE,
} from "./config_schema.ts";

/** Options of {@link resolveUserDirectories}. */
export interface ResolveUserDirectoriesOptions {
  /** Environment variables (for `XDG_CACHE_HOME` and `HOME`). */
  env: Record<string, string>;
  /** Whether this process can write to (or create) a directory. See {@link canWriteDirectory}. */
  isWritable: (dir: string) => Promise<boolean>;
}

/**
 * Moves the cache directory and state files to a per-user directory when they are still the defaults under
 * /var/cache/flexo and that is not writable: `$XDG_CACHE_HOME/flexo` or `$HOME/.cache/flexo`, with `pkg/` and
 * `state/` inside. Paths that differ from the defaults are never moved. Does not modify `config`.
 *
 * @throws {ConfigError} when a move is needed but neither XDG_CACHE_HOME nor HOME is set.
 */
export async function resolveUserDirectories(
  config: Config,
  options: ResolveUserDirectoriesOptions,
): Promise<{ config: Config; warnings: string[] }> {
  const result = structuredClone(config);
  const defaulted = {
    cache: config.cache_directory === DEFAULT_CACHE_DIRECTORY,
    fallback: config.mirrorlist_fallback_file === DEFAULT_MIRRORLIST_FALLBACK_FILE,
    latency: config.mirrorlist_latency_test_results_file === DEFAULT_LATENCY_TEST_RESULTS_FILE,
  };
  const directories = new Set<string>();
  if (defaulted.cache) directories.add(DEFAULT_CACHE_DIRECTORY);
  if (defaulted.fallback) directories.add(dirname(DEFAULT_MIRRORLIST_FALLBACK_FILE));
  if (defaulted.latency) directories.add(dirname(DEFAULT_LATENCY_TEST_RESULTS_FILE));
  let writable = true;
  for (const dir of directories) {
    if (!(await options.isWritable(dir))) writable = false;
  }
  if (writable) return { config: result, warnings: [] };

  const base = userCacheBase(options.env);
  if (base === undefined) {
    throw new ConfigError([
      `cache_directory = ${showValue(config.cache_directory)} (default): /var/cache/flexo is not writable ` +
      "by this user and neither XDG_CACHE_HOME nor HOME is set; expected a writable cache_directory " +
      "(also set mirrorlist_fallback_file and mirrorlist_latency_test_results_file), or run as a user " +
      "that can write to /var/cache/flexo.",
    ]);
  }
  const moved: string[] = [];
  if (defaulted.cache) {
    result.cache_directory = join(base, "pkg");
    moved.push("cache_directory");
  }
  if (defaulted.fallback) {
    result.mirrorlist_fallback_file = join(base, "state", "mirrorlist");
    moved.push("mirrorlist_fallback_file");
  }
  if (defaulted.latency) {
    result.mirrorlist_latency_test_results_file = join(base, "state", "latency_test_results.json");
    moved.push("mirrorlist_latency_test_results_file");
  }
  const warning = `/var/cache/flexo is not writable by this user, so ${moved.join(", ")} now point into ` +
    `${base} (pkg/ and state/). Set these keys to choose another place, or give this user write access ` +
    "to /var/cache/flexo.";
  return { config: result, warnings: [warning] };
}

/** `$XDG_CACHE_HOME/flexo` (when absolute) or `$HOME/.cache/flexo`, or undefined without either. */
function userCacheBase(env: Record<string, string>): string | undefined {
  const xdg = env["XDG_CACHE_HOME"];
  if (xdg !== undefined && isAbsolute(xdg)) return join(xdg, "flexo");
  const home = env["HOME"];
  if (home !== undefined && home !== "") return join(home, ".cache", "flexo");
  return undefined;
}

/**
 * Whether this process can write into `dir`: creates it (with parents) if needed and writes and removes
 * a probe file. Meant as the `isWritable` of {@link resolveUserDirectories}.
 */
export async function canWriteDirectory(dir: string): Promise<boolean> {
  try {
    await Deno.mkdir(dir, { recursive: true });
    const probe = await Deno.makeTempFile({ dir, prefix: ".flexo-write-test-" });
    await Deno.remove(probe);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether this process could write into `dir`, found without changing anything on the disk (for
 * `flexo check-config`, where {@linkcode canWriteDirectory} would make the folder and a probe file): `dir` when
 * it exists, otherwise the nearest folder above it that exists, where `mkdir -p` would start. `canWrite` asks
 * whether files may be made in an existing folder (`access(2)`, see `libcCanWrite`); without it, an existing
 * folder counts as writable when its mode lets anyone write (an approximation: the owner is not compared).
 */
export function canWriteDirectoryWithoutChanges(
  dir: string,
  canWrite?: (path: string) => boolean,
): Promise<boolean> {
  for (let path = dir;; path = dirname(path)) {
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(path);
    } catch {
      if (dirname(path) === path) return Promise.resolve(false);
      continue;
    }
    if (!info.isDirectory) return Promise.resolve(false);
    return Promise.resolve(canWrite ? canWrite(path) : ((info.mode ?? 0) & 0o222) !== 0);
  }
}
