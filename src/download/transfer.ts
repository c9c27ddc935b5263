/**
 * One job: one request to one mirror, with the time limits that make failover possible. The download decides
 * what to do with the outcome; this module only asks and watches.
 *
 * @module
 */

import { takeDirectBody } from "../http/direct_body.ts";
import { withUserAgent } from "../version.ts";
/** The I/O a transfer needs, passed in so that tests can use fakes. */
export interface TransferDeps {
  /** The HTTP client (web-standard fetch). */
  fetch: typeof fetch;
  /** Clock in milliseconds. */
  now: () => number;
  /**
   * Timers for the connect timeout, the watchdog and pacing of a body, and hedged requests
   * (`src/download/hedge.ts`); the system's when absent.
   */
  timers?: Timers;
}

/** One-shot timers, injected so that tests move time themselves (`tests/helpers/fake_timers.ts`). */
export interface Timers {
  /** Starts a timer that calls `callback` after `ms` milliseconds; returns its handle. */
  setTimer: (callback: () => void, ms: number) => unknown;
  /** Cancels a timer started by `setTimer`. */
  clearTimer: (timer: unknown) => void;
}

/** The system's timers. */
export const SYSTEM_TIMERS: Timers = {
  setTimer: (callback, ms) => setTimeout(callback, ms),
  clearTimer: (timer) => clearTimeout(timer as number),
};

/** Limits for one transfer, from the configuration. */
export interface TransferLimits {
  /** Milliseconds to wait for the connection and the response headers. */
  connectTimeoutMs: number;
  /** Bytes per second below which a transfer counts as slow. */
  lowSpeedLimit: number;
  /** Milliseconds a transfer may stay slow before it is abandoned for another mirror. */
  lowSpeedTimeMs: number;
  /** Milliseconds without a single byte after which even the last mirror is abandoned. */
  lastResortStallMs: number;
  /** Bytes per second cap, if any. */
  maxSpeedLimit?: number;
}

/** What a mirror answered. */
export type MirrorAnswer =
  | { type: "response"; response: Response; ttfbMs: number }
  | { type: "not_found"; status: number }
  | { type: "not_modified" }
  /** 416: the requested range is outside the file; `contentRange` is the mirror's `bytes *\/SIZE`, if sent. */
  | { type: "unsatisfiable"; contentRange: string | null }
  /**
   * No usable answer: `timeout` when none came in time, `answered` when the mirror sent an HTTP status (5xx, ...)
   * rather than no answer at all (refused, DNS, TLS, reset, timeout); `loop` when it answered 508 Loop Detected
   * (the request came back to a node it had passed: tiers or mirrors pointing at each other).
   */
  | { type: "failed"; message: string; timeout: boolean; answered: boolean; loop?: true };

/** Sends one request to a mirror and waits, at most `connectTimeoutMs`, for its headers. */
export async function askMirror(
  url: string,
  init: { method: "GET" | "HEAD"; headers: Headers; abort: AbortController },
  options: { deps: TransferDeps; limits: TransferLimits },
): Promise<MirrorAnswer> {
  const started = options.deps.now();
  let timedOut = false;
  const timers = options.deps.timers ?? SYSTEM_TIMERS;
  let timer: unknown;
  // The bytes exactly as stored: fetch would otherwise ask for gzip/br and decompress, while the mirror's
  // Content-Length (forwarded, or checked against) counts the compressed bytes.
  if (!init.headers.has("accept-encoding")) init.headers.set("accept-encoding", "identity");
  try {
    const fetching = options.deps.fetch(url, {
      method: init.method,
      headers: withUserAgent(init.headers),
      signal: init.abort.signal,
      redirect: "follow",
    });
    // Set once the request is on its way (flexo's client writes it on a kept connection before fetch
    // returns), not before it: a timer cost a cold miss 30-50 us, and no timer fires before this turn ends.
    timer = timers.setTimer(() => {
      timedOut = true;
      init.abort.abort(new Error("timeout"));
    }, options.limits.connectTimeoutMs);
    const response = await fetching;
    const ttfbMs = options.deps.now() - started;
    if (response.status === 304) {
      await response.body?.cancel();
      return { type: "not_modified" };
    }
    if (response.status === 404 || response.status === 410) {
      await response.body?.cancel();
      return { type: "not_found", status: response.status };
    }
    if (response.status === 416) {
      await response.body?.cancel();
      return { type: "unsatisfiable", contentRange: response.headers.get("content-range") };
    }
    if (response.status !== 200 && response.status !== 206) {
      await response.body?.cancel();
      const message = `answered HTTP ${response.status}`;
      const failed = { type: "failed", message, timeout: false, answered: true } as const;
      return response.status === 508 ? { ...failed, loop: true } : failed;
    }
    const encoding = response.headers.get("content-encoding");
    if (encoding !== null && !isIdentityEncoding(encoding)) {
      await response.body?.cancel();
      return {
        type: "failed",
        message:
          `sent the file with Content-Encoding: ${encoding}, which flexo did not ask for (it asks for ` +
          "identity); its bytes and length are not the file's",
        timeout: false,
        answered: true,
      };
    }
    return { type: "response", response, ttfbMs };
  } catch (error) {
    if (timedOut) {
      return {
        type: "failed",
        message: `no response within ${options.limits.connectTimeoutMs} ms (connect_timeout)`,
        timeout: true,
        answered: false,
      };
    }
    return { type: "failed", message: describeFetchError(error), timeout: false, answered: false };
  } finally {
    timers.clearTimer(timer);
  }
}

/**
 * Whether a `Content-Encoding` value leaves the bytes as they are: no coding at all. An empty value (a mirror's
 * `Content-Encoding:` with nothing after it) and `identity` name none (RFC 9110 section 8.4: the codings are a
 * list, empty elements are ignored, and `identity` is reserved for "no encoding"); any other coding, known or
 * not, changes the bytes and their length.
 */
function isIdentityEncoding(value: string): boolean {
  return value.split(",").every((coding) => {
    const name = coding.trim().toLowerCase();
    return name === "" || name === "identity";
  });
}

/** Size of the buffer a body is read into (at most; see {@linkcode pumpBufferBytes}). */
export const PUMP_BUFFER_BYTES = 256 * 1024;

/** The smallest buffer a body is read into. */
export const PUMP_BUFFER_MIN_BYTES = 16 * 1024;

/**
 * The size of the buffer for a body of `expected` bytes (unknown: undefined): no larger than the body, so that
 * a small package does not cost a zeroed 256 KiB allocation (a fresh mapping and its release) on the way to
 * its first byte; one more byte than announced still fits, so that a body longer than announced is seen.
 */
export function pumpBufferBytes(expected: number | undefined): number {
  if (expected === undefined) return PUMP_BUFFER_BYTES;
  return Math.max(PUMP_BUFFER_MIN_BYTES, Math.min(PUMP_BUFFER_BYTES, expected + 1));
}

/** How `pumpBody()` lets a faster mirror overtake its transfer (see its `overtakable` option). */
export type Overtakable = (
  endAsSlow: (message: string) => void,
  sinkWaitMs: () => number,
  received: () => number,
) => void;

/** Why a body transfer ended. */
export type BodyOutcome =
  | { type: "ended"; bytes: number }
  | { type: "slow"; bytes: number; message: string }
  | { type: "error"; bytes: number; message: string }
  | { type: "sink_error"; bytes: number; error: unknown };

/**
 * Reads a response body chunk by chunk into `sink`, aborting when it is too slow for `lowSpeedTimeMs` (only while
 * `canSwitch()` says another mirror is left) or stalls for `lastResortStallMs`, and pacing it to `maxSpeedLimit`.
 */
export async function pumpBody(
  body: ReadableStream<Uint8Array>,
  sink: (chunk: Uint8Array) => Promise<void> | void,
  options: {
    deps: TransferDeps;
    limits: TransferLimits;
    abort: AbortController;
    canSwitch: () => boolean;
    /** The body's announced length, if any: the read buffer is no larger (see {@linkcode pumpBufferBytes}). */
    expectedBytes?: number;
    /**
     * Given the function that ends the transfer from outside as "slow" with a message, the milliseconds the
     * transfer has waited on `sink` so far (a slow disk, not the mirror), and the bytes the mirror delivered so
     * far (those the sink drops included): a faster mirror overtakes it (`overtake.ts`).
     */
    overtakable?: Overtakable;
  },
): Promise<BodyOutcome> {
  const { deps, limits } = options;
  const start = deps.now();
  let bytes = 0;
  let verdict: { type: "slow"; message: string } | undefined;
  // Samples of (time, bytes) to measure speed over the last lowSpeedTimeMs.
  const samples: { t: number; bytes: number }[] = [{ t: start, bytes: 0 }];
  let lastProgressAt = start;
  // Time spent waiting for the sink to take a chunk (a write behind a slow disk): the mirror is not the limit then.
  let sinkWaitMs = 0;
  let sinkWaitingSince: number | undefined;
  const tick = Math.max(20, Math.min(1000, limits.lowSpeedTimeMs / 4));
  const timers = deps.timers ?? SYSTEM_TIMERS;
  let watchdog: unknown;
  const watch = () => {
    watchdog = timers.setTimer(() => {
      look();
      if (!verdict) watch();
    }, tick);
  };
  const look = () => {
    const now = deps.now();
    samples.push({ t: now, bytes });
    while (samples.length > 2 && now - samples[1].t >= limits.lowSpeedTimeMs) samples.shift();
    const oldest = samples[0];
    const window = now - oldest.t;
    if (now - lastProgressAt >= limits.lastResortStallMs) {
      verdict = { type: "slow", message: `no data for ${Math.round((now - lastProgressAt) / 1000)} s` };
    } else if (window >= limits.lowSpeedTimeMs && options.canSwitch()) {
      const rate = ((bytes - oldest.bytes) * 1000) / window;
      if (rate < limits.lowSpeedLimit) {
        verdict = {
          type: "slow",
          message: `${Math.round(rate)} B/s over ${Math.round(window / 1000)} s is below low_speed_limit ` +
            `(${limits.lowSpeedLimit} B/s)`,
        };
      }
    }
    if (verdict) options.abort.abort(new Error(verdict.message));
  };
  watch();
  options.overtakable?.(
    (message) => {
      if (verdict) return;
      verdict = { type: "slow", message };
      options.abort.abort(new Error(message));
    },
    () => sinkWaitMs + (sinkWaitingSince === undefined ? 0 : deps.now() - sinkWaitingSince),
    () => bytes,
  );
  // Upstream bodies are byte streams: reading them into one reused buffer keeps a large download from leaving
  // tens of megabytes of spent chunks for the garbage collector (the sink is done with a chunk before the next
  // read). The upstream client's bodies are read without their stream (see direct_body.ts); any other stream
  // is read chunk by chunk.
  const direct = takeDirectBody(body);
  let byob: ReadableStreamBYOBReader | undefined;
  if (direct === undefined) {
    try {
      byob = body.getReader({ mode: "byob" });
    } catch {
      byob = undefined;
    }
  }
  const reader = direct ?? byob ?? body.getReader();
  let buffer = new ArrayBuffer(pumpBufferBytes(options.expectedBytes));
  const whole = new Uint8Array(buffer);
  const read = async (): Promise<ReadableStreamReadResult<Uint8Array>> => {
    if (direct !== undefined) {
      const count = await direct.readInto(whole);
      return count === null
        ? { done: true, value: undefined }
        : { done: false, value: whole.subarray(0, count) };
    }
    if (!byob) return await (reader as ReadableStreamDefaultReader<Uint8Array>).read();
    const result = await byob.read(new Uint8Array(buffer));
    if (result.value) buffer = result.value.buffer as ArrayBuffer;
    return result as ReadableStreamReadResult<Uint8Array>;
  };
  try {
    while (true) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await read();
      } catch (error) {
        if (verdict) return { ...verdict, bytes };
        return { type: "error", bytes, message: describeFetchError(error) };
      }
      if (result.done) return { type: "ended", bytes };
      const chunk = result.value;
      try {
        // A sink that took the chunk at once returns nothing: no promise to wait for per chunk.
        const taking = sink(chunk);
        if (taking) {
          sinkWaitingSince = deps.now();
          await taking;
        }
      } catch (error) {
        return { type: "sink_error", bytes, error };
      } finally {
        if (sinkWaitingSince !== undefined) sinkWaitMs += deps.now() - sinkWaitingSince;
        sinkWaitingSince = undefined;
      }
      bytes += chunk.byteLength;
      lastProgressAt = deps.now();
      if (limits.maxSpeedLimit) {
        const ahead = (bytes * 1000) / limits.maxSpeedLimit - (deps.now() - start);
        const signal = options.abort.signal;
        if (ahead > 0) await pause(ahead, signal, timers);
        // Given up during the pause (too slow, or nobody waits any more): ended now, not at the next read.
        if (signal.aborted) {
          return verdict
            ? { ...verdict, bytes }
            : { type: "error", bytes, message: describeFetchError(signal.reason) };
        }
      }
    }
  } finally {
    timers.clearTimer(watchdog);
    if (direct !== undefined) direct.cancel();
    else (reader as ReadableStreamDefaultReader<Uint8Array>).cancel().catch(() => {});
  }
}

/**
 * Waits `ms` on `timers`, or less when `signal` aborts first (a low max_speed_limit pauses for minutes: a
 * transfer given up must not hold its connection until then). The timer is cleared either way.
 */
function pause(ms: number, signal: AbortSignal, timers: Timers): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      timers.clearTimer(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = timers.setTimer(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Parses `Content-Range: bytes a-b/total` into its numbers; total is undefined for `*`. */
export function parseContentRange(
  header: string | null,
): { start: number; end: number; total?: number } | undefined {
  const match = header?.match(/^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i);
  if (!match) return undefined;
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (end < start) return undefined;
  return { start, end, total: match[3] === "*" ? undefined : Number(match[3]) };
}

function describeFetchError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
  // Deno repeats the URL in its message ("error sending request for url (...): client error (Connect): ...", or
  // in newer versions "error sending request from ADDR for URL (ADDR): client error (SendRequest): ...");
  // the log line names the mirror and path already.
  return `${error.message}${cause}`.replace(
    /error sending request (?:from \S+ )?for (?:url \([^)]*\)|\S+ \([^)]*\)): /,
    "",
  ).replace(
    /^fetch failed: /i,
    "",
  );
}
