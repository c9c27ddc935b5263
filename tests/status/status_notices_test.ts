/**
 * What the status page tells an operator of the counters to act on (status_notices.ts): each counter above
 * zero in its place with a hint, nothing at all while they are zero. The browser test shows them on the page.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { standInStatusSource } from "../helpers/status_source.ts";
import { statusNotices } from "../../src/status/status_notices.ts";
import { statusReport } from "../../src/status/status_report.ts";
import { Stats } from "../../src/status/stats.ts";
import type { StatusSource } from "../../src/status/status_source.ts";

const pool = (probes: number, overtaken: number) => ({
  snapshot: () => [],
  hedgeBudget: { hedges: 0, wins: 0 },
  overtakes: { probes, overtaken },
});

const notices = (overrides: Partial<StatusSource> = {}) =>
  statusNotices(statusReport(standInStatusSource(overrides), { now: () => 0 }));

Deno.test("statusNotices() says nothing while every counter is zero", () => {
  const told = notices({ customPools: new Map([["arm", pool(0, 0)]]) });
  assertEquals(told, { requests: [], peers: [], pools: { official: [], "custom_repo/arm": [] } });
});

Deno.test("statusNotices() does tell the connections refused at max_connections, with raising it as the hint", () => {
  const stats = new Stats();
  stats.refusedConnections = 7;
  const [notice, ...rest] = notices({ stats }).requests;
  assertEquals(rest, []);
  assertEquals(notice.key, "connections-refused");
  assert(notice.text.startsWith("7 connections refused: max_connections"), notice.text);
  assert(notice.hint.includes("Raise max_connections"), notice.hint);
});

Deno.test("statusNotices() does tell the requests refused before the app by status, most first, each with a hint", () => {
  const stats = new Stats();
  stats.refusedRequest(400);
  for (let i = 0; i < 3; i++) stats.refusedRequest(403);
  stats.refusedRequest(405);
  stats.refusedRequest(599);
  const told = notices({ stats }).requests;
  assertEquals(told.map((n) => n.key), ["refused-403", "refused-400", "refused-405", "refused-599"]);
  assert(told[0].text.startsWith("3 requests refused with 403"), told[0].text);
  assert(told[0].text.includes("allowed_clients") && told[0].hint.includes("allowed_clients"), told[0].hint);
  assert(told[1].text.startsWith("1 request refused with 400"), told[1].text);
  assert(told[2].hint.includes("GET and HEAD"), told[2].hint);
  assert(told.every((n) => n.hint.length > 0), "every notice has a hint");
});

Deno.test("statusNotices() does tell the peer loops with the node's name, and to give each node its own node_name", () => {
  const stats = new Stats();
  stats.peerLoops = 2;
  const told = notices({ stats, nodeName: "site-1" });
  assertEquals(told.requests, []);
  assertEquals(told.peers.map((n) => n.key), ["peer-loops"]);
  assert(told.peers[0].text.startsWith("2 peer lookups looped (508)"), told.peers[0].text);
  assert(told.peers[0].text.includes("(site-1)"), told.peers[0].text);
  assert(told.peers[0].hint.includes("its own node_name"), told.peers[0].hint);
});

Deno.test("statusNotices() does tell each pool's overtaking below its own mirrors, and what to do when transfers moved", () => {
  const told = notices({
    pool: { source: "test", ...pool(5, 2) },
    customPools: new Map([["arm", pool(3, 0)], ["zfs", pool(0, 0)]]),
  });
  const [official] = told.pools.official;
  assertEquals(official.key, "overtakes");
  assert(official.text.includes("5 probes") && official.text.includes("2 transfers moved"), official.text);
  assert(official.hint.includes("mirrors_predefined"), official.hint);
  const [arm] = told.pools["custom_repo/arm"];
  assert(arm.text.includes("3 probes") && arm.text.includes("0 transfers moved"), arm.text);
  assert(arm.hint.includes("nothing to do"), arm.hint);
  assertEquals(told.pools["custom_repo/zfs"], []);
});

Deno.test("statusNotices() is self-contained: its source text runs on its own, as the page runs it", () => {
  const stats = new Stats();
  stats.refusedConnections = 1;
  const report = statusReport(standInStatusSource({ stats }), { now: () => 0 });
  const standalone = new Function("return " + statusNotices.toString())() as typeof statusNotices;
  assertEquals(standalone(report), statusNotices(report));
});
