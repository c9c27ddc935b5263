/**
 * After an overtake (src/download/overtake.ts): the overtaken mirror goes back to the end of the order's plan
 * (src/download/failover.ts `FailoverPlan`), once; on a fake clock and fake upstreams.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import type { FakeRequest, GatedRequest } from "../helpers/fake_fetch.ts";
import { sha256 } from "../helpers/bytes.ts";
import { captureLog } from "../helpers/log_capture.ts";
import { turn } from "../helpers/pump_gated.ts";
import { waitFor } from "../helpers/wait.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { A, B, finishFrom, probeRange, SIZE, slowDownload, TRICKLE } from "../helpers/slow_download.ts";
import { OVERTAKE } from "../../src/download/overtake.ts";
import { FailoverPlan, MAX_ATTEMPTS } from "../../src/download/failover.ts";

/** The download of `slowDownload()`, with a way to trickle any mirror's body and to win any probe. */
async function overtakenOnce(dir: string) {
  const slow = await slowDownload(dir);
  const { data, download, gates, clock, trickle } = slow;
  const trickleFrom = async (gate: GatedRequest) => {
    const target = download.written + TRICKLE;
    gate.push(data.slice(download.written, target));
    while (download.written < target) await download.changed();
    await turn();
    clock.advance(1000);
    await turn();
  };
  /** The probe `gates[index]` of `mirror` sends its megabyte at once; returns the resume that follows. */
  const winProbe = async (index: number, mirror: string) => {
    const probe = gates[index];
    assert(probe.url.startsWith(mirror), `${mirror} is probed, not ${probe.url}`);
    assertEquals(probe.headers.get("range"), probeRange(download.written));
    const from = download.written;
    probe.push(data.slice(from, from + OVERTAKE.probeBytes));
    await waitFor(`${mirror} to be asked for the rest`, () => gates.length === index + 2);
    const resume = gates[index + 1];
    assert(resume.url.startsWith(mirror), resume.url);
    assertEquals(resume.headers.get("range"), `bytes=${from}-`);
    assertEquals(download.written, from, "no byte of the probe went into the file");
    return resume;
  };
  await trickle(TRICKLE);
  await trickle(TRICKLE);
  const b = await winProbe(1, B);
  return { ...slow, trickleFrom, winProbe, b };
}

Deno.test("Download.start() probes the mirror it left again when the last mirror, which overtook it, trickles in turn, and moves back to it", async () => {
  await withTempDir(async (dir) => {
    const captured = await captureLog("debug");
    try {
      const { data, download, gates, trickleFrom, winProbe, b } = await overtakenOnce(dir);
      // B, the last mirror of the plan, trickles as A did: A, back at the end of the plan, is probed.
      await trickleFrom(b);
      await trickleFrom(b);
      assertEquals(gates.length, 4, "A is probed again");
      const a = await winProbe(3, A);
      assertEquals(download.mirror, A);
      await finishFrom(a, download, data);
      await captured.close();
      assert(
        /mirror-a\.test\/ was overtaken for .*big-1\.0-1.*: back at the end of its plan/.test(
          captured.text(),
        ),
        captured.text(),
      );
    } finally {
      await captured.close();
    }
  });
});

Deno.test("Download.start() puts an overtaken mirror back in its plan only once: after one move back, the last mirror is kept", async () => {
  await withTempDir(async (dir) => {
    const { data, download, gates, trickleFrom, winProbe, b } = await overtakenOnce(dir);
    await trickleFrom(b);
    await trickleFrom(b);
    const a = await winProbe(3, A);
    // A trickles again: B, overtaken by it, is back in the plan once, and overtakes it once more.
    await trickleFrom(a);
    await trickleFrom(a);
    assertEquals(gates.length, 6, "B is probed again");
    const last = await winProbe(5, B);
    // A was put back once already: B is the last mirror now, and nothing is probed any more.
    for (let i = 0; i < 40; i++) await trickleFrom(last);
    assertEquals(gates.length, 7);
    await finishFrom(last, download, data);
  });
});

Deno.test("FailoverPlan.requeue() puts a mirror back at the end once, and never past MAX_ATTEMPTS", () => {
  const plan = new FailoverPlan(["a", "b"]);
  plan.passAsked(new Set(["a"]));
  assertEquals(plan.next(), "b");
  assert(plan.requeue("a", "/x"));
  assert(!plan.requeue("a", "/x"), "only once per order");
  plan.passAsked(new Set(["b"]));
  assertEquals(plan.next(), "a");
  assertEquals(plan.length, 3);
  const full = new FailoverPlan(Array.from({ length: MAX_ATTEMPTS + 2 }, (_, i) => `m${i}`));
  assertEquals(full.length, MAX_ATTEMPTS);
  assert(!full.requeue("m0", "/x"), "the plan is at MAX_ATTEMPTS already");
  assertEquals(full.length, MAX_ATTEMPTS);
});

Deno.test("Download.start() never probes against a mirror that ignores the resume's Range while it sends again the bytes on disk at a good rate", async () => {
  await withTempDir(async (dir) => {
    // B answers the resume (`bytes=N-`) with the whole file, from byte 0; its probe as asked.
    const answer = (req: FakeRequest) =>
      req.url.startsWith(B) && /^bytes=\d+-$/.test(req.headers.get("range") ?? "")
        ? { status: 200, headers: { "content-length": String(SIZE) } }
        : undefined;
    const { data, download, gates, clock, trickle } = await slowDownload(dir, { answer });
    // A sends 900 kB at once, then trickles: probed once its last 5 s show the trickle alone.
    await trickle(900_000);
    while (gates.length === 1) await trickle(TRICKLE);
    const from = download.written;
    gates[1].push(data.slice(from, from + OVERTAKE.probeBytes));
    await waitFor("B to be asked for the rest", () => gates.length === 3);
    const b = gates[2];
    assertEquals(b.headers.get("range"), `bytes=${from}-`);
    // B sends the whole file at 250 kB/s: the first `from` bytes (some 4 s) are dropped, the rest stored.
    const pace = 250_000;
    for (let sent = 0; sent < SIZE; sent += pace) {
      b.push(data.slice(sent, sent + pace));
      for (let i = 0; i < 5; i++) await turn();
      assertEquals(gates.length, 3, `no probe while B delivers ${pace} B/s (${sent + pace} bytes sent)`);
      clock.advance(1000);
      await turn();
    }
    b.end();
    await download.finished;
    assertEquals(download.outcome(), { type: "complete" });
    assertEquals(download.mirror, B);
    assertEquals(sha256(await Deno.readFile(download.finalPath)), sha256(data));
  });
});

Deno.test("Download.start() judges a mirror that ignores the resume's Range by the bytes it delivers, the dropped ones included", async () => {
  await withTempDir(async (dir) => {
    const answer = (req: FakeRequest) =>
      req.url.startsWith(B) && /^bytes=\d+-$/.test(req.headers.get("range") ?? "")
        ? { status: 200, headers: { "content-length": String(SIZE) } }
        : undefined;
    const captured = await captureLog("debug");
    try {
      const { data, download, gates, clock, trickle } = await slowDownload(dir, { answer });
      await trickle(900_000);
      while (gates.length === 1) await trickle(TRICKLE);
      const from = download.written;
      gates[1].push(data.slice(from, from + OVERTAKE.probeBytes));
      await waitFor("B to be asked for the rest", () => gates.length === 3);
      const b = gates[2];
      // B trickles the bytes on disk again at 20 kB/s: A, back in the plan, is probed against that rate.
      let sent = 0;
      while (gates.length === 3) {
        b.push(data.slice(sent, sent += TRICKLE));
        for (let i = 0; i < 5; i++) await turn();
        clock.advance(1000);
        await turn();
      }
      assertEquals(download.written, from, "B is still sending the bytes on disk again");
      assert(gates[3].url.startsWith(A), gates[3].url);
      await captured.close();
      assert(/mirror-b\.test\/ delivers .* at 19\.5 KiB\/s: probing http:\/\/mirror-a/.test(captured.text()));
      b.push(data.slice(sent));
      b.end();
      await download.finished;
      assertEquals(download.outcome(), { type: "complete" });
      assertEquals(sha256(await Deno.readFile(download.finalPath)), sha256(data));
    } finally {
      await captured.close();
    }
  });
});
