/**
 * The short soak: `scripts/soak.ts` with 40 clients, 3 s of warm-up and 6 s measured, in its own process (so that
 * its descriptor and memory figures are not disturbed by the tests running beside this one). The load mixes
 * cache hits, misses of one shared file (joined downloads), misses of different files, Range requests (including
 * unsatisfiable ones) and HEAD; every body is compared with the origin's bytes.
 */

import { fileURLToPath } from "node:url";
import { formatReport, OPERATIONS, soakFailures, type SoakResult } from "../../scripts/soak.ts";
import { assert, assertEquals } from "../helpers/assert.ts";

const MIB = 1024 * 1024;
const SOAK = fileURLToPath(new URL("../../scripts/soak.ts", import.meta.url));

/** Runs the soak script and returns its result. */
async function soak(args: string[]): Promise<SoakResult> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SOAK, "--json", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  assert(
    stdout.trim().startsWith("{"),
    `the soak printed no result (exit ${output.code}):\n${stdout}\n${stderr}`,
  );
  return JSON.parse(stdout);
}

Deno.test("scripts/soak.ts with 40 clients: correct bytes, no errors, descriptors and memory come back", async () => {
  const result = await soak(["--clients", "40", "--warmup", "3", "--duration", "6", "--seed", "1"]);
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
