/**
 * `GET /healthz`: whether a balancer should send this node new clients. 200 `ok` while the node serves; 503
 * `draining` once it is stopping (after SIGTERM, for `shutdown_drain_secs` before the listener closes), so that
 * a balancer's health check takes the node out while its running downloads go on; 503 `cache directory
 * unusable: ...` while the cache directory cannot take a new file (read-only or lost mount, a directory that is
 * no longer one, permissions, I/O errors), since every miss then fails. A full disk or a lack of file
 * descriptors does not count: they pass by themselves (retention frees space), and hits are still served.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { Hono } from "hono";
import { join } from "node:path";
import { describeError } from "../describe_error.ts";
import { isCacheUnusable } from "../download/file_writes.ts";

const log = getLogger(["flexo", "health"]);

/** Whether the node takes new clients. */
export type HealthState = "serving" | "draining";

/** What `/healthz` tells: serving, draining, or a cache directory that cannot take files (and why). */
export type HealthVerdict =
  | { type: "serving" }
  | { type: "draining" }
  | { type: "unusable_cache"; reason: string };

/** Writes and removes a small file where downloads are written; rejects with the system's error when it cannot. */
export type CacheProbe = () => Promise<void>;

/**
 * A probe of `cacheDirectory`: creates its `.partial` folder if needed (as a download does) and a file in it, then
 * removes the file. `.partial` is outside the cache's change watch, and start-up recovery removes a file left
 * there by a crash.
 */
export function cacheDirectoryProbe(cacheDirectory: string, partialDir: string): CacheProbe {
  const folder = join(cacheDirectory, partialDir);
  const path = join(folder, ".healthz-probe");
  return async () => {
    await Deno.mkdir(folder, { recursive: true });
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    file.close();
    await Deno.remove(path);
  };
}

/**
 * A probe that passed counts for this long: a balancer checks every second or two, and a client that asks
 * `/healthz` in a loop must not make the node write a file per request (an SD card's wear, the threads' time).
 */
export const PROBE_VALID_MS = 1_000;

/** The node's health, owned by the app; `main.ts` switches it to draining on SIGTERM. */
export class NodeHealth {
  #state: HealthState = "serving";
  #probe: CacheProbe | undefined;
  #now: () => number;
  #passedAt = -Infinity;
  #probing: Promise<HealthVerdict> | undefined;
  /** Whether the last probe found the cache directory unusable: its changes are logged, not every check. */
  #unusable = false;

  /**
   * A serving node; with `probe`, {@linkcode NodeHealth.check} also checks the cache directory with it: at most
   * once per {@linkcode PROBE_VALID_MS} while it passes (by `now`), and once for any number of checks at a time.
   */
  constructor(options: { probe?: CacheProbe; now?: () => number } = {}) {
    this.#probe = options.probe;
    this.#now = options.now ?? Date.now;
  }

  /** The current state. */
  get state(): HealthState {
    return this.#state;
  }

  /** From now on `/healthz` answers 503; requests are still served. */
  startDraining(): void {
    this.#state = "draining";
  }

  /** What `/healthz` answers now: draining, else the probe's verdict on the cache directory. */
  check(): Promise<HealthVerdict> {
    if (this.#state === "draining") return Promise.resolve({ type: "draining" });
    const probe = this.#probe;
    // A clock set back since the pass (elapsed < 0) must not let the pass count until the clock catches up.
    const elapsed = this.#now() - this.#passedAt;
    if (probe === undefined || (elapsed >= 0 && elapsed < PROBE_VALID_MS)) {
      return Promise.resolve({ type: "serving" });
    }
    this.#probing ??= this.#run(probe).finally(() => this.#probing = undefined);
    return this.#probing;
  }

  async #run(probe: CacheProbe): Promise<HealthVerdict> {
    const verdict = await this.#verdict(probe);
    // A balancer takes the node out on the 503: the log says why, once, and when it is back.
    if (verdict.type === "unusable_cache" && !this.#unusable) {
      log.warn(
        "/healthz answers 503: the cache directory cannot take new files ({reason}); misses fail until its " +
          "mount, permissions or disk are fixed",
        { reason: verdict.reason },
      );
    } else if (verdict.type === "serving" && this.#unusable) {
      log.info("/healthz answers 200 again: the cache directory takes new files");
    }
    this.#unusable = verdict.type === "unusable_cache";
    return verdict;
  }

  async #verdict(probe: CacheProbe): Promise<HealthVerdict> {
    try {
      await probe();
      this.#passedAt = this.#now();
    } catch (error) {
      if (isCacheUnusable(error)) {
        return { type: "unusable_cache", reason: describeError(error) };
      }
    }
    return { type: "serving" };
  }
}

/** The `/healthz` route (GET and HEAD); never cached by anyone on the way. */
export function healthRoutes(health: NodeHealth): Hono {
  const routes = new Hono();
  routes.on(["GET", "HEAD"], "/healthz", async (c) => {
    const verdict = await health.check();
    c.header("Cache-Control", "no-store");
    c.header("Content-Type", "text/plain; charset=utf-8");
    switch (verdict.type) {
      case "serving":
        return c.body("ok\n", 200);
      case "draining":
        return c.body("draining\n", 503);
      case "unusable_cache":
        return c.body(
          `cache directory unusable: ${verdict.reason}; misses cannot be stored: check its mount, ` +
            "permissions and disk\n",
          503,
        );
    }
  });
  return routes;
}

/** Resolves after `ms` milliseconds with the injected timer (the drain period before the listener closes). */
export function drainPeriod(
  ms: number,
  timers: { setTimeout: (fn: () => void, ms: number) => unknown } = globalThis,
): Promise<void> {
  return new Promise((resolve) => void timers.setTimeout(resolve, ms));
}
