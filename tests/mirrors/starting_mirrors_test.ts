/**
 * fillStartingMirrors(): the mirrors a one-off command (`flexo prefetch` without a proxy) uses, the same list
 * the proxy starts with, read without testing or asking anything on the network.
 */

import { join } from "node:path";
import { configSchema } from "../../src/config/config_schema.ts";
import { writeRanking } from "../../src/mirrors/mirror_ranking_store.ts";
import { fillStartingMirrors } from "../../src/mirrors/mirror_selection.ts";
import { BUILT_IN_MIRRORS, MirrorPool } from "../../src/mirrors/mirrors.ts";
import { assertEquals } from "../helpers/assert.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const A = "http://127.0.0.1:4/";
const B = "http://127.0.0.1:5/";

Deno.test("fillStartingMirrors() takes the persisted ranking under auto selection, even a stale one", async () => {
  await withTempDir(async (dir) => {
    const config = configSchema.parse({
      cache_directory: dir,
      mirrorlist_latency_test_results_file: join(dir, "ranking.json"),
      mirrorlist_fallback_file: join(dir, "mirrorlist"),
      mirrors_predefined: [B],
    });
    await writeRanking(config.mirrorlist_latency_test_results_file, {
      timestamp: new Date(Date.now() - 90 * 86_400_000).toISOString(),
      mirrors: [{ url: A, latencyMs: 5, countryCode: "DE", score: 1 }],
    });
    const pool = new MirrorPool();
    fillStartingMirrors(config, pool);
    assertEquals([pool.source, pool.plan("database")], ["persisted ranking", [A]]);
  });
});

Deno.test("fillStartingMirrors() falls back to mirrors_predefined, then to the built-in mirrors", async () => {
  await withTempDir((dir) => {
    const ranking = join(dir, "missing.json");
    const predefined = new MirrorPool();
    fillStartingMirrors(
      configSchema.parse({
        cache_directory: dir,
        mirrorlist_latency_test_results_file: ranking,
        mirrorlist_fallback_file: join(dir, "mirrorlist"),
        mirrors_predefined: [B],
      }),
      predefined,
    );
    assertEquals([predefined.source, predefined.plan("database")], ["predefined", [B]]);
    const builtIn = new MirrorPool();
    fillStartingMirrors(
      configSchema.parse({
        cache_directory: dir,
        mirrorlist_latency_test_results_file: ranking,
        // Never this machine's own /var/cache/flexo/state/mirrorlist, which another run may have written.
        mirrorlist_fallback_file: join(dir, "mirrorlist"),
      }),
      builtIn,
    );
    assertEquals(builtIn.source, "built-in");
    assertEquals(builtIn.plan("database").length, BUILT_IN_MIRRORS.length);
  });
});
