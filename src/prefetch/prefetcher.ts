/**
 * Prefetch as a service of the running proxy: runs a pass every `interval` when enabled, or when asked
 * (`flexo prefetch`, POST /prefetch), one pass at a time, and keeps the counters for `/status` and `/metrics`.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { PrefetchConfig } from "../config/config_schema.ts";
import { parseDuration } from "../config/units.ts";
import { describeError } from "../describe_error.ts";
import { HttpError } from "../http/http_error.ts";
import { type PrefetchDeps, type PrefetchReport, runPrefetch } from "./prefetch_run.ts";

const log = getLogger(["flexo", "prefetch"]);

/** The least time between a start and a run that was due while flexo was not running. */
export const PREFETCH_START_DELAY_MS = 60_000;

/** Timers a {@linkcode Prefetcher} schedules runs with; tests pass fake ones. */
export interface PrefetchTimers {
  setTimer?: (callback: () => void, ms: number) => unknown;
  clearTimer?: (timer: unknown) => void;
}

/** What prefetch did since the proxy started, for the status page and metrics. */
export interface PrefetchStatus {
  enabled: boolean;
  running: boolean;
  runs: number;
  /** Files downloaded by runs (packages and signatures). */
  files: number;
  /** Bytes downloaded by runs. */
  bytes: number;
  /** When the last run ended (ms), if any. */
  lastRunAt?: number;
  /** Files the last run fetched, as cache paths. */
  lastFetched: string[];
  /** When the next scheduled run starts (ms), if one is scheduled (none while a scheduled run runs). */
  nextRunAt?: number;
  /** The last run that failed as a whole (an error, not a file that failed), if any: when and why. */
  lastError?: { at: number; message: string };
}

/** Runs prefetch passes, on a schedule and on request. */
export class Prefetcher {
  #deps: PrefetchDeps;
  #config: PrefetchConfig;
  #setTimer: (callback: () => void, ms: number) => unknown;
  #clearTimer: (timer: unknown) => void;
  #timer: unknown;
  /** Between start() (when enabled) and stop(): a run ending schedules the next. */
  #scheduled = false;
  #running: Promise<PrefetchReport> | undefined;
  /** Aborts the running pass (see stop()). */
  #abort: AbortController | undefined;
  /** Between stop() and the next start(): no pass starts (the proxy is stopping). */
  #stopped = false;
  #status: PrefetchStatus;

  /** @param deps What a run needs. @param config The `[prefetch]` table. */
  constructor(deps: PrefetchDeps, config: PrefetchConfig, timers: PrefetchTimers = {}) {
    this.#deps = deps;
    this.#config = config;
    this.#setTimer = timers.setTimer ?? setTimeout;
    this.#clearTimer = timers.clearTimer ?? ((timer) => clearTimeout(timer as number));
    this.#status = {
      enabled: config.enabled && !deps.offline,
      running: false,
      runs: 0,
      files: 0,
      bytes: 0,
      lastFetched: [],
    };
  }

  /**
   * Reads the saved usage record and schedules runs when prefetch is enabled: the first one `interval` after
   * the end of the last run the record knows of (at least {@linkcode PREFETCH_START_DELAY_MS} after the start,
   * and `interval` after it when no run is known), each next one `interval` after the end of the one before
   * (failed or not), so runs never overlap however long one takes. Under `offline = true` nothing is scheduled: a run would contact the mirrors.
   */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.prepare();
    if (!this.#config.enabled || this.#scheduled) return;
    if (this.#deps.offline) {
      log.info(
        "Prefetch is enabled, but flexo is offline (offline = true): no runs, since they contact mirrors",
      );
      return;
    }
    this.#scheduled = true;
    // Counted from the last run's end when one is known (a machine that is on for less than an interval at a
    // time must still get its runs), a run long due coming a minute after the start.
    const interval = parseDuration(this.#config.interval);
    const last = this.#deps.usage.lastRunAt();
    const due = last === undefined || last > this.#deps.now() ? interval : last + interval - this.#deps.now();
    this.#scheduleNext(Math.min(interval, Math.max(PREFETCH_START_DELAY_MS, due)));
  }

  /** Reads the saved usage record (for a run without a schedule, as `flexo prefetch` makes). */
  prepare(): Promise<void> {
    return this.#deps.usage.load();
  }

  /**
   * Cancels the next scheduled run, lets a running one start no further download (those running end on their
   * own) and refuses further runs until the next start(): a stopping proxy must not begin downloads it will cut
   * off.
   */
  stop(): void {
    this.#stopped = true;
    this.#abort?.abort();
    this.#scheduled = false;
    if (this.#timer !== undefined) this.#clearTimer(this.#timer);
    this.#timer = undefined;
    this.#status.nextRunAt = undefined;
  }

  /** The counters and times so far. */
  status(): PrefetchStatus {
    return { ...this.#status, lastFetched: [...this.#status.lastFetched] };
  }

  /**
   * Runs a pass now, after the one running if there is one (a dry run too: it then looks without downloading).
   * A dry run is not counted. A pass that throws is noted as `lastError` and rejects. Under `offline = true` it
   * rejects at once with a 503 (a run, a dry one too, revalidates databases at the mirrors).
   */
  async run(options: { dryRun?: boolean } = {}): Promise<PrefetchReport> {
    if (this.#deps.offline) {
      throw new HttpError(
        503,
        "flexo is offline (offline = true): prefetch contacts no mirror; set offline = false to prefetch",
      );
    }
    while (this.#running) await this.#running.catch(() => undefined);
    // A pass asked for while the proxy stops (POST /prefetch during the drain) would begin downloads the exit
    // then cuts off.
    if (this.#stopped) throw new HttpError(503, "flexo is stopping: no prefetch run starts now");
    if (options.dryRun) return runPrefetch(this.#deps, this.#config, { dryRun: true });
    const abort = this.#abort = new AbortController();
    const running = this.#running = runPrefetch(this.#deps, this.#config, { signal: abort.signal });
    this.#status.running = true;
    try {
      const report = await running;
      const fetched = report.files.filter((file) => file.outcome === "fetched" && file.bytes > 0);
      this.#status.runs++;
      this.#status.files += fetched.length;
      this.#status.bytes += report.bytes;
      this.#status.lastRunAt = report.finishedAt;
      this.#status.lastFetched = fetched.map((file) => file.path);
      // A run cut short by a stop is not one: after the restart, the next comes soon and resumes it.
      if (!abort.signal.aborted) this.#deps.usage.noteRun(report.finishedAt);
      return report;
    } catch (error) {
      this.#status.lastError = { at: this.#deps.now(), message: describeError(error) };
      throw error;
    } finally {
      this.#abort = undefined;
      this.#running = undefined;
      this.#status.running = false;
    }
  }

  /** Schedules the next run `delay` from now (one interval unless told). */
  #scheduleNext(delay = parseDuration(this.#config.interval)): void {
    if (this.#timer !== undefined) this.#clearTimer(this.#timer);
    this.#status.nextRunAt = this.#deps.now() + delay;
    this.#timer = this.#setTimer(() => {
      this.#timer = undefined;
      this.#status.nextRunAt = undefined;
      this.run().catch((error) => log.error("Prefetch run failed: {error}", { error: describeError(error) }))
        .finally(() => {
          if (this.#scheduled) this.#scheduleNext();
        });
    }, delay);
  }
}
