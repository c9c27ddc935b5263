/**
 * Changes to the cache directory by another process (`flexo import`, `flexo clean`, an administrator's `rm`):
 * the proxy counts its own downloads and removals as they happen (cache_usage.ts), but is not told about these.
 * A watch of the directory tree notes the paths that change; once the directory has been quiet for a moment, a
 * change to a path the proxy did not report itself has the cache counted again, so that the status page and the
 * metrics are true right after an import and not only after a restart.
 *
 * @module
 */

import { relative } from "node:path";
import type { CacheUsage } from "./cache_usage.ts";

/** A watch of a directory tree, as `Deno.watchFs(dir, { recursive: true })` gives it. */
export interface DirectoryWatch extends AsyncIterable<Deno.FsEvent> {
  /** Ends the watch (and its iteration). */
  close(): void;
}

/** What {@linkcode watchCacheChanges} needs: the watch and the timers, injected for tests. */
export interface CacheWatchDeps {
  /** Starts watching `dir` recursively. Default: `Deno.watchFs`. */
  watch?: (dir: string) => DirectoryWatch;
  setTimer?: (callback: () => void, ms: number) => unknown;
  clearTimer?: (timer: unknown) => void;
  /** Called when the watch cannot start or fails; the counts then stay as the proxy keeps them. */
  onError?: (error: Error) => void;
}

/** How long the directory must be quiet before a count, by default: an import's files come as one change. */
export const CACHE_QUIET_MS = 2_000;

/** Changed paths remembered between counts at most; more means "something changed" all the same. */
const MAX_PENDING = 10_000;

/** A running watch; {@linkcode CacheWatch.stop} ends it. */
export interface CacheWatch {
  stop(): void;
  /** Resolves when the watch has ended (after stop(), or when it failed). */
  readonly ended: Promise<void>;
}

/** Event kinds that change nothing a count sees. */
const IGNORED_KINDS: ReadonlySet<Deno.FsEvent["kind"]> = new Set(["access", "other"]);

/**
 * Watches `usage.root` and has `usage` count the directory again after changes the proxy did not make itself.
 * Paths under a top-level dot directory (`.partial/` downloads in progress, `.flexo/` records) are ignored.
 */
export function watchCacheChanges(
  usage: CacheUsage,
  options: CacheWatchDeps & { quietMs?: number } = {},
): CacheWatch {
  const setTimer = options.setTimer ?? ((callback, ms) => setTimeout(callback, ms));
  const clearTimer = options.clearTimer ?? ((timer) => clearTimeout(timer as number));
  const quietMs = options.quietMs ?? CACHE_QUIET_MS;
  const pending = new Set<string>();
  let timer: unknown;
  let watch: DirectoryWatch;
  try {
    watch = (options.watch ?? ((dir) => Deno.watchFs(dir, { recursive: true })))(usage.root);
  } catch (error) {
    options.onError?.(asError(error));
    return { stop() {}, ended: Promise.resolve() };
  }
  const settle = () => {
    timer = undefined;
    const own = usage.takeReported();
    const foreign = pending.size >= MAX_PENDING || [...pending].some((path) => !own.has(path));
    pending.clear();
    if (foreign) void usage.rescan();
  };
  const note = (event: Deno.FsEvent) => {
    if (IGNORED_KINDS.has(event.kind)) return;
    let noted = false;
    for (const path of event.paths) {
      const key = relative(usage.root, path);
      if (key === "" || key.startsWith("..") || key.startsWith(".")) continue;
      if (pending.size < MAX_PENDING) pending.add(key);
      noted = true;
    }
    if (!noted) return;
    if (timer !== undefined) clearTimer(timer);
    timer = setTimer(settle, quietMs);
  };
  const ended = (async () => {
    try {
      for await (const event of watch) note(event);
    } catch (error) {
      options.onError?.(asError(error));
    } finally {
      if (timer !== undefined) clearTimer(timer);
    }
  })();
  return {
    stop() {
      try {
        watch.close();
      } catch {
        // already closed
      }
    },
    ended,
  };
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
