/**
 * Gives memory that work has left behind back to the system: V8 keeps the pages of its heap that a collection
 * freed (a start-up scan of 40,000 cached files leaves about 50 MiB of them, see BENCHMARKS.md, "Memory (issue
 * 20)"), and glibc keeps freed blocks in its arenas. Neither returns them on its own while the process idles.
 *
 * A release is V8's most thorough collection (the one it makes before giving up on an allocation, which also
 * unmaps the pages it freed), then glibc's `malloc_trim(0)`. It costs a few milliseconds of the main thread on
 * a heap of flexo's size, so it runs only after work that leaves much garbage and when that work has ended: the
 * start-up scans, and a quiet interval after requests.
 *
 * The collection needs `gc`, which V8 gives the global scope with `--expose-gc` (one of the V8 flags of the
 * serve task, the compiled executable and the container; see `scripts/compile.ts`). Without it only the trim
 * runs; without glibc (see `server/libc.ts`) only the collection.
 *
 * @module
 */

/** V8's `gc()` with the options that ask for a full, synchronous collection that also unmaps freed pages. */
export type GcFunction = (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;

/** What a release can use: the exposed collector and glibc's trim, each when present. */
export interface ReleaseTools {
  gc?: GcFunction;
  /** glibc's `malloc_trim(0)`. */
  mallocTrim?: () => void;
}

/** The release tools of this process: `globalThis.gc` (with `--expose-gc`) and `mallocTrim` when given. */
export function processReleaseTools(mallocTrim?: () => void): ReleaseTools {
  const gc = (globalThis as { gc?: unknown }).gc;
  return { gc: typeof gc === "function" ? gc as GcFunction : undefined, mallocTrim };
}

/** Runs one release with `tools`; returns which steps ran. */
export function releaseMemory(tools: ReleaseTools): { collected: boolean; trimmed: boolean } {
  tools.gc?.({ type: "major", execution: "sync", flavor: "last-resort" });
  tools.mallocTrim?.();
  return { collected: tools.gc !== undefined, trimmed: tools.mallocTrim !== undefined };
}

/** Options for {@linkcode IdleRelease}. */
export interface IdleReleaseOptions {
  /** Runs one release (default: {@linkcode releaseMemory} with the process's tools). */
  release: () => void;
  /** A number that changes whenever the proxy did work (e.g. requests answered plus downloads started). */
  activity: () => number;
  /** How often activity is looked at; a release follows the first look that finds none since the last. */
  intervalMs?: number;
  /** Default `setInterval`, with the timer not keeping the process alive. */
  setInterval?: (callback: () => void, ms: number) => unknown;
  /** Default `clearInterval`. */
  clearInterval?: (timer: unknown) => void;
}

/** Default interval of {@linkcode IdleRelease}: a release follows 30-60 s after the last request. */
export const IDLE_RELEASE_INTERVAL_MS = 30_000;

/**
 * Releases memory once after each busy period, when the proxy has gone quiet: every interval it compares the
 * activity with the previous look; a release follows the first look that finds no change after one that did
 * A proxy that stays busy or stays idle never pays for one.
 */
export class IdleRelease {
  #options: IdleReleaseOptions;
  #seen: number;
  #due = false;
  #timer: unknown;

  /** @param options What to release, how to see activity, and the timer; nothing runs until `start()`. */
  constructor(options: IdleReleaseOptions) {
    this.#options = options;
    this.#seen = options.activity();
  }

  /** Starts looking at the activity. */
  start(): void {
    if (this.#timer !== undefined) return;
    const every = this.#options.setInterval ?? ((callback: () => void, ms: number) => {
      const id = setInterval(callback, ms);
      Deno.unrefTimer(id);
      return id;
    });
    this.#timer = every(() => this.#look(), this.#options.intervalMs ?? IDLE_RELEASE_INTERVAL_MS);
  }

  /** Stops looking. */
  stop(): void {
    if (this.#timer === undefined) return;
    (this.#options.clearInterval ?? ((timer) => clearInterval(timer as number)))(this.#timer);
    this.#timer = undefined;
  }

  #look(): void {
    const now = this.#options.activity();
    if (now !== this.#seen) {
      this.#seen = now;
      this.#due = true;
      return;
    }
    if (!this.#due) return;
    this.#due = false;
    this.#options.release();
  }
}

/** Options for {@linkcode startMemoryReleases}. */
export interface MemoryReleasesOptions {
  /** The start-up work (scans of the cache, reading its databases): one release follows when all has settled. */
  startup: readonly Promise<unknown>[];
  /** See {@linkcode IdleReleaseOptions.activity}. */
  activity: () => number;
  /** Runs one release (default: {@linkcode releaseMemory} with `processReleaseTools(mallocTrim)`). */
  release?: () => void;
  /** glibc's `malloc_trim(0)`, for the default release. */
  mallocTrim?: () => void;
  /** The timer of the {@linkcode IdleRelease}. */
  setInterval?: IdleReleaseOptions["setInterval"];
  clearInterval?: IdleReleaseOptions["clearInterval"];
  /**
   * Waits `ms` (default: a `setTimeout` that does not keep the process alive): the start-up release waits
   * {@linkcode STARTUP_RELEASE_DELAY_MS} after the start-up work has settled.
   */
  delay?: (ms: number) => Promise<void>;
}

/**
 * How long the start-up release waits after the start-up work has settled. The scans of an empty or small cache
 * end within the first few hundred milliseconds, when the first clients come: a full collection then took about
 * 40 ms of the main thread before the first answer (BENCHMARKS.md, session seven, start-up time).
 */
export const STARTUP_RELEASE_DELAY_MS = 2_000;

function unrefDelay(ms: number): Promise<void> {
  return new Promise((resolve) => Deno.unrefTimer(setTimeout(resolve, ms)));
}

/**
 * The releases of a serving process: one {@linkcode STARTUP_RELEASE_DELAY_MS} after the start-up work has
 * settled (its garbage grows with the cache's files), then one after every busy period. Returns the started
 * {@linkcode IdleRelease} (to stop it) and the promise of the start-up release.
 */
export function startMemoryReleases(
  options: MemoryReleasesOptions,
): { idle: IdleRelease; afterStartup: Promise<void> } {
  const tools = processReleaseTools(options.mallocTrim);
  const release = options.release ?? (() => void releaseMemory(tools));
  const delay = options.delay ?? unrefDelay;
  const afterStartup = Promise.allSettled(options.startup)
    .then(() => delay(STARTUP_RELEASE_DELAY_MS))
    .then(() => release());
  const idle = new IdleRelease({
    release,
    activity: options.activity,
    setInterval: options.setInterval,
    clearInterval: options.clearInterval,
  });
  idle.start();
  return { idle, afterStartup };
}
