/**
 * pumpBody() pacing a transfer to max_speed_limit, on a fake clock.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { testBytes } from "../helpers/fake_fetch.ts";
import { pumpGated, turn } from "../helpers/pump_gated.ts";
import type { TransferLimits } from "../../src/download/transfer.ts";

const LIMITS: TransferLimits = {
  connectTimeoutMs: 2_000,
  lowSpeedLimit: 1,
  lowSpeedTimeMs: 10_000,
  lastResortStallMs: 10_000,
};

Deno.test("pumpBody() paces a transfer to max_speed_limit", async () => {
  const data = testBytes(100_000, 8);
  // 10 000 bytes at 400 000 B/s are 25 ms of the clock: the pump waits that long after each chunk.
  const p = await pumpGated({ ...LIMITS, maxSpeedLimit: 400_000 }, true);
  for (let at = 0; at < data.byteLength; at += 10_000) p.gate.push(data.slice(at, at + 10_000));
  p.gate.end();
  for (let sent = 10_000; sent <= data.byteLength; sent += 10_000) {
    await p.receivedUpTo(sent);
    await turn();
    assertEquals(p.received(), sent, "the pump waits before it reads the next chunk");
    assert(p.timers.pending.includes(25), `a 25 ms wait is pending: ${p.timers.pending}`);
    p.timers.advance(25);
  }
  assertEquals(await p.outcome, { type: "ended", bytes: data.byteLength });
  assertEquals(p.bytes(), data);
  assertEquals(p.timers.now(), 250, "100 000 bytes at 400 000 B/s took 250 ms of the clock");
});

Deno.test("pumpBody() ends a max_speed_limit pause at once when the transfer is aborted", async () => {
  // 10 000 bytes at 10 B/s: a pause of 1000 s of the clock, which the test never moves.
  const p = await pumpGated({ ...LIMITS, maxSpeedLimit: 10 }, true);
  await p.send(testBytes(10_000, 9));
  assert(p.timers.pending.includes(1_000_000), `a 1000 s wait is pending: ${p.timers.pending}`);
  p.abort.abort(new Error("the download was given up"));
  const outcome = await Promise.race([
    p.outcome,
    new Promise<"still paused">((r) => setTimeout(r, 2_000, "still paused")),
  ]);
  assert(outcome !== "still paused", "the pump still waited for its pacing timer after the abort");
  assert(outcome.type === "error", `expected error, got ${outcome.type}`);
  assertEquals(outcome.bytes, 10_000);
  assertEquals(p.timers.pending.filter((ms) => ms === 1_000_000), [], "the pacing timer is cleared");
});
