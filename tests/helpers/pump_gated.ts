/**
 * pumpBody() over a body the test writes through a gate, on a fake clock the test moves (tests of
 * src/download/transfer.ts).
 *
 * @module
 */

import { gatedMirror } from "./fake_fetch.ts";
import { FakeTimers } from "./fake_timers.ts";
import { pumpBody, type TransferLimits } from "../../src/download/transfer.ts";

const URL_A = "http://mirror-a.test/core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst";

/** The bytes of `parts`, one after the other. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.byteLength;
  }
  return all;
}

/** Lets the pump take what is queued for it (one turn of the event loop, no real time). */
export const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

/**
 * Starts pumpBody over a body the test writes through `gate`, on a fake clock the test moves: `send()` writes
 * bytes and resolves once the sink has them all.
 */
export async function pumpGated(limits: TransferLimits, canSwitch: boolean) {
  const { fetch, gate } = gatedMirror({});
  const abort = new AbortController();
  const response = await fetch(URL_A, { signal: abort.signal });
  const timers = new FakeTimers();
  const parts: Uint8Array[] = [];
  let received = 0;
  let waiting: { bytes: number; done: () => void } | undefined;
  const outcome = pumpBody(response.body!, (chunk) => {
    parts.push(chunk.slice());
    received += chunk.byteLength;
    if (waiting && received >= waiting.bytes) waiting.done();
    return Promise.resolve();
  }, {
    deps: { fetch, now: timers.now, timers: timers.deps },
    limits,
    abort,
    canSwitch: () => canSwitch,
  });
  /** Resolves once the sink has `bytes` in all. */
  const receivedUpTo = (bytes: number) =>
    new Promise<void>((done) => received >= bytes ? done() : waiting = { bytes, done });
  return {
    gate,
    abort,
    timers,
    outcome,
    received: () => received,
    bytes: () => concatBytes(parts),
    receivedUpTo,
    /** Writes `bytes` and resolves once the pump has counted them (the sink has them, and a turn passed). */
    send: async (bytes: Uint8Array) => {
      gate.push(bytes);
      await receivedUpTo(received + bytes.byteLength);
      await turn();
    },
  };
}
