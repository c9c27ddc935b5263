/**
 * The status report of `GET /status`, made from a stand-in of the running proxy: what it says of the
 * counters an operator acts on.
 */

import { assertEquals } from "../helpers/assert.ts";
import { standInStatusSource } from "../helpers/status_source.ts";
import { statusReport } from "../../src/status/status_report.ts";

const pool = (probes: number, overtaken: number) => ({
  snapshot: () => [],
  hedgeBudget: { hedges: 0, wins: 0 },
  overtakes: { probes, overtaken },
});

Deno.test("statusReport() reports each pool's overtake probes and the transfers they overtook", () => {
  const official = pool(5, 2);
  const source = standInStatusSource({
    pool: { source: "test", ...official },
    customPools: new Map([["arm", pool(3, 1)], ["zfs", pool(0, 0)]]),
  });
  const report = statusReport(source, { now: () => 0 });
  assertEquals(report.mirrors.overtakes, { probes: 5, overtaken: 2 });
  assertEquals(report.customRepos.map((r) => [r.name, r.overtakes]), [
    ["arm", { probes: 3, overtaken: 1 }],
    ["zfs", { probes: 0, overtaken: 0 }],
  ]);
  // A copy of the numbers at the time of the report, not the live counters.
  official.overtakes.probes++;
  assertEquals(report.mirrors.overtakes.probes, 5);
});
