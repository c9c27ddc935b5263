/**
 * The `flexo` command: starts the caching proxy, or validates the configuration.
 *
 * ```
 * flexo [--config FILE] [--port N] [--listen ADDR]... [--cache-dir DIR] [--log-level L]
 * flexo check-config [--config FILE] [...]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { getLogger } from "@logtape/logtape";
import { createApp } from "./src/app.ts";
import { CacheUsage } from "./src/cache_usage.ts";
import {
  canWriteDirectory,
  ConfigError,
  type ConfigOverrides,
  formatConfig,
  loadConfig,
  resolveUserDirectories,
} from "./src/config.ts";
import type { Config } from "./src/config_schema.ts";
import { closeLogging, setupLogging } from "./src/logging.ts";
import { primaryMirrorLogger, startMirrorSelection } from "./src/mirror_selection.ts";
import { MirrorPool } from "./src/mirrors.ts";
import { startServer } from "./src/server.ts";
import { VERSION } from "./src/version.ts";

const USAGE = `flexo ${VERSION}: a caching proxy for pacman

Usage:
  flexo [options]                 start the proxy
  flexo check-config [options]    validate the configuration and print the effective settings

Options:
  --config FILE      configuration file (default /etc/flexo/flexo.toml; a missing default file is fine)
  --port N           port to listen on (default 7878)
  --listen ADDR      address to listen on; repeat for several (default 127.0.0.1; "::" for all IPv6/IPv4)
  --cache-dir DIR    cache directory (default /var/cache/flexo/pkg, or ~/.cache/flexo/pkg when that is not writable)
  --log-level L      trace, debug, info, warning, error or fatal (default info; also FLEXO_LOG)
  -h, --help         show this help
  -V, --version      show the version

Settings are layered: built-in defaults < configuration file < FLEXO_* environment variables < options.
Point pacman at it with "Server = http://HOST:7878/$repo/os/$arch" in /etc/pacman.d/mirrorlist.`;

/** Keys that are validated but not used by any feature yet; setting one logs that it has no effect. */
const INACTIVE_KEYS = [
  "mirrorlist_fallback_file",
  "num_versions_retain",
  "max_cache_size",
  "allowed_clients",
];

interface Cli {
  command: "serve" | "check-config";
  configPath?: string;
  overrides: ConfigOverrides;
}

function parseCommandLine(args: string[]): Cli | "help" | "version" {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: "string" },
      port: { type: "string" },
      listen: { type: "string", multiple: true },
      "cache-dir": { type: "string" },
      "log-level": { type: "string" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "V" },
    },
  });
  if (values.help) return "help";
  if (values.version) return "version";
  if (positionals.length > 1 || (positionals.length === 1 && positionals[0] !== "check-config")) {
    throw new UsageError(`Unknown command "${positionals.join(" ")}". Commands: check-config.`);
  }
  const overrides: ConfigOverrides = {};
  if (values.port !== undefined) {
    const port = Number(values.port);
    if (!/^\d+$/.test(values.port) || port > 65535) {
      throw new UsageError(`--port ${values.port}: expected a port number from 0 to 65535.`);
    }
    overrides.port = port;
  }
  if (values.listen) overrides.listen = values.listen;
  if (values["cache-dir"] !== undefined) overrides.cacheDir = values["cache-dir"];
  if (values["log-level"] !== undefined) overrides.logLevel = values["log-level"];
  return {
    command: positionals[0] === "check-config" ? "check-config" : "serve",
    configPath: values.config,
    overrides,
  };
}

class UsageError extends Error {}

async function effectiveConfig(cli: Cli): Promise<{ config: Config; warnings: string[]; sources: string[] }> {
  const loaded = await loadConfig({
    configPath: cli.configPath,
    configPathExplicit: cli.configPath !== undefined,
    env: Deno.env.toObject(),
    overrides: cli.overrides,
    inactiveKeys: INACTIVE_KEYS,
  });
  const resolved = await resolveUserDirectories(loaded.config, {
    env: Deno.env.toObject(),
    isWritable: canWriteDirectory,
  });
  return {
    config: resolved.config,
    warnings: [...loaded.warnings, ...resolved.warnings],
    sources: loaded.sources,
  };
}

async function prepareCacheDirectory(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (error) {
    throw new ConfigError([
      `cache_directory = "${dir}": cannot create it (${(error as Error).message}); create it and give the ` +
      "user running flexo write access, or choose another directory.",
    ]);
  }
  if (!(await canWriteDirectory(dir))) {
    throw new ConfigError([
      `cache_directory = "${dir}": not writable by this user; run "chown -R <flexo user> ${dir}" or choose ` +
      "another directory (cache_directory, FLEXO_CACHE_DIRECTORY or --cache-dir).",
    ]);
  }
}

async function serve(cli: Cli): Promise<void> {
  const { config, warnings, sources } = await effectiveConfig(cli);
  await setupLogging({ level: config.log_level, journal: Deno.env.get("JOURNAL_STREAM") !== undefined });
  const log = getLogger(["flexo"]);
  log.info("flexo {version} starting; configuration from {sources}", {
    version: VERSION,
    sources: sources.join(", "),
  });
  for (const warning of warnings) log.warn(warning);
  await prepareCacheDirectory(config.cache_directory);
  log.info("Cache directory: {dir}", { dir: config.cache_directory });

  const mirrorLog = getLogger(["flexo", "mirrors"]);
  const selectionLog = {
    info: (message: string) => mirrorLog.info(message),
    warn: (message: string) => mirrorLog.warn(message),
  };
  const pool = new MirrorPool({ onPrimaryChange: primaryMirrorLogger(selectionLog) });
  // Fills the pool at once (persisted ranking, predefined or built-in list) and ranks mirrors in the background:
  // the proxy answers from the first second.
  const selection = startMirrorSelection(config, { pool, log: selectionLog });
  const cacheUsage = new CacheUsage(config.cache_directory, {
    onError: (error) => log.warn("Could not measure the cache directory: {error}", { error: error.message }),
  });
  void cacheUsage.start();
  const app = createApp(config, {
    pool,
    cacheUsage: () => cacheUsage.snapshot(),
    onDownloadComplete: (download) => {
      if (download.file) cacheUsage.added(download.file.size, { path: download.file.path });
    },
  });
  app.packageIndex.loadAll(config.cache_directory).then((count) => {
    if (count > 0) log.info("Indexed {count} repository database(s) to verify downloads", { count });
  });
  const server = startServer(app, { hostnames: config.listen_ip_address, port: config.port });

  const stop = async (signal: string) => {
    log.info("{signal} received: finishing running transfers, then stopping", { signal });
    selection.stop();
    await server.shutdown({ graceMs: 10_000 });
    await closeLogging();
    Deno.exit(0);
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => void stop(signal));
  }
  await server.finished;
}

async function checkConfig(cli: Cli): Promise<void> {
  const { config, warnings, sources } = await effectiveConfig(cli);
  for (const warning of warnings) console.error(`warning: ${warning}`);
  console.log(`# Effective configuration from ${sources.join(", ")}`);
  console.log(formatConfig(config));
}

async function main(args: string[]): Promise<number> {
  let cli: Cli | "help" | "version";
  try {
    cli = parseCommandLine(args);
  } catch (error) {
    console.error(`flexo: ${(error as Error).message}\nRun "flexo --help" for usage.`);
    return 2;
  }
  if (cli === "help") {
    console.log(USAGE);
    return 0;
  }
  if (cli === "version") {
    console.log(`flexo ${VERSION}`);
    return 0;
  }
  try {
    if (cli.command === "check-config") await checkConfig(cli);
    else await serve(cli);
    return 0;
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`flexo: invalid configuration:\n${error.message}`);
      return 78; // EX_CONFIG: systemd will not restart in a loop on a config error with RestartPreventExitStatus
    }
    console.error(`flexo: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
