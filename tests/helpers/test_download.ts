/**
 * A started {@linkcode Download} for unit tests: the store, fetch and mirrors given, limits generous enough never to
 * end a test's transfer, and the order rules flexo's defaults unless a test changes one.
 */
import type { CacheStore } from "../../src/cache/cache_store.ts";
import { Download, type DownloadOptions, type OrderRules } from "../../src/download/download.ts";
import { MirrorPool } from "../../src/mirrors/mirrors.ts";
import type { TransferLimits } from "../../src/download/transfer.ts";
import type { FakeTimers } from "./fake_timers.ts";

/** What tests vary in {@linkcode startTestDownload}. */
export interface TestDownloadOptions {
  segments: readonly string[];
  /** The mirrors, asked in this order. */
  mirrors: string[];
  /** Changes to the order rules (default: resume across mirrors, keep no partial file on failure). */
  rules?: Partial<OrderRules>;
  expect?: DownloadOptions["expect"];
  ifModifiedSince?: number;
  missing?: boolean;
  /** A fake clock and timers the test moves (default: the system's). */
  clock?: FakeTimers;
  /** Changes to the transfer limits. */
  limits?: Partial<TransferLimits>;
  /** The mirror pool, to look at what it recorded (its mirrors are set to `mirrors`); a new one by default. */
  pool?: MirrorPool;
}

/** Starts a download of `options.segments` into `store` through `fetch`. */
export function startTestDownload(
  store: CacheStore,
  fetch: typeof globalThis.fetch,
  options: TestDownloadOptions,
): Download {
  const pool = options.pool ?? new MirrorPool();
  pool.setMirrors(options.mirrors, "test");
  return new Download({
    segments: options.segments,
    upstreamPath: options.segments.join("/"),
    mirrors: pool,
    plan: () => pool.plan("package"),
    store,
    deps: options.clock
      ? { fetch, now: options.clock.now, timers: options.clock.deps }
      : { fetch, now: Date.now },
    limits: {
      connectTimeoutMs: 5_000,
      lowSpeedLimit: 1,
      lowSpeedTimeMs: 60_000,
      lastResortStallMs: 60_000,
      ...options.limits,
    },
    rules: {
      resumeAcrossMirrors: true,
      notFoundIsFinal: false,
      keepPartialOnFailure: false,
      movesOn: true,
      ...options.rules,
    },
    expect: options.expect,
    ifModifiedSince: options.ifModifiedSince,
    missing: options.missing,
  }).start();
}
