/**
 * Test doubles for choosing mirrors: entries of the mirror status JSON, `[mirrors_auto]` settings, local
 * mirrors that answer the latency test (fake mirrors, so they can be slow or broken), and an address that
 * refuses connections.
 *
 * @module
 */

import { dirname, join } from "node:path";
import type { MirrorsAutoConfig } from "../../src/config/config_schema.ts";
import { LATENCY_TEST_PATH } from "../../src/mirrors/latency_test.ts";
import type { MirrorStatusEntry } from "../../src/mirrors/mirror_status.ts";
import { type FakeMirror, type FaultOptions, startFakeMirror } from "./fake_mirror.ts";

/** A status JSON entry of an active, complete, up-to-date http mirror in Germany; `overrides` change fields. */
export function statusEntry(
  url: string,
  score: number,
  overrides: Partial<MirrorStatusEntry> = {},
): MirrorStatusEntry {
  return {
    url,
    protocol: "http",
    country_code: "DE",
    score,
    completion_pct: 1,
    delay: 600,
    last_sync: "2024-05-14T09:00:00Z",
    ipv4: true,
    ipv6: false,
    active: true,
    duration_avg: 0.3,
    ...overrides,
  };
}

/**
 * `[mirrors_auto]` settings as flexo's defaults have them (IPv4, score up to 2.5, complete and synced within
 * an hour), but with 8 mirrors, a 1 s timeout and a status endpoint on the loopback; `overrides` change them.
 */
export function mirrorsAutoSettings(overrides: Partial<MirrorsAutoConfig> = {}): MirrorsAutoConfig {
  return {
    mirrors_status_json_endpoint: "http://127.0.0.1:9/",
    mirrors_status_json_endpoint_fallbacks: [],
    mirrors_blacklist: [],
    https_required: false,
    ipv4: true,
    ipv6: false,
    max_score: 2.5,
    num_mirrors: 8,
    mirrors_random_or_sort: "sort",
    timeout: 1000,
    allowed_countries: [],
    min_completion_pct: 0.9,
    max_delay_secs: 3600,
    ...overrides,
  };
}

/** A loopback URL (with `path`) where nothing listens: connections to it are refused. */
export function refusingUrl(path = "/mirrors/status/json/"): string {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return `http://127.0.0.1:${port}${path}`;
}

/** Fake mirrors that serve the latency test file from one shared directory. */
export interface LatencyMirrors {
  /** Starts one more mirror with these faults (e.g. `{ delayMs: 80 }` or `{ status: 404 }`). */
  start(faults?: FaultOptions): Promise<FakeMirror>;
  /** Closes every mirror started and removes the directory. */
  close(): Promise<void>;
  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** A group of fake mirrors that answer the latency test's request for `core/os/x86_64/core.db`. */
export async function latencyMirrors(): Promise<LatencyMirrors> {
  const dir = await Deno.makeTempDir({ prefix: "flexo-latency-mirrors-" });
  const file = join(dir, LATENCY_TEST_PATH);
  await Deno.mkdir(dirname(file), { recursive: true });
  await Deno.writeTextFile(file, "x");
  const started: FakeMirror[] = [];
  const close = async () => {
    await Promise.all(started.map((mirror) => mirror.close()));
    await Deno.remove(dir, { recursive: true });
  };
  return {
    async start(faults = {}) {
      const mirror = await startFakeMirror(dir, faults);
      started.push(mirror);
      return mirror;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
