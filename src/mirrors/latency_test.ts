/**
 * Latency tests: how long each candidate mirror takes to answer a tiny request for `core/os/x86_64/core.db`.
 *
 * Unlike flexo, which tests one mirror after the other, the tests run concurrently with a bound, each with its
 * own timeout, so that the ranking is ready in seconds even for hundreds of candidates.
 *
 * @module
 */

import { USER_AGENT } from "../version.ts";
import type { MirrorsAutoConfig } from "../config/config_schema.ts";
import { filterMirrors, type MirrorStatusEntry } from "./mirror_status.ts";

/** A mirror to test. */
export interface LatencyCandidate {
  /** Base URL ending with "/". */
  url: string;
  /** Two-letter country code from the status JSON, "" if unknown. */
  country_code?: string;
  /** Score from the status JSON, if known. */
  score?: number | null;
}

/** A mirror that passed the latency test. */
export interface LatencyResult {
  /** Base URL ending with "/". */
  url: string;
  /** Milliseconds from sending the request to receiving the response headers. */
  latencyMs: number;
  /** Two-letter country code, "" if unknown. */
  countryCode: string;
  /** Score from the status JSON, null if unknown. */
  score: number | null;
}

/** Options for {@linkcode runLatencyTests}. */
export interface LatencyTestOptions {
  /** Time allowed for each test, until the response headers arrive. */
  timeoutMs: number;
  /**
   * How many tests run at the same time. Default {@linkcode LATENCY_TEST_CONCURRENCY}: a silent mirror holds
   * its place for the whole timeout, so that many silent mirrors at the top of the list do not delay the tests
   * of the others (each test is one tiny request).
   */
  concurrency?: number;
  /** Called with each mirror that passed, as soon as it passed (so that it can be used before the others end). */
  onResult?: (result: LatencyResult) => void;
  /** The fetch implementation. Default the global `fetch`. */
  fetch?: typeof fetch;
  /** A monotonic clock in milliseconds. Default `performance.now`. */
  now?: () => number;
  /** Keep only this many of the fastest mirrors. Default: all that passed. */
  limit?: number;
  /** "GET" sends `Range: bytes=0-0` (default); "HEAD" asks for the headers only, as flexo does. */
  method?: "GET" | "HEAD";
  /** Aborts the remaining tests. */
  signal?: AbortSignal;
  /** Receives one debug line per failed test. */
  log?: { debug?(msg: string): void };
}

/** How many latency tests run at the same time by default. */
export const LATENCY_TEST_CONCURRENCY = 64;

/** The file requested from each mirror: present on every Arch Linux mirror and small to answer. */
export const LATENCY_TEST_PATH = "core/os/x86_64/core.db";

/**
 * Measures one mirror: the time until the response headers of a request for {@linkcode LATENCY_TEST_PATH}.
 *
 * @returns The latency in milliseconds.
 * @throws {Error} when the request fails, times out, answers with a non-2xx status, or the mirror is served by
 * Cloudflare (its cache makes the latency meaningless, as flexo notes).
 */
export async function measureLatency(
  mirrorUrl: string,
  options: Omit<LatencyTestOptions, "concurrency" | "limit">,
): Promise<number> {
  const doFetch = options.fetch ?? fetch;
  const now = options.now ?? (() => performance.now());
  const base = mirrorUrl.endsWith("/") ? mirrorUrl : `${mirrorUrl}/`;
  const method = options.method ?? "GET";
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), options.timeoutMs);
  const onAbort = () => controller.abort();
  options.signal?.addEventListener("abort", onAbort);
  if (options.signal?.aborted) controller.abort();
  const started = now();
  try {
    const response = await doFetch(base + LATENCY_TEST_PATH, {
      method,
      headers: method === "GET"
        ? { range: "bytes=0-0", "user-agent": USER_AGENT }
        : { "user-agent": USER_AGENT },
      signal: controller.signal,
    });
    const latencyMs = now() - started;
    await response.body?.cancel().catch(() => {});
    if (!response.ok) throw new Error(`the mirror answered ${response.status} ${response.statusText}`);
    if ((response.headers.get("server") ?? "").toLowerCase() === "cloudflare") {
      throw new Error("the mirror is behind Cloudflare, whose cache makes its latency meaningless");
    }
    return latencyMs;
  } catch (error) {
    if (controller.signal.aborted && !options.signal?.aborted) {
      throw new Error(`no response headers within ${options.timeoutMs} ms`);
    }
    throw error;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * Tests all candidates, at most `concurrency` at a time.
 *
 * @returns The mirrors that answered in time, fastest first (at most `limit`); failures are left out.
 */
export async function runLatencyTests(
  candidates: readonly LatencyCandidate[],
  options: LatencyTestOptions,
): Promise<LatencyResult[]> {
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? LATENCY_TEST_CONCURRENCY));
  const results: LatencyResult[] = [];
  let next = 0;
  const worker = async () => {
    while (next < candidates.length && !options.signal?.aborted) {
      const candidate = candidates[next++];
      try {
        const latencyMs = await measureLatency(candidate.url, options);
        const result = {
          url: candidate.url.endsWith("/") ? candidate.url : `${candidate.url}/`,
          latencyMs,
          countryCode: candidate.country_code ?? "",
          score: candidate.score ?? null,
        };
        results.push(result);
        options.onResult?.(result);
      } catch (error) {
        options.log?.debug?.(`Latency test of ${candidate.url} failed: ${(error as Error).message}`);
      }
    }
  };
  const workers = Array.from({ length: Math.min(concurrency, candidates.length) }, worker);
  await Promise.all(workers);
  results.sort((a, b) => a.latencyMs - b.latencyMs);
  return options.limit === undefined ? results : results.slice(0, options.limit);
}

/**
 * `[mirrors_auto]` loosened the way flexo does when no mirror passed: `max_score` + 3 and `timeout` + 100 ms.
 */
export function relaxMirrorsAuto(mirrorsAuto: MirrorsAutoConfig): MirrorsAutoConfig {
  return { ...mirrorsAuto, max_score: mirrorsAuto.max_score + 3, timeout: mirrorsAuto.timeout + 100 };
}

/** Options for {@linkcode rankMirrorsByLatency}. */
export interface RankMirrorsOptions extends Omit<LatencyTestOptions, "timeoutMs" | "limit"> {
  /** How many times the settings are relaxed when no mirror passed. Default 3. */
  maxRelaxations?: number;
  /** Random numbers for `mirrors_random_or_sort = "random"`. */
  random?: () => number;
  /** Receives a warning each time the settings are relaxed. */
  log?: { debug?(msg: string): void; warn?(msg: string): void };
}

/**
 * Filters the status entries and latency-tests all that qualify; when none passes, relaxes the settings
 * ({@linkcode relaxMirrorsAuto}) and tries again, up to `maxRelaxations` times.
 *
 * @returns All mirrors that passed, fastest first (empty when even the relaxed settings found none), and how
 * many relaxations were needed.
 */
export async function rankMirrorsByLatency(
  entries: readonly MirrorStatusEntry[],
  mirrorsAuto: MirrorsAutoConfig,
  options: RankMirrorsOptions = {},
): Promise<{ results: LatencyResult[]; relaxations: number }> {
  const maxRelaxations = options.maxRelaxations ?? 3;
  let settings = mirrorsAuto;
  for (let relaxations = 0; relaxations <= maxRelaxations; relaxations++) {
    if (relaxations > 0) {
      settings = relaxMirrorsAuto(settings);
      options.log?.warn?.(
        `No mirror passed the latency test; the [mirrors_auto] settings may be too strict. Trying again with ` +
          `max_score = ${settings.max_score} and timeout = ${settings.timeout} ms.`,
      );
    }
    if (options.signal?.aborted) break;
    const candidates = filterMirrors(entries, settings, { random: options.random });
    const results = await runLatencyTests(candidates, { ...options, timeoutMs: settings.timeout });
    if (results.length > 0) return { results, relaxations };
  }
  return { results: [], relaxations: maxRelaxations };
}
