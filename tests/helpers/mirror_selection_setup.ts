/**
 * The setup of the mirror selection tests: a configuration for auto mode, a local status JSON endpoint, a pool
 * with its log wired like the proxy's, timers fired by hand, and a fetch that stays on loopback.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Config, MirrorsAutoConfig } from "../../src/config/config_schema.ts";
import { LATENCY_TEST_PATH } from "../../src/mirrors/latency_test.ts";
import { type MirrorSelectionDeps, primaryMirrorLogger } from "../../src/mirrors/mirror_selection.ts";
import { MirrorPool } from "../../src/mirrors/mirrors.ts";
import type { MirrorStatusEntry } from "../../src/mirrors/mirror_status.ts";
import type { FakeMirror } from "./fake_mirror.ts";
import { type LatencyMirrors, latencyMirrors, mirrorsAutoSettings, refusingUrl } from "./mirror_fixtures.ts";
import { withTempDir } from "./temp_dir.ts";

/** A day in milliseconds. */
export const DAY = 86_400_000;
/** A mirror as stored in a ranking file. */
export const ranked = (url: string, latencyMs = 5) => ({ url, latencyMs, countryCode: "DE", score: 1 });
/** The clock of the tests at their start. */
export const T0 = Date.parse("2024-05-14T10:00:00.000Z");

/** A fetch that refuses anything but loopback, so that no test can reach the internet. */
export const loopbackFetch: typeof fetch = (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  if (url.hostname !== "127.0.0.1") throw new Error(`test tried to reach ${url.href}`);
  return fetch(input, init);
};

/** A local status JSON endpoint; `hang` holds answers until `release()`. */
export function statusServer(entries: MirrorStatusEntry[], options: { hang?: boolean } = {}) {
  let release = () => {};
  const released = new Promise<void>((resolve) => release = resolve);
  const state = { requests: 0 };
  /** Resolved when the request of that number (from 1) arrives. */
  const arrivals = new Map<number, PromiseWithResolvers<void>>();
  const arrival = (n: number) => {
    if (!arrivals.has(n)) arrivals.set(n, Promise.withResolvers<void>());
    return arrivals.get(n)!;
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async () => {
    state.requests++;
    arrival(state.requests).resolve();
    if (options.hang) await released;
    return Response.json({ version: 3, urls: entries });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/mirrors/status/json/`,
    state,
    /** Resolves when the server has had `n` requests. */
    requested: (n: number) => arrival(n).promise,
    release,
    close: () => {
      release();
      return server.shutdown();
    },
  };
}

/** How many latency tests a fake mirror answered. */
export const hits = (mirror: FakeMirror) => mirror.countRequests(LATENCY_TEST_PATH);

/** A configuration for auto mode in `dir`, with `overrides` and `auto` settings. */
export function testConfig(
  dir: string,
  overrides: Partial<Config> = {},
  auto: Partial<MirrorsAutoConfig> = {},
): Config {
  return {
    cache_directory: dir,
    mirrorlist_fallback_file: join(dir, "mirrorlist"),
    mirrorlist_latency_test_results_file: join(dir, "state", "latency_test_results.json"),
    port: 7878,
    listen_ip_address: ["127.0.0.1"],
    mirror_selection_method: "auto",
    mirrors_predefined: [],
    connect_timeout: 3000,
    low_speed_limit: 1024,
    low_speed_time_secs: 3,
    client_timeout_secs: 60,
    offline: false,
    sendfile: true,
    num_versions_retain: 3,
    refresh_latency_tests_after: "8 days",
    custom_repo: [],
    allowed_clients: [],
    cache_peers: [],
    trusted_proxies: [],
    shutdown_drain_secs: 3,
    log_level: "info",
    prefetch: {
      enabled: false,
      interval: "6h",
      unaccessed_days: 30,
      max_bytes_per_run: 1024,
      max_parallel: 1,
    },
    ...overrides,
    mirrors_auto: mirrorsAutoSettings({
      mirrors_status_json_endpoint: refusingUrl(),
      num_mirrors: 3,
      timeout: 400,
      ...auto,
    }),
  };
}

/** Timers that fire only when a test says so: `only()` names the one pending, `fire()` runs the oldest. */
export function fakeTimers() {
  let nextId = 1;
  const pending = new Map<number, { callback: () => void; ms: number }>();
  return {
    pending,
    setTimer: (callback: () => void, ms: number) => {
      pending.set(nextId, { callback, ms });
      return nextId++;
    },
    clearTimer: (id: unknown) => void pending.delete(id as number),
    /** The one pending timer. */
    only() {
      assert.equal(pending.size, 1, "exactly one timer is pending");
      return [...pending.values()][0];
    },
    fire() {
      const [id, timer] = [...pending.entries()][0];
      pending.delete(id);
      timer.callback();
    },
  };
}

/** A pool, a log and the sources of primary changes, wired like the proxy does it. */
export function setup(dir: string) {
  const infos: string[] = [];
  const warnings: string[] = [];
  const sources: string[] = [];
  const log = { info: (m: string) => infos.push(m), warn: (m: string) => warnings.push(m) };
  const logPrimary = primaryMirrorLogger(log);
  const pool = new MirrorPool({
    onPrimaryChange: (url, source) => {
      sources.push(source);
      logPrimary(url, source);
    },
  });
  const clock = { now: T0 };
  const timers = fakeTimers();
  const deps: MirrorSelectionDeps = {
    pool,
    log,
    fetch: loopbackFetch,
    now: () => clock.now,
    setTimer: timers.setTimer,
    clearTimer: timers.clearTimer,
    statusTimeoutMs: 2000,
  };
  return { pool, infos, warnings, sources, clock, timers, deps, dir };
}

/** Runs `fn` with a temporary directory and a group of latency mirrors, closed and removed afterwards. */
export async function withDir(fn: (dir: string, mirrors: LatencyMirrors) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    await using mirrors = await latencyMirrors();
    await fn(dir, mirrors);
  }, { prefix: "flexo_selection_" });
}
