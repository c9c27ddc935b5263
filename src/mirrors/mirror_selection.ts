/**
 * Automatic mirror selection (`mirror_selection_method = "auto"`) that never blocks the proxy.
 *
 * Before {@linkcode startMirrorSelection} returns, the pool already holds the best list available without the
 * network: the persisted ranking, else the mirror list of the last ranking (`mirrorlist_fallback_file`, as flexo
 * keeps it), else `mirrors_predefined`, else the built-in mirrors. In the background it then fetches the mirror
 * status JSON (when that fails, the list at hand stays), puts the best-scored mirrors into the pool at once,
 * latency-tests the candidates, ranks them by a combined score that includes what the pool learnt on real
 * downloads (`mirror_score.ts`), persists the ranking and the mirror list, and repeats every
 * `refresh_latency_tests_after`.
 *
 * @module
 */

import type { Config } from "../config/config_schema.ts";
import type { LatencyResult } from "./latency_test.ts";
import {
  type RankedMirror,
  rankingAgeMs,
  readMirrorListSync,
  readRankingSync,
  writeMirrorList,
  writeRanking,
} from "./mirror_ranking_store.ts";
import { rankByCombinedScore } from "./mirror_score.ts";
import { BUILT_IN_MIRRORS, type MirrorPool } from "./mirrors.ts";
import { parseDuration } from "../config/units.ts";

/** Where log lines go. */
export interface SelectionLog {
  info(msg: string): void;
  warn(msg: string): void;
  debug?(msg: string): void;
}

/** Dependencies of {@linkcode startMirrorSelection}. */
export interface MirrorSelectionDeps {
  /** The pool to fill; its `onPrimaryChange` should be {@linkcode primaryMirrorLogger}. */
  pool: MirrorPool;
  /** The fetch implementation. Default the global `fetch`. */
  fetch?: typeof fetch;
  /** Wall clock in milliseconds since the epoch, for the ranking's age and the refresh schedule. */
  now?: () => number;
  /** Where progress and problems are logged. Default: nowhere. */
  log?: SelectionLog;
  /** Starts a timer; the default is an unref'd `setTimeout`, so the timer never keeps the process alive. */
  setTimer?: (callback: () => void, ms: number) => unknown;
  /** Cancels a timer started by `setTimer`. */
  clearTimer?: (timer: unknown) => void;
  /** Random numbers for `mirrors_random_or_sort = "random"`. */
  random?: () => number;
  /** Monotonic clock for the latency tests. Default `performance.now`. */
  latencyClock?: () => number;
  /** Latency tests running at the same time. Default `LATENCY_TEST_CONCURRENCY` (latency_test.ts). */
  latencyConcurrency?: number;
  /** Time allowed for each status JSON endpoint. Default 30 s. */
  statusTimeoutMs?: number;
  /** Delay before retrying after a failed ranking; doubles on each failure up to the refresh interval. Default 60 s. */
  retryAfterMs?: number;
}

/** A running selection. */
export interface MirrorSelection {
  /** Resolves when the first ranking attempt is over (also when it failed or was stopped); never rejects. */
  ready: Promise<void>;
  /** Fetches, tests and ranks again now; resolves when done (never rejects). */
  refresh(): Promise<void>;
  /** Cancels the timer and any running test; the pool keeps its mirrors. */
  stop(): void;
}

/** Returns a function for {@linkcode MirrorPool}'s `onPrimaryChange` that logs `Primary mirror: "<url>"`. */
export function primaryMirrorLogger(
  log: Pick<SelectionLog, "info">,
): (url: string | undefined, source: string) => void {
  return (url, source) => {
    if (url === undefined) log.info(`No primary mirror: the mirror list from ${source} is empty.`);
    else log.info(`Primary mirror: "${url}" (from ${source})`);
  };
}

/** Sources that are only stand-ins until the status JSON or a ranking is available. */
const FALLBACK_SOURCES = new Set(["predefined", "built-in"]);
/** The pool's source when it holds the mirror list of `mirrorlist_fallback_file`. */
const MIRROR_LIST_SOURCE = "mirrorlist fallback file";
const DEFAULT_REFRESH = "8 days";
/** setTimeout cannot wait longer than this (about 24.8 days); longer waits are chained. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const MIN_REFRESH_MS = 1000;
const SILENT_LOG: SelectionLog = { info() {}, warn() {} };

/**
 * Starts mirror selection for `config` and fills `deps.pool` synchronously with the best list available now.
 *
 * With `mirror_selection_method = "predefined"` the pool gets `mirrors_predefined` and nothing runs in the
 * background. With `"auto"` see the module documentation; a persisted ranking younger than
 * `refresh_latency_tests_after` is used as it is, without touching the network until it is due.
 */
export function startMirrorSelection(config: Config, deps: MirrorSelectionDeps): MirrorSelection {
  const log = deps.log ?? SILENT_LOG;
  if (config.mirror_selection_method === "predefined") {
    setFallback(config, deps.pool, log);
    return { ready: Promise.resolve(), refresh: () => Promise.resolve(), stop() {} };
  }
  return new AutoSelection(config, deps, log).start();
}

/**
 * Fills `pool` with the list the proxy starts with (the persisted ranking under `"auto"`, else
 * `mirrors_predefined` or the built-in mirrors), touching no network and starting nothing: for a one-off
 * command such as `flexo prefetch` run without a proxy.
 */
export function fillStartingMirrors(config: Config, pool: MirrorPool, log: SelectionLog = SILENT_LOG): void {
  const path = config.mirrorlist_latency_test_results_file;
  const stored = config.mirror_selection_method === "auto" && path !== ""
    ? readRankingSync(path, { log })
    : undefined;
  if (stored !== undefined && stored.mirrors.length > 0) usePersisted(pool, stored.mirrors);
  else setFallback(config, pool, log);
}

function usePersisted(pool: MirrorPool, mirrors: RankedMirror[]): void {
  pool.setMirrors(mirrors.map((m) => m.url), "persisted ranking");
  for (const m of mirrors) pool.recordLatency(m.url, m.latencyMs);
}

function setFallback(config: Config, pool: MirrorPool, log: SelectionLog): void {
  if (config.mirrors_predefined.length > 0) {
    pool.setMirrors(config.mirrors_predefined, "predefined");
    return;
  }
  if (config.mirror_selection_method === "predefined") {
    log.warn(
      'mirror_selection_method is "predefined" but mirrors_predefined is empty; using the built-in mirrors. ' +
        'Add mirror URLs to mirrors_predefined or use mirror_selection_method = "auto".',
    );
  }
  pool.setMirrors(BUILT_IN_MIRRORS, "built-in");
}

/**
 * The `[mirrors_auto]` settings that decide which mirrors qualify, as a string stored with the ranking: a ranking
 * made under other settings is used at start but re-tested at once (flexo asks users to delete the file instead).
 */
function settingsFingerprint(config: Config): string {
  const m = config.mirrors_auto;
  return JSON.stringify({
    https_required: m.https_required,
    ipv4: m.ipv4,
    ipv6: m.ipv6,
    max_score: m.max_score,
    num_mirrors: m.num_mirrors,
    allowed_countries: m.allowed_countries.map((c) => c.toUpperCase()).sort(),
    mirrors_blacklist: [...m.mirrors_blacklist].sort(),
    min_completion_pct: m.min_completion_pct,
    max_delay_secs: m.max_delay_secs,
  });
}

function refreshIntervalMs(config: Config, log: SelectionLog): number {
  try {
    return Math.max(MIN_REFRESH_MS, parseDuration(config.refresh_latency_tests_after));
  } catch (error) {
    log.warn(`refresh_latency_tests_after: ${(error as Error).message} Using "${DEFAULT_REFRESH}".`);
    return parseDuration(DEFAULT_REFRESH);
  }
}

class AutoSelection {
  #config: Config;
  #deps: MirrorSelectionDeps;
  #log: SelectionLog;
  #now: () => number;
  #intervalMs: number;
  #abort = new AbortController();
  #timer: unknown = undefined;
  #running: Promise<void> | undefined;
  #nextRetryMs: number;
  #stopped = false;

  constructor(config: Config, deps: MirrorSelectionDeps, log: SelectionLog) {
    this.#config = config;
    this.#deps = deps;
    this.#log = log;
    this.#now = deps.now ?? Date.now;
    this.#intervalMs = refreshIntervalMs(config, log);
    this.#nextRetryMs = this.#retryBaseMs();
  }

  start(): MirrorSelection {
    const { pool } = this.#deps;
    const path = this.#config.mirrorlist_latency_test_results_file;
    const stored = path === "" ? undefined : readRankingSync(path, { log: this.#log });
    let dueAt = this.#now();
    if (stored !== undefined && stored.mirrors.length > 0) {
      usePersisted(pool, stored.mirrors);
      const age = rankingAgeMs(stored, this.#now());
      const sameSettings = stored.settings === undefined ||
        stored.settings === settingsFingerprint(this.#config);
      if (age < this.#intervalMs && sameSettings) dueAt = this.#now() + (this.#intervalMs - age);
      this.#log.info(
        `Using the ${stored.mirrors.length} mirrors ranked at ${stored.timestamp}` +
          (dueAt > this.#now()
            ? "."
            : sameSettings
            ? "; the ranking is due for a refresh, testing the mirrors in the background."
            : "; the [mirrors_auto] settings changed since, testing the mirrors in the background."),
      );
    } else if (!this.#useMirrorList()) {
      setFallback(this.#config, pool, this.#log);
    }
    let ready: Promise<void>;
    if (dueAt > this.#now()) {
      this.#schedule(dueAt);
      ready = Promise.resolve();
    } else {
      ready = this.refresh();
    }
    return { ready, refresh: () => this.refresh(), stop: () => this.stop() };
  }

  /** Fills the pool from `mirrorlist_fallback_file`; false when it lists no mirror. */
  #useMirrorList(): boolean {
    const path = this.#config.mirrorlist_fallback_file;
    const urls = readMirrorListSync(path, { log: this.#log });
    if (urls === undefined) return false;
    this.#deps.pool.setMirrors(urls, MIRROR_LIST_SOURCE);
    this.#log.info(
      `Using the ${urls.length} mirrors of the last ranking from ${path} until the mirrors are ranked again.`,
    );
    return true;
  }

  refresh(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    // A refresh asked for while one runs joins it.
    this.#running ??= this.#rankAndSchedule().finally(() => this.#running = undefined);
    return this.#running;
  }

  async #rankAndSchedule(): Promise<void> {
    this.#cancelTimer();
    let ok = false;
    try {
      ok = await this.#rank();
    } catch (error) {
      // Not expected (every step handles its errors), but the refresh loop must survive anything.
      this.#log.warn(`Mirror selection failed: ${(error as Error).message}. It will be retried.`);
    }
    if (this.#stopped) return;
    if (ok) {
      this.#nextRetryMs = this.#retryBaseMs();
      this.#schedule(this.#now() + this.#intervalMs);
    } else {
      this.#schedule(this.#now() + this.#nextRetryMs);
      this.#nextRetryMs = Math.min(this.#nextRetryMs * 2, this.#intervalMs);
    }
  }

  stop(): void {
    this.#stopped = true;
    this.#cancelTimer();
    this.#abort.abort();
  }

  #retryBaseMs(): number {
    return Math.min(this.#deps.retryAfterMs ?? 60_000, this.#intervalMs);
  }

  /** One round: status JSON, interim list, latency tests, ranking, persistence. Returns whether it ranked. */
  async #rank(): Promise<boolean> {
    const { pool } = this.#deps;
    const mirrorsAuto = this.#config.mirrors_auto;
    const signal = this.#abort.signal;
    const doFetch = this.#deps.fetch ?? fetch;
    const learntBefore = pool.snapshot();
    // The status JSON's schemas and the latency tests are loaded by the first round, after the listener
    // answers: a proxy with predefined mirrors or a fresh persisted ranking never needs them.
    const [{ fetchMirrorStatus, filterMirrors }, { rankMirrorsByLatency }] = await Promise.all([
      import("./mirror_status.ts"),
      import("./latency_test.ts"),
    ]);
    let entries;
    try {
      entries = await fetchMirrorStatus(mirrorsAuto, {
        fetch: doFetch,
        signal,
        timeoutMs: this.#deps.statusTimeoutMs,
        log: this.#log,
      });
    } catch (error) {
      if (!this.#stopped) {
        this.#log.warn(`${(error as Error).message} Keeping the ${pool.size} mirrors from ${pool.source}.`);
      }
      return false;
    }
    if (this.#stopped) return false;

    const bestScored = filterMirrors(entries, mirrorsAuto, { random: this.#deps.random });
    if (bestScored.length > 0 && FALLBACK_SOURCES.has(pool.source)) {
      pool.setMirrors(bestScored.slice(0, mirrorsAuto.num_mirrors).map((e) => e.url), "status json");
    }
    this.#log.info(`Testing the latency of ${bestScored.length} mirrors in the background.`);
    const passed: LatencyResult[] = [];
    const { results, relaxations } = await rankMirrorsByLatency(entries, mirrorsAuto, {
      // Each mirror that passes is used at once, ahead of the untested ones: requests move on to it.
      onResult: (result) => {
        if (this.#stopped) return;
        passed.push(result);
        const ranked = rankByCombinedScore(passed, learntBefore).slice(0, mirrorsAuto.num_mirrors);
        const best = ranked.map((r) => r.url);
        const untested = pool.snapshot().map((m) => m.url).filter((url) => !best.includes(url));
        pool.setMirrors([...best, ...untested], "first latency results");
      },
      fetch: doFetch,
      now: this.#deps.latencyClock,
      concurrency: this.#deps.latencyConcurrency,
      random: this.#deps.random,
      signal,
      log: this.#log,
    });
    if (this.#stopped) return false;
    if (results.length === 0) {
      const keep = !FALLBACK_SOURCES.has(pool.source) && pool.source !== "status json";
      this.#log.warn(
        "No mirror passed the latency test, even with relaxed settings. Check the network connection and the " +
          `[mirrors_auto] settings (allowed_countries, max_score, timeout); ` +
          (keep ? `keeping the mirrors from ${pool.source}.` : "using the fallback mirrors."),
      );
      if (!keep) setFallback(this.#config, pool, this.#log);
      return false;
    }

    const learnt = new Map(learntBefore.map((s) => [s.url, s]));
    for (const s of pool.snapshot()) learnt.set(s.url, s);
    const ranked = rankByCombinedScore(results, [...learnt.values()]).slice(0, mirrorsAuto.num_mirrors);
    pool.setMirrors(ranked.map((r) => r.url), "latency test");
    for (const r of ranked) pool.recordLatency(r.url, r.latencyMs);
    this.#log.info(
      `${results.length} mirrors passed the latency test` +
        (relaxations > 0 ? ` after relaxing the settings ${relaxations} times` : "") +
        `; using the best ${ranked.length}.`,
    );
    await this.#persist(ranked);
    return true;
  }

  async #persist(ranked: RankedMirror[]): Promise<void> {
    try {
      await writeMirrorList(this.#config.mirrorlist_fallback_file, ranked.map((r) => r.url));
    } catch (error) {
      this.#log.warn(
        `${(error as Error).message} Without it, a start without the status JSON uses fewer mirrors.`,
      );
    }
    const path = this.#config.mirrorlist_latency_test_results_file;
    if (path === "") return;
    const mirrors = ranked.map(({ url, latencyMs, countryCode, score }) => ({
      url,
      latencyMs,
      countryCode,
      score,
    }));
    try {
      await writeRanking(path, {
        timestamp: new Date(this.#now()).toISOString(),
        settings: settingsFingerprint(this.#config),
        mirrors,
      });
    } catch (error) {
      this.#log.warn(`${(error as Error).message} The ranking will be made again at the next start.`);
    }
  }

  #schedule(dueAt: number): void {
    this.#cancelTimer();
    if (this.#stopped) return;
    const delay = Math.max(0, dueAt - this.#now());
    const setTimer = this.#deps.setTimer ?? defaultSetTimer;
    this.#timer = setTimer(() => {
      this.#timer = undefined;
      if (delay > MAX_TIMER_MS && dueAt > this.#now()) {
        this.#schedule(dueAt);
      } else {
        void this.refresh();
      }
    }, Math.min(delay, MAX_TIMER_MS));
  }

  #cancelTimer(): void {
    if (this.#timer === undefined) return;
    (this.#deps.clearTimer ?? defaultClearTimer)(this.#timer);
    this.#timer = undefined;
  }
}

function defaultSetTimer(callback: () => void, ms: number): unknown {
  const id = setTimeout(callback, ms);
  Deno.unrefTimer(id);
  return id;
}

function defaultClearTimer(timer: unknown): void {
  clearTimeout(timer as number);
}
