/**
 * Two proxies on one cache directory (a second instance started by mistake, two containers on one volume): the
 * second one's start-up recovery would remove the first one's downloads in progress, and two downloads of one
 * file would write one partial file. The second refuses to start, naming the directory and the first process.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { runFlexo, startFlexo, writeTestConfig } from "../helpers/flexo_process.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

Deno.test("serve() refuses a cache directory that another flexo process serves, and takes it once that one ends", async () => {
  await withTempDir(async (work) => {
    const cacheDir = join(work, "cache");
    // No download is made: the mirror is never asked.
    const config = await writeTestConfig(work, { cacheDir, mirror: "http://127.0.0.1:9/" });
    const first = await startFlexo(config);
    try {
      // A second proxy that started would listen until killed: the bound only tells a refusal from a start.
      const second = await runFlexo(["--config", config], { timeoutMs: 30_000 });
      assertEquals(second.code, 1, second.stderr);
      assert(second.stderr.includes(`cache_directory = "${cacheDir}" is in use`), second.stderr);
      assert(second.stderr.includes(`process ${first.pid}`), second.stderr);
      // The first one goes on serving.
      const health = await fetch(`${first.url}/healthz`);
      await health.body?.cancel();
      assertEquals(health.status, 200);
    } finally {
      await first.stop();
    }
    const next = await startFlexo(config);
    await next.stop();
  });
});
