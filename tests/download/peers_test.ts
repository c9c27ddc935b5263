/**
 * Asking cache peers before the mirrors (`findOnPeers`): the first peer that has the file wins, a miss never
 * waits longer than the wait, and a peer that let a lookup wait that long is not waited for again for a while.
 */

import { assertEquals } from "../helpers/assert.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { findOnPeers, type PeerLookup, PeerLoops, SilentPeers } from "../../src/download/peers.ts";
import { captureLog } from "../helpers/log_capture.ts";

const DOWN = "http://127.0.0.1:9201/";
const UP = "http://127.0.0.1:9202/";
const PATH = "core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst";

/** A fetch where DOWN never answers (a machine that drops packets) until aborted, and UP answers `upStatus`. */
function peersFetch(upStatus: number) {
  const asked: string[] = [];
  const fetchImpl = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = String(input);
    asked.push(url);
    if (url.startsWith(UP)) return Promise.resolve(new Response(null, { status: upStatus }));
    return new Promise((_, reject) => {
      init?.signal?.addEventListener("abort", () => reject(init.signal!.reason), { once: true });
    });
  };
  return { fetch: fetchImpl as typeof fetch, asked };
}

/** What `lookup` has settled with once the turns of its answered requests have run, or "waiting". */
async function settled(lookup: Promise<PeerLookup>): Promise<PeerLookup | "waiting"> {
  return await Promise.race([
    lookup,
    new Promise<"waiting">((resolve) => setTimeout(() => resolve("waiting"), 20)),
  ]);
}

Deno.test("findOnPeers() does not wait again for a peer that let a lookup wait it out, until its hold ends", async () => {
  const timers = new FakeTimers();
  const silent = new SilentPeers({ now: timers.now, holdMs: 30_000 });
  const peers = peersFetch(504);
  const options = { fetch: peers.fetch, waitMs: 500, timers, silent };

  const first = findOnPeers([DOWN, UP], PATH, options);
  assertEquals(await settled(first), "waiting", "the first lookup waits for the silent peer");
  timers.advance(500);
  assertEquals(await first, { type: "miss" });

  // Every miss after it would wait half a second more for the same silent peer: it is left out instead.
  const second = findOnPeers([DOWN, UP], PATH, options);
  assertEquals(await settled(second), { type: "miss" }, "a second miss waited for a peer known to be silent");
  assertEquals(peers.asked, [DOWN + PATH, UP + PATH, UP + PATH]);

  // After the hold it is asked again, so a peer that is back is used again.
  timers.advance(30_000);
  const third = findOnPeers([DOWN, UP], PATH, options);
  assertEquals(peers.asked.at(-2), DOWN + PATH);
  timers.advance(500);
  assertEquals(await third, { type: "miss" });
});

Deno.test("findOnPeers() answers a miss at once when every peer is on hold, and a hit from one that is not", async () => {
  const timers = new FakeTimers();
  const silent = new SilentPeers({ now: timers.now });
  silent.heldUp(DOWN);
  assertEquals(await settled(findOnPeers([DOWN], PATH, { fetch: peersFetch(200).fetch, timers, silent })), {
    type: "miss",
  });
  assertEquals(
    await settled(findOnPeers([DOWN, UP], PATH, { fetch: peersFetch(200).fetch, timers, silent })),
    { type: "hit", peer: UP },
  );
  assertEquals(timers.pending, []);
});

Deno.test("findOnPeers() tells onLoop of a peer that answers 508, and counts it as a miss", async () => {
  const looped: string[] = [];
  const peers = peersFetch(508);
  const lookup = await findOnPeers([UP], PATH, { fetch: peers.fetch, onLoop: (peer) => looped.push(peer) });
  assertEquals(lookup, { type: "miss" });
  assertEquals(looped, [UP]);
});

Deno.test("PeerLoops.looped() warns about a peer at most once per interval, naming the fix", async () => {
  let now = 0;
  const log = await captureLog("info");
  try {
    const loops = new PeerLoops({ now: () => now, nodeName: "same", intervalMs: 60_000 });
    loops.looped(UP);
    loops.looped(UP);
    loops.looped(DOWN);
    now = 60_000;
    loops.looped(UP);
  } finally {
    await log.close();
  }
  const lines = log.text().split("\n").filter((line) => line.includes("508"));
  assertEquals(lines.map((line) => line.includes(UP) ? "up" : "down"), ["up", "down", "up"]);
  assertEquals(lines.every((line) => line.includes("every node needs its own node_name")), true);
});
