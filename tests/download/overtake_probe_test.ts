/**
 * What a probe of the next mirror measures (src/download/overtake.ts): the rate of the mirror in use that it is
 * compared with, and the answers that measure nothing; on a fake clock and fake upstreams.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { captureLog } from "../helpers/log_capture.ts";
import { turn } from "../helpers/pump_gated.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { finishFrom, SIZE, slowDownload, TRICKLE } from "../helpers/slow_download.ts";
import { OVERTAKE } from "../../src/download/overtake.ts";

Deno.test("Download.start() judges a probe against the mirror's rate before it, not its rate while the probe took a share of the link", async () => {
  await withTempDir(async (dir) => {
    const captured = await captureLog("debug");
    try {
      const { data, download, gates, signals, a, trickle } = await slowDownload(dir);
      await trickle(TRICKLE);
      await trickle(TRICKLE);
      assertEquals(gates.length, 2, "B is probed");
      const probe = gates[1];
      let sent = 2 * TRICKLE;
      // While B is probed, A slows to a twentieth (the probe shares our own link); B gets 1.5 times A's rate
      // before, less than the twice it must show: A is kept.
      for (let ms = 0; ms < OVERTAKE.probeMs; ms += 1000) {
        probe.push(data.slice(sent, sent += 1.5 * TRICKLE));
        await turn();
        await trickle(TRICKLE / 20);
      }
      await turn();
      assertEquals(gates.length, 2, "B was not asked for the rest");
      assert(!signals[0].aborted, "A's transfer goes on");
      await finishFrom(a, download, data);
      await captured.close();
      assert(
        /keeps .*not 2 times the 19\.5 KiB\/s of the mirror in use/.test(captured.text()),
        captured.text(),
      );
    } finally {
      await captured.close();
    }
  });
});

Deno.test("Download.start() keeps the mirror in use when the probed one answers a range that starts elsewhere", async () => {
  await withTempDir(async (dir) => {
    const captured = await captureLog("debug");
    try {
      // B ignores where the probe's range starts: what it sends is not what a resume from there would get.
      const wrongStart = (): { status: number; headers: Record<string, string> } => ({
        status: 206,
        headers: { "content-range": `bytes 0-${OVERTAKE.probeBytes - 1}/${SIZE}` },
      });
      const { data, download, gates, signals, a, trickle } = await slowDownload(dir, { probe: wrongStart });
      await trickle(TRICKLE);
      await trickle(TRICKLE);
      assertEquals(gates.length, 2, "B is probed");
      try {
        gates[1].push(data.slice(0, OVERTAKE.probeBytes));
      } catch {
        // The probe has given up its body already.
      }
      for (let i = 0; i < 5; i++) await turn();
      assertEquals(gates.length, 2, "B was not asked for the rest");
      assert(!signals[0].aborted, "A's transfer goes on");
      await finishFrom(a, download, data);
      await captured.close();
      assert(
        /the probe of http:\/\/mirror-b\.test\/ failed: answered bytes=40000-\d+ with Content-Range bytes 0-/
          .test(captured.text()),
        captured.text(),
      );
    } finally {
      await captured.close();
    }
  });
});
