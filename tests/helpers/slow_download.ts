/**
 * A download from a trickling mirror A with a next mirror B, on a fake clock with every request gated: the
 * setting of the overtaking tests (tests/download/overtake_test.ts, overtake_probe_test.ts).
 */

import { assertEquals } from "./assert.ts";
import { type FakeRequest, gatedFetch, type GatedRequest, testBytes } from "./fake_fetch.ts";
import { FakeTimers } from "./fake_timers.ts";
import { turn } from "./pump_gated.ts";
import { waitFor } from "./wait.ts";
import { sha256 } from "./bytes.ts";
import { startTestDownload } from "./test_download.ts";
import { CacheStore } from "../../src/cache/cache_store.ts";
import type { Download, OrderRules } from "../../src/download/download.ts";
import { OVERTAKE } from "../../src/download/overtake.ts";
import type { MirrorPool } from "../../src/mirrors/mirrors.ts";

export const A = "http://mirror-a.test/";
export const B = "http://mirror-b.test/";
export const SEGMENTS = ["core", "os", "x86_64", "big-1.0-1-x86_64.pkg.tar.zst"];
export const SIZE = 2_000_000;
/** A's pace: 20 000 bytes every second of the fake clock (20 kB/s, far above low_speed_limit). */
export const TRICKLE = 20_000;

/** The answer of a mirror that honours `bytes=N-` and `bytes=N-M`; `probe` overrides B's answer to a probe. */
export function head(
  req: FakeRequest,
  probe?: (req: FakeRequest) => { status: number },
): { status: number; headers?: Record<string, string> } {
  const range = req.headers.get("range")?.match(/^bytes=(\d+)-(\d*)$/);
  if (!range) return { status: 200, headers: { "content-length": String(SIZE) } };
  if (range[2] !== "" && probe) return probe(req);
  const end = range[2] === "" ? SIZE - 1 : Number(range[2]);
  return { status: 206, headers: { "content-range": `bytes ${range[1]}-${end}/${SIZE}` } };
}

/** A download of a {@linkcode SIZE}-byte file from A then B, on a fake clock, every request gated. */
export async function slowDownload(
  dir: string,
  options: {
    rules?: Partial<OrderRules>;
    maxSpeedLimit?: number;
    probe?: (req: FakeRequest) => { status: number };
    /** Answers a request instead of {@linkcode head} (e.g. a mirror that ignores a Range). */
    answer?: (req: FakeRequest) => { status: number; headers?: Record<string, string> } | undefined;
    pool?: MirrorPool;
    clock?: FakeTimers;
  } = {},
) {
  const data = testBytes(SIZE, 41);
  const clock = options.clock ?? new FakeTimers();
  const signals: AbortSignal[] = [];
  const gated = gatedFetch((req) => options.answer?.(req) ?? head(req, options.probe));
  const fetch: typeof globalThis.fetch = (input, init) => {
    signals.push(init!.signal!);
    return gated.fetch(input, init);
  };
  const download = startTestDownload(new CacheStore(dir), fetch, {
    segments: SEGMENTS,
    mirrors: [A, B],
    rules: options.rules,
    expect: { size: SIZE, sha256: sha256(data) },
    clock,
    limits: { maxSpeedLimit: options.maxSpeedLimit },
    pool: options.pool,
  });
  await waitFor("A to be asked", () => gated.gates.length === 1);
  await download.head;
  const a = gated.gates[0];
  /**
   * Sends `bytes` more of A's body, waits until they are on disk and the transfer has taken them (a clock moved
   * before would count as time waited on the disk), then moves the clock `ms` on.
   */
  const trickle = async (bytes: number, ms = 1000) => {
    const target = download.written + bytes;
    a.push(data.slice(download.written, target));
    while (download.written < target) await download.changed();
    await turn();
    clock.advance(ms);
    await turn();
  };
  return { data, clock, download, gates: gated.gates, signals, a, trickle };
}

/**
 * Sends the rest of `gate`'s file from where `download` is, ends it, and checks what was stored; moves `paced`,
 * the clock of a transfer paced by max_speed_limit, until it has ended.
 */
export async function finishFrom(
  gate: GatedRequest,
  download: Download,
  data: Uint8Array,
  paced?: FakeTimers,
): Promise<void> {
  gate.push(data.slice(download.written));
  gate.end();
  while (paced && !download.ended) {
    paced.advance(1000);
    await turn();
  }
  await download.finished;
  assertEquals(download.outcome(), { type: "complete" });
  assertEquals(sha256(await Deno.readFile(download.finalPath)), sha256(data), "the stored file is the file");
}

export function probeRange(from: number): string {
  return `bytes=${from}-${from + OVERTAKE.probeBytes - 1}`;
}
