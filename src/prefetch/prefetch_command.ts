/**
 * `flexo prefetch [--dry-run]`: one prefetch pass now. When a proxy answers on the configured listen address,
 * it runs the pass (POST /prefetch), so its downloads are shared with its clients; otherwise the pass runs in
 * this process on the cache directory, with the mirrors the proxy would start with (no latency tests), and
 * retention (`num_versions_retain`, `max_cache_size`) applied afterwards as the proxy's cleaner would.
 *
 * @module
 */

import { createApp } from "../app/app.ts";
import { type CacheLock, lockCacheDirectory } from "../cache/cache_lock.ts";
import {
  cleaningEnabled,
  cleanupLimitsOf,
  type CleanupReport,
  describeCleanup,
  runCleanup,
} from "../cache/cleanup.ts";
import { fillStartingMirrors } from "../mirrors/mirror_selection.ts";
import { MirrorPool } from "../mirrors/mirrors.ts";
import type { Config } from "../config/config_schema.ts";
import { describeError } from "../describe_error.ts";
import type { PrefetchReport } from "./prefetch_run.ts";
import { PREFETCH_ROUTE } from "./prefetch_route.ts";

/** Where the pass ran. */
export type PrefetchCommandResult =
  | { ranIn: "proxy"; url: string; report: PrefetchReport }
  | { ranIn: "here"; report: PrefetchReport; cleanup?: CleanupReport };

/** The loopback URL of the proxy configured in `config`: a wildcard listen address is asked on loopback. */
export function proxyUrlOf(config: Config): string {
  const address = config.listen_ip_address[0];
  const host = address === "0.0.0.0"
    ? "127.0.0.1"
    : address === "::"
    ? "[::1]"
    : address.includes(":")
    ? `[${address}]`
    : address;
  return `http://${host}:${config.port}${PREFETCH_ROUTE}`;
}

/** Runs one pass, in the running proxy when there is one. */
export async function prefetchOnce(
  config: Config,
  options: { dryRun: boolean; fetch?: typeof fetch },
): Promise<PrefetchCommandResult> {
  const doFetch = options.fetch ?? fetch;
  const url = proxyUrlOf(config);
  let response: Response | undefined;
  try {
    response = await doFetch(url + (options.dryRun ? "?dry_run=1" : ""), { method: "POST" });
  } catch {
    response = undefined; // no proxy running: the pass runs here
  }
  if (response) {
    if (!response.ok) {
      throw new Error(
        `The proxy at ${url} refused the prefetch run (${response.status}: ${
          (await response.text()).trim()
        }); ` +
          "run flexo prefetch on the proxy's host, or stop the proxy to run it here",
      );
    }
    return { ranIn: "proxy", url, report: await response.json() as PrefetchReport };
  }
  // A pass that downloads holds the cache directory as a proxy does: a proxy may serve it without answering at
  // this configuration's address (started with another --port or --listen), and two processes' downloads of
  // one file would write one partial file (see cache_lock.ts).
  const lock = options.dryRun ? undefined : lockHere(config, url);
  try {
    const pool = new MirrorPool();
    // The list the proxy starts with (persisted ranking, predefined or built-in): the mirrors are not tested.
    fillStartingMirrors(config, pool);
    const app = createApp(config, { pool });
    await app.packageIndex.loadAll(config.cache_directory);
    await app.prefetcher.prepare();
    const report = await app.prefetcher.run({ dryRun: options.dryRun });
    await app.downloads.idle();
    const limits = cleanupLimitsOf(config);
    const fetched = report.files.some((file) => file.outcome === "fetched" && file.bytes > 0);
    if (!fetched || !cleaningEnabled(limits)) return { ranIn: "here", report };
    // As the proxy's cleaner does after downloads: older versions beyond num_versions_retain go.
    return {
      ranIn: "here",
      report,
      cleanup: await runCleanup(config.cache_directory, { ...limits, store: app.store }),
    };
  } finally {
    lock?.release();
  }
}

/** The cache directory's lock for a pass here; refused, with what to do, when a proxy holds it. */
function lockHere(config: Config, url: string): CacheLock {
  try {
    return lockCacheDirectory(config.cache_directory);
  } catch (error) {
    throw new Error(
      `${describeError(error)} No proxy answered at ${url}: give flexo prefetch that proxy's --port and ` +
        "--listen, so that it runs the pass.",
    );
  }
}

/**
 * The lines `flexo prefetch` prints for a result.
 *
 * @param result What the pass did and where.
 * @param options `enabled`: the configuration's `[prefetch] enabled`; when false a last line says why a pass
 *   may find nothing (no client fetches are recorded).
 */
export function describePrefetch(
  result: PrefetchCommandResult,
  options: { enabled?: boolean } = {},
): string[] {
  const { report } = result;
  const lines = [
    result.ranIn === "proxy" ? `Prefetch ran in the proxy at ${result.url}.` : "Prefetch ran here.",
  ];
  for (const db of report.databases) {
    lines.push(`database ${db.path}: ${db.outcome.replace("_", " ")}${db.error ? ` (${db.error})` : ""}`);
  }
  const verbs: Record<string, string> = {
    fetched: "fetched",
    would_fetch: "would fetch",
    over_budget: "left for a later run (over max_bytes_per_run)",
    failed: "failed",
  };
  for (const file of report.files) {
    lines.push(
      `${verbs[file.outcome]} ${file.path} (${file.bytes} bytes)${file.error ? `: ${file.error}` : ""}`,
    );
  }
  const wanted = report.files.filter((f) => f.outcome === "would_fetch" || f.outcome === "fetched");
  lines.push(
    report.dryRun
      ? `Would fetch ${wanted.length} file(s), ${wanted.reduce((sum, f) => sum + f.bytes, 0)} bytes.`
      : `Fetched ${wanted.length} file(s), ${report.bytes} bytes.`,
  );
  if (report.dryRun && report.databases.length > 0) {
    lines.push(
      "Dry run: nothing was downloaded or written. The list comes from the databases in the cache; a pass " +
        "revalidates them first and may find newer versions.",
    );
  }
  if (result.ranIn === "here" && result.cleanup) lines.push(...describeCleanup(result.cleanup));
  if (options.enabled === false) {
    lines.push(
      "Note: [prefetch] enabled is false, so the proxy does not record which packages clients fetch; a pass " +
        "looks only at fetches recorded while it was true. Set enabled = true to prefetch.",
    );
  }
  return lines;
}

/** Text for an error of the command. */
export function prefetchError(error: unknown): string {
  return `flexo prefetch: ${describeError(error)}`;
}
