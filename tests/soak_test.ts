/**
 * The short soak: `scripts/soak.ts` with 40 clients, 3 s of warm-up and 6 s measured. The load mixes cache hits,
 * misses of one shared file (joined downloads), misses of different files, Range requests (including
 * unsatisfiable ones) and HEAD; every body is compared with the origin's bytes.
 */

import { formatReport, OPERATIONS, runSoak, soakFailures } from "../scripts/soak.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

const MIB = 1024 * 1024;

Deno.test("runSoak() with 40 clients: correct bytes, no errors, descriptors and memory come back", async () => {
  const result = await runSoak({ clients: 40, warmupMs: 3_000, durationMs: 6_000, seed: 1 });
  const report = formatReport(result);
  for (const op of OPERATIONS) {
    assert(result.operations[op].requests >= 20, `too few ${op} requests to mean anything:\n${report}`);
  }
  assert(result.upstreamFiles >= 20, `too few upstream downloads:\n${report}`);
  assert(result.peak.fds > result.baseline.fds + 40, `the load did not open connections:\n${report}`);
  // Zero wrong bytes, zero errors, no file fetched twice, descriptors and RSS back near the warm baseline.
  assertEquals(soakFailures(result, { fdSlack: 4, rssSlackBytes: 48 * MIB }), [], report);
  assertEquals(result.after.files, result.baseline.files, `files left open:\n${report}`);
  // The warm-up must not have left anything behind either.
  assert(result.after.fds <= result.cold.fds + 4, `descriptors left open since the start:\n${report}`);
  assert(result.after.rss <= result.cold.rss + 96 * MIB, `memory kept since the start:\n${report}`);
});
