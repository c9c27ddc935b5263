/**
 * The benchmark's measurements (`scripts/bench_measure.ts`) against a small server of the test's own: a row whose
 * load failed reports no figures. Skipped without wrk.
 */

import { measureLoad, measureMemory, type Proxy } from "../../scripts/bench_measure.ts";
import { run } from "../../scripts/bench_tools.ts";
import { assert, assertRejects } from "../helpers/assert.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const WRK = await run("wrk", ["--version"]);
const HAVE_WRK = WRK.spawned && WRK.output.startsWith("wrk ");

for (const [what, measure] of [["measureLoad", measureLoad], ["measureMemory", measureMemory]] as const) {
  Deno.test({
    name: `${what}() fails when the proxy answers errors under wrk, instead of reporting figures` +
      (HAVE_WRK ? "" : " (skipped: no wrk)"),
    ignore: !HAVE_WRK,
    fn: async () => {
      const server = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        () => new Response("broken", { status: 500 }),
      );
      try {
        const proxy: Proxy = {
          name: "flexo",
          base: `http://127.0.0.1:${server.addr.port}/`,
          pid: Deno.pid,
          cpuPids: [Deno.pid],
        };
        await withTempDir(async (workDir) => {
          const error = await assertRejects(
            () => measure([proxy], "file", { connections: 2, threads: 1, seconds: 1, runs: 1, workDir }),
            Error,
          );
          assert(error.message.includes("errors under wrk"), error.message);
        });
      } finally {
        await server.shutdown();
      }
    },
  });
}
