/**
 * The benchmark's large cold download (`scripts/bench_cold_large.ts`), small: every download starts with the
 * dirty pages of earlier work written back, outside the timed window, for every source alike. Skipped without
 * nginx or curl. The machine-wide `sync` is replaced by a hook that records when it ran.
 */

import { join } from "node:path";
import { measureColdLarge } from "../../scripts/bench_cold_large.ts";
import { Children, NGINX_BINARY, run } from "../../scripts/bench_tools.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const HAVE_NGINX = (await run(NGINX_BINARY, ["-v"])).success;
const HAVE_CURL = (await run("curl", ["--version"])).success;

Deno.test({
  name: "measureColdLarge() waits for the write-back before every download of every source, untimed" +
    (HAVE_NGINX && HAVE_CURL ? "" : ` (skipped: ${NGINX_BINARY} or curl missing)`),
  ignore: !HAVE_NGINX || !HAVE_CURL,
  fn: async () => {
    await withTempDir(async (work) => {
      const children = new Children();
      let calls = 0;
      try {
        const measured = await measureColdLarge(children, {
          nginx: NGINX_BINARY,
          work: join(work, "bench"),
          bytes: 1024 * 1024,
          runs: 2,
          settleWriteBack: () => Promise.resolve(++calls),
        });
        // 2 runs of 3 sources: once before each of the 6 downloads, in the order of the downloads (alternating).
        assertEquals(calls, 6);
        for (const source of ["direct", "nginx", "flexo"]) {
          const [first, second] = measured.runs[source].map((r) => r.writeBackMs);
          assertEquals(first + second, 7, `${source}: ${first}, ${second}`);
          assert(measured.runs[source].every((r) => r.bytes === 1024 * 1024), source);
        }
      } finally {
        await children.killAll();
      }
    });
  },
});
