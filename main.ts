/**
 * The `flexo` command: starts the caching proxy, validates the configuration, cleans or seeds the cache.
 *
 * ```
 * flexo [--config FILE] [--port N] [--listen ADDR]... [--cache-dir DIR] [--log-level L]
 * flexo check-config [--config FILE] [...]
 * flexo clean [--dry-run] [--config FILE] [...]
 * flexo import DIR [--config FILE] [...]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { getLogger } from "@logtape/logtape";
import { createApp } from "./src/app/app.ts";
import { createUpstreamClient } from "./src/upstream/upstream_fetch.ts";
import { libcSocketShutdown } from "./src/server/socket_shutdown.ts";
import { drainPeriod } from "./src/app/health.ts";
import { CacheStore } from "./src/cache/cache_store.ts";
import { CacheUsage } from "./src/cache/cache_usage.ts";
import { watchCacheChanges } from "./src/cache/cache_watch.ts";
import {
  Cleaner,
  cleaningEnabled,
  cleanupLimitsOf,
  describeCleanup,
  inUseBy,
  runCleanup,
} from "./src/cache/cleanup.ts";
import { ConfigError, type ConfigOverrides, formatConfig, loadConfig } from "./src/config/config.ts";
import type { Config } from "./src/config/config_schema.ts";
import {
  canWriteDirectory,
  canWriteDirectoryWithoutChanges,
  resolveUserDirectories,
} from "./src/config/user_directories.ts";
import { redactUrls } from "./src/redact_url.ts";
import { closeLogging, describeError, setupLogging } from "./src/logging.ts";
import { primaryMirrorLogger, startMirrorSelection } from "./src/mirrors/mirror_selection.ts";
import { MirrorPool } from "./src/mirrors/mirrors.ts";
import { PackageIndex } from "./src/repo/package_index.ts";
import { recoverPartials } from "./src/cache/recovery.ts";
import { lockCacheDirectory } from "./src/cache/cache_lock.ts";
import { startServer } from "./src/server/server.ts";
import { libcCanWrite, libcFreeSpace, libcPathProbe, openLibc } from "./src/server/libc.ts";
import { libcSocketReads } from "./src/server/socket_reads.ts";
import { startMemoryReleases } from "./src/memory_release.ts";
import { onStopSignals } from "./src/stop_signals.ts";
import { VERSION } from "./src/version.ts";

const USAGE = `flexo ${VERSION}: a caching proxy for pacman

Usage:
  flexo [options]                 start the proxy
  flexo check-config [options]    validate the configuration and print the effective settings
  flexo clean [--dry-run] [opts]  remove package versions beyond num_versions_retain and, with max_cache_size,
                                  least recently used ones; print each removed file and the space freed
                                  (--dry-run: only print). A running proxy cleans by itself.
  flexo import DIR [options]      copy the packages of a pacman cache directory (e.g. /var/cache/pacman/pkg)
                                  into the cache, verified against the databases clients synced through
                                  the proxy; unknown and corrupt files are reported and skipped
  flexo prefetch [--dry-run]      one prefetch pass now: new versions of the packages clients fetched
                                  (see [prefetch]); run by the proxy when one answers on the listen
                                  address, otherwise here; prints what it fetched (--dry-run: what it would
                                  fetch by the cached databases, downloading and writing nothing)

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

interface Cli {
  command: "serve" | "check-config" | "clean" | "import" | "prefetch";
  configPath?: string;
  /** `clean --dry-run`. */
  dryRun?: boolean;
  /** `import DIR`. */
  importDir?: string;
  overrides: ConfigOverrides;
}

function parseOptions(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: "string" },
      port: { type: "string" },
      listen: { type: "string", multiple: true },
      "cache-dir": { type: "string" },
      "log-level": { type: "string" },
      "dry-run": { type: "boolean" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "V" },
    },
  });
}

/** parseOptions with flexo's own words for unknown options: node:util's text advises an "after '--'" that misleads. */
function parseOptionsOrExplain(args: string[]): ReturnType<typeof parseOptions> {
  try {
    return parseOptions(args);
  } catch (error) {
    const code = (error as { code?: string }).code;
    const option = /'(-[^']*)'/.exec((error as Error).message)?.[1];
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option !== undefined) {
      throw new UsageError(`Unknown option "${option}".`);
    }
    throw new UsageError((error as Error).message);
  }
}

/**
 * Parses the command line. A leading `--` is skipped: `deno task serve -- --help` passes it through to the
 * program (Deno 2.9), and it means the same as `flexo --help`.
 */
function parseCommandLine(rawArgs: string[]): Cli | "help" | "version" {
  const args = rawArgs[0] === "--" ? rawArgs.slice(1) : rawArgs;
  const { values, positionals } = parseOptionsOrExplain(args);
  if (values.help) return "help";
  if (values.version) return "version";
  const [command = "serve", ...operands] = positionals;
  const known = positionals.length === 0 || ["check-config", "clean", "import", "prefetch"].includes(command);
  if (!known || (command !== "import" && operands.length > 0)) {
    throw new UsageError(
      `Unknown command "${positionals.join(" ")}". Commands: check-config, clean, import, prefetch.`,
    );
  }
  if (command === "import" && operands.length !== 1) {
    throw new UsageError("import takes one directory, e.g. flexo import /var/cache/pacman/pkg");
  }
  if (values["dry-run"] && command !== "clean" && command !== "prefetch") {
    throw new UsageError("--dry-run goes with the clean and prefetch commands.");
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
    command: command as Cli["command"],
    configPath: values.config,
    dryRun: values["dry-run"],
    importDir: operands[0],
    overrides,
  };
}

class UsageError extends Error {}

/**
 * The configuration a command works with. `isWritable` decides whether the default directories under
 * /var/cache/flexo are used (default: {@linkcode canWriteDirectory}, which makes them and writes a probe file).
 */
async function effectiveConfig(
  cli: Cli,
  isWritable: (dir: string) => Promise<boolean> = canWriteDirectory,
): Promise<{ config: Config; warnings: string[]; sources: string[] }> {
  const loaded = await loadConfig({
    configPath: cli.configPath,
    configPathExplicit: cli.configPath !== undefined,
    env: Deno.env.toObject(),
    overrides: cli.overrides,
  });
  const resolved = await resolveUserDirectories(loaded.config, { env: Deno.env.toObject(), isWritable });
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
  const logOutput = await setupLogging({
    level: config.log_level,
    journal: Deno.env.get("JOURNAL_STREAM") !== undefined,
  });
  const log = getLogger(["flexo"]);
  log.info("flexo {version} starting; configuration from {sources}", {
    version: VERSION,
    sources: sources.join(", "),
  });
  for (const warning of warnings) log.warn(warning);
  await prepareCacheDirectory(config.cache_directory);
  log.info("Cache directory: {dir}", { dir: config.cache_directory });
  // Before recovery: a second proxy on this directory would remove the first one's downloads in progress. Held
  // until the process ends (see cache_lock.ts).
  const lock = lockCacheDirectory(config.cache_directory);
  if (lock.warning !== undefined) log.warn(lock.warning);
  // Before any download starts: interrupted downloads are kept to resume or removed, leftovers go.
  const recovery = await recoverPartials(config.cache_directory);
  if (recovery.resumable.length + recovery.removed.length + recovery.skipped.length > 0) {
    log.info(
      "Recovery: {resumable} interrupted download(s) to resume, {removed} leftover(s) removed, {skipped} skipped",
      {
        resumable: recovery.resumable.length,
        removed: recovery.removed.length,
        skipped: recovery.skipped.length,
      },
    );
  }

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
  const counted = cacheUsage.start();
  // Another process's changes (flexo import, flexo clean, rm) have the cache counted again.
  const cacheWatch = watchCacheChanges(cacheUsage, {
    onError: (error) =>
      log.warn(
        "Cannot watch the cache directory for other processes' changes ({error}): the cache counts miss what " +
          "flexo import or another process changes until a restart; if the inotify limit was reached, raise " +
          "fs.inotify.max_user_watches",
        { error: error.message },
      ),
  });
  // Loaded once: the cache's check of a miss, the memory releases, the server's sendfile and the upstream
  // client's reads of bytes already there use it. Its synchronous functions are made at the first call of one
  // (3-10 ms and 2-2.5 MiB of the deno executable's pages, see openLibc), which an idle proxy never makes.
  const libc = openLibc();
  const app = createApp(config, {
    // flexo's own HTTP/1.1 client for downloads: on a kept connection its request leaves at once, where the
    // runtime's fetch sends it after the turn; it hands to that fetch what it does not do itself (a proxy in the
    // environment; src/upstream/upstream_fetch.ts). Its bodies are read with libc's recv when their bytes are
    // there already (src/server/socket_reads.ts).
    fetch: createUpstreamClient({
      socketReads: libc.ok ? libcSocketReads(libc.libc) : undefined,
      shutdownSocket: libc.ok ? libcSocketShutdown(libc.libc) : undefined,
    }).fetch,
    pool,
    surelyMissing: libc.ok ? libcPathProbe(libc.libc) : undefined,
    // A download that cannot fit fails before its head, so that a cached database is served instead (stale).
    freeSpace: libc.ok ? libcFreeSpace(libc.libc) : undefined,
    log: logOutput,
    cacheUsage: () => cacheUsage.snapshot(),
    onCacheFileRemoved: (path, bytes) => cacheUsage.removed(bytes, { path }),
    onDownloadComplete: (download) => {
      if (download.file) cacheUsage.added(download.file.size, { path: download.file.path });
      cleaner.downloadCompleted(download.file);
    },
  });
  const cleanupLog = getLogger(["flexo", "cleanup"]);
  const cleaner = new Cleaner({
    cacheDir: config.cache_directory,
    ...cleanupLimitsOf(config),
    inUse: inUseBy(app),
    store: app.store,
    stats: app.stats,
    onRemoved: (path, bytes) => cacheUsage.removed(bytes, { path }),
    onReport: (report) => {
      if (report.removedFiles > 0 || report.overLimit) {
        for (const line of describeCleanup(report)) cleanupLog.info(line);
      }
    },
  });
  const cleaned = cleaner.start();
  void app.prefetcher.start();
  const indexed = app.packageIndex.loadAll(config.cache_directory).then((count) => {
    if (count > 0) log.info("Indexed {count} repository database(s) to verify downloads", { count });
  });
  // The start-up scans leave garbage in proportion to the cache's files; give its pages back once they end,
  // and after every busy period later (see src/memory_release.ts).
  const trim = libc.ok ? libc.mallocTrim : undefined;
  const releases = startMemoryReleases({
    startup: [counted, cleaned, indexed],
    activity: () => app.stats.activity(),
    mallocTrim: trim && (() => void trim().catch(() => {})),
  });
  // Read without making libc's functions (see openLibc): a proxy that has sent no file has no use for them.
  const openFiles = libc.ok ? await libc.openFilesLimit?.() : undefined;
  const server = startServer(app, {
    hostnames: config.listen_ip_address,
    port: config.port,
    clientTimeoutMs: config.client_timeout_secs * 1000,
    sendfile: config.sendfile,
    maxConnections: config.max_connections,
    // Counted where /status and /metrics read: an operator learns that the limit is hit (the log warns too).
    onConnectionRefused: () => app.stats.refusedConnections++,
    onRequestRefused: (status) => app.stats.refusedRequest(status),
    libc,
    openFilesLimit: openFiles,
  });

  // One stop, whatever the signals (src/stop_signals.ts: SIGHUP stops only a proxy run from a terminal).
  const stopping = onStopSignals(async () => {
    selection.stop();
    cacheWatch.stop();
    releases.idle.stop();
    void cleaner.stop();
    app.prefetcher.stop();
    // /healthz answers 503 while requests are still served, so a balancer drains the node (docs/scaling.md).
    app.health.startDraining();
    await drainPeriod(config.shutdown_drain_secs * 1000);
    await server.shutdown({ graceMs: 10_000 });
    // Transfers still running after the grace are left (their partial files resume at the next start). The
    // package usage of the last requests is saved before the exit: a save cut off would lose it.
    await app.flush();
    await closeLogging();
    Deno.exit(0);
  });
  // A fault in one corner must not take the proxy away from every client: it is logged, and serving goes on.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    log.error("Unhandled error (please report it): {error}", {
      error: describeError(event.reason, { stack: true }),
    });
  });
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    log.error("Uncaught error (please report it): {error}", {
      error: describeError(event.error, { stack: true }),
    });
  });
  await server.finished;
  // The server ends when a stop closes it; the stop then writes the log's last lines and ends the process, so
  // returning now (to main's exit) would cut them off.
  await stopping.current;
  await closeLogging();
}

/**
 * The `isWritable` of {@linkcode effectiveConfig} for commands that must change nothing on the disk
 * (`check-config`, the dry runs): asked of the kernel with access(2) where libc loads, never tried.
 */
function withoutChanges(): (dir: string) => Promise<boolean> {
  const libc = openLibc();
  const canWrite = libc.ok ? libcCanWrite(libc.libc) : undefined;
  return (dir) => canWriteDirectoryWithoutChanges(dir, canWrite);
}

/**
 * `flexo check-config`: prints the effective configuration without changing anything on the disk (the
 * writability of the default directories is asked of the kernel with access(2), not tried), and without the
 * passwords of URLs (`formatConfig` shows them as `***`, as the status page and the log do).
 */
async function checkConfig(cli: Cli): Promise<void> {
  const { config, warnings, sources } = await effectiveConfig(cli, withoutChanges());
  for (const warning of warnings) console.error(`warning: ${redactUrls(warning)}`);
  console.log(`# Effective configuration from ${sources.join(", ")}`);
  console.log(formatConfig(config));
}

/** `flexo clean [--dry-run]`: one cleaning run, printing every removed file; 1 when a file could not be removed. */
async function clean(cli: Cli): Promise<number> {
  const { config, warnings } = await effectiveConfig(cli, cli.dryRun ? withoutChanges() : undefined);
  await setupLogging({ level: config.log_level });
  for (const warning of warnings) console.error(`warning: ${redactUrls(warning)}`);
  const limits = cleanupLimitsOf(config);
  if (!cleaningEnabled(limits)) {
    console.log("Nothing to do: num_versions_retain = 0 keeps every version and max_cache_size is not set.");
    await closeLogging();
    return 0;
  }
  const report = await runCleanup(config.cache_directory, { ...limits, dryRun: cli.dryRun });
  for (const line of describeCleanup(report)) console.log(line);
  await closeLogging();
  return report.failures.length > 0 ? 1 : 0;
}

/** `flexo prefetch [--dry-run]`: one prefetch pass, in the running proxy when there is one. */
async function prefetchCommand(cli: Cli): Promise<number> {
  // Each command's own modules are loaded when it runs: the proxy starts without them (see serve()).
  const { describePrefetch, prefetchError, prefetchOnce } = await import(
    "./src/prefetch/prefetch_command.ts"
  );
  const { config, warnings } = await effectiveConfig(cli, cli.dryRun ? withoutChanges() : undefined);
  await setupLogging({ level: config.log_level });
  for (const warning of warnings) console.error(`warning: ${redactUrls(warning)}`);
  // A dry run writes nothing, not even the cache directory: a missing one only means nothing is cached yet.
  if (!cli.dryRun) await prepareCacheDirectory(config.cache_directory);
  try {
    const result = await prefetchOnce(config, { dryRun: cli.dryRun ?? false });
    for (const line of describePrefetch(result, { enabled: config.prefetch.enabled })) console.log(line);
    return result.report.files.some((file) => file.outcome === "failed") ? 1 : 0;
  } catch (error) {
    console.error(prefetchError(error));
    return 1;
  } finally {
    await closeLogging();
  }
}

/** `flexo import DIR`: seeds the cache from a pacman cache directory; 1 when a file could not be copied. */
async function importCommand(cli: Cli): Promise<number> {
  const { describeImport, importPackages } = await import("./src/cache/import.ts");
  const { config, warnings } = await effectiveConfig(cli);
  await setupLogging({ level: config.log_level });
  for (const warning of warnings) console.error(`warning: ${redactUrls(warning)}`);
  await prepareCacheDirectory(config.cache_directory);
  const index = new PackageIndex();
  if ((await index.loadAll(config.cache_directory)) === 0) {
    console.error(
      `flexo: no repository database in ${config.cache_directory}: sync once through the proxy ` +
        '("pacman -Sy" with the proxy as mirror) so that it knows the packages, then import again.',
    );
    await closeLogging();
    return 1;
  }
  const store = new CacheStore(config.cache_directory);
  const report = await importPackages(cli.importDir!, { store, index });
  for (const line of describeImport(report)) console.log(line);
  await closeLogging();
  return report.failures.length > 0 ? 1 : 0;
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
    if (cli.command === "clean") return await clean(cli);
    if (cli.command === "import") return await importCommand(cli);
    if (cli.command === "prefetch") return await prefetchCommand(cli);
    if (cli.command === "check-config") await checkConfig(cli);
    else await serve(cli);
    return 0;
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`flexo: ${error.message}`); // the message starts with "Invalid configuration"
      return 78; // EX_CONFIG: systemd will not restart in a loop on a config error with RestartPreventExitStatus
    }
    console.error(`flexo: ${describeError(error)}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
