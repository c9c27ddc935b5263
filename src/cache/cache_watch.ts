/**
 * Changes to the cache directory by another process (`flexo import`, `flexo clean`, an administrator's `rm`):
 * the proxy counts its own downloads and removals as they happen (cache_usage.ts), but is not told about these.
 * A watch of the directory tree notes the paths that change; once the directory has been quiet for a moment, a
 * change to a path the proxy did not report itself has the cache counted again, so that the status page and the
 * metrics are true right after an import and not only after a restart.
 *
 * @module
 */

import { join, resolve } from "node:path";
import type { CacheUsage } from "./cache_usage.ts";
import { closeQuietly } from "../close_quietly.ts";

/** A watch of directories, as `Deno.watchFs(paths, { recursive })` gives it. */
export interface DirectoryWatch extends AsyncIterable<Deno.FsEvent> {
  /** Ends the watch (and its iteration). */
  close(): void;
}

/** What {@linkcode watchCacheChanges} needs: the watch, the folder listing and the timers, injected for tests. */
export interface CacheWatchDeps {
  /** Starts watching `paths`, with what is below them or only their entries. Default: `Deno.watchFs`. */
  watch?: (paths: string[], options: { recursive: boolean }) => DirectoryWatch;
  /** The names of the folders in `dir`. Default: read with `Deno.readDirSync`. */
  folders?: (dir: string) => string[];
  setTimer?: (callback: () => void, ms: number) => unknown;
  clearTimer?: (timer: unknown) => void;
  /** Clock in milliseconds, for the quiet time. Default `performance.now`. */
  now?: () => number;
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
 * Top-level dot directories (`.partial/` downloads in progress, `.flexo/` records) are not watched: the root's
 * own entries are, and every other top-level folder with all below it (watched again when one is added or
 * removed). A download's file, written chunk by chunk, thus wakes neither the watcher's thread nor the event
 * loop, which on a small machine is CPU taken from the download and from the clients.
 */
export function watchCacheChanges(
  usage: CacheUsage,
  options: CacheWatchDeps & { quietMs?: number } = {},
): CacheWatch {
  const setTimer = options.setTimer ?? ((callback, ms) => setTimeout(callback, ms));
  const clearTimer = options.clearTimer ?? ((timer) => clearTimeout(timer as number));
  const watchPaths = options.watch ?? ((paths, { recursive }) => Deno.watchFs(paths, { recursive }));
  const listFolders = options.folders ?? readFolders;
  const quietMs = options.quietMs ?? CACHE_QUIET_MS;
  const now = options.now ?? (() => performance.now());
  // Paths as the watch gives them: the root's own, and what is below it after `prefix`.
  const rootPath = resolve(usage.root);
  const prefix = rootPath.endsWith("/") ? rootPath : rootPath + "/";
  const pending = new Set<string>();
  let timer: unknown;
  /** When the last change was noted: the timer, started once, waits again until the directory is quiet. */
  let lastChangeAt = 0;
  let stopped = false;
  /** The watch of the top-level folders (none while there are none), and the folders it watches. */
  let tree: { watch: DirectoryWatch; folders: string } | undefined;
  const loops: Promise<void>[] = [];
  const settle = () => {
    const quietFor = now() - lastChangeAt;
    if (quietFor < quietMs) {
      timer = setTimer(settle, quietMs - quietFor);
      return;
    }
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
      if (!path.startsWith(prefix)) continue;
      const key = path.slice(prefix.length);
      if (key === "" || key.startsWith(".")) continue;
      if (pending.size < MAX_PENDING) pending.add(key);
      noted = true;
    }
    if (!noted) return;
    // One timer per quiet period, not one per change: a download's commit makes several changes, and each
    // timer set and cleared cost the event loop (BENCHMARKS.md, session eight).
    lastChangeAt = now();
    timer ??= setTimer(settle, quietMs);
  };
  const follow = (watch: DirectoryWatch, onEvent: (event: Deno.FsEvent) => void) => {
    loops.push((async () => {
      try {
        for await (const event of watch) onEvent(event);
      } catch (error) {
        if (stopped) return;
        // The counts stay as the proxy keeps them: no half a watch.
        options.onError?.(asError(error));
        stop();
      }
    })());
  };
  /** Watches the top-level folders as they are now, if they are not what is watched already. */
  const watchTree = () => {
    const folders = listFolders(usage.root).filter((name) => !name.startsWith(".")).sort();
    if (tree?.folders === folders.join("/")) return;
    tree?.watch.close();
    tree = undefined;
    if (folders.length === 0) return;
    const watch = watchPaths(folders.map((name) => join(usage.root, name)), { recursive: true });
    tree = { watch, folders: folders.join("/") };
    follow(watch, note);
  };
  let root: DirectoryWatch | undefined;
  const stop = () => {
    stopped = true;
    for (const watch of [root, tree?.watch]) closeQuietly(watch);
  };
  try {
    root = watchPaths([usage.root], { recursive: false });
    watchTree();
  } catch (error) {
    options.onError?.(asError(error));
    stop();
    return { stop() {}, ended: Promise.all(loops).then(() => {}) };
  }
  follow(root, (event) => {
    // Deno hands a directory's watch the events of every watch below it in the same process: those below the
    // root's own entries are the tree's (a download's commit makes several), neither noted twice nor a reason
    // to list the folders again.
    if (!event.paths.some((path) => path.startsWith(prefix) && !path.includes("/", prefix.length))) return;
    note(event);
    if (IGNORED_KINDS.has(event.kind) || event.kind === "modify") return;
    try {
      if (!stopped) watchTree();
    } catch (error) {
      options.onError?.(asError(error));
      stop();
    }
  });
  const ended = (async () => {
    // Loops started while waiting (a new folder's watch) are waited for too.
    for (let waited = 0; waited < loops.length; waited = loops.length) await Promise.all(loops);
    if (timer !== undefined) clearTimer(timer);
  })();
  return { stop, ended };
}

/** The names of the folders in `dir`; throws when it cannot be read. */
function readFolders(dir: string): string[] {
  const names: string[] = [];
  for (const entry of Deno.readDirSync(dir)) if (entry.isDirectory) names.push(entry.name);
  return names;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
