/**
 * The benchmark's measurements (`scripts/bench_measure.ts`) against a small server of the test's own: a row whose
 * load failed reports no figures. Skipped without wrk.
 */

import { join } from "node:path";
import { measureColdFirstByte, measureLoad, measureMemory, type Proxy } from "../../scripts/bench_measure.ts";
import { run } from "../../scripts/bench_tools.ts";
import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
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

Deno.test("measureColdFirstByte() reverses the order of the sources every other sample, so that none is always first", async () => {
  await withTempDir(async (root) => {
    await Deno.mkdir(join(root, "repo"));
    await Deno.writeFile(join(root, "repo", "source"), new Uint8Array(16));
    const order: string[] = [];
    const servers = ["direct", "nginx", "flexo"].map((name) =>
      Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
        order.push(name);
        return new Response("x");
      })
    );
    try {
      const [direct, nginx, flexo] = servers.map((s) => `http://127.0.0.1:${s.addr.port}/`);
      const proxies: Proxy[] = [
        { name: "nginx", base: nginx, pid: Deno.pid, cpuPids: [] },
        { name: "flexo", base: flexo, pid: Deno.pid, cpuPids: [] },
      ];
      const measured = await measureColdFirstByte(proxies, {
        originBase: direct,
        files: { root, dir: "repo" },
        source: "source",
        samples: 3,
        warmup: 1,
      });
      assertEquals(order, [
        ...["direct", "nginx", "flexo"], // the warm-up sample
        ...["flexo", "nginx", "direct"],
        ...["direct", "nginx", "flexo"],
        ...["flexo", "nginx", "direct"],
      ]);
      assertEquals(Object.values(measured.samples).map((s) => s.length), [3, 3, 3]);
    } finally {
      for (const server of servers) await server.shutdown();
    }
  });
});
