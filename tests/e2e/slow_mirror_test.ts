/**
 * A trickling mirror against the real program: `main.ts` as a process with its default transfer limits
 * (`low_speed_limit` 1 B/s, as the Rust flexo), a first mirror far above that limit but slow, a fast second one.
 * The download must move to the fast mirror (overtaking, src/download/overtake.ts) rather than take minutes.
 */

import { dirname, join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { startFlexo, tomlString, writeConfig } from "../helpers/flexo_process.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { testBytes } from "../helpers/fake_fetch.ts";
import { sha256 } from "../helpers/bytes.ts";

const PKG = "/core/os/x86_64/big-1:2.0-1-x86_64.pkg.tar.zst";
/** The slow mirror's pace: 3 MiB take it over two and a half minutes. */
const TRICKLE = 20_000;
/** How long the client may take: the old code needed the slow mirror's whole 157 s. */
const BOUND_MS = 30_000;

Deno.test("flexo delivers a package from the fast second mirror within seconds while the first trickles at 20 kB/s", async () => {
  await withTempDir(async (work) => {
    const data = testBytes(3 * 1024 * 1024, 51);
    const root = join(work, "mirror");
    await Deno.mkdir(dirname(join(root, PKG)), { recursive: true });
    await Deno.writeFile(join(root, PKG), data);
    await using slow = await startFakeMirror(root, { bytesPerSecond: TRICKLE });
    await using fast = await startFakeMirror(root);
    const config = await writeConfig(
      work,
      [
        `cache_directory = ${tomlString(join(work, "cache"))}`,
        `mirrorlist_fallback_file = ${tomlString(join(work, "state", "mirrorlist"))}`,
        `mirrorlist_latency_test_results_file = ${tomlString(join(work, "state", "latency.json"))}`,
        "port = 0",
        'listen_ip_address = "127.0.0.1"',
        'mirror_selection_method = "predefined"',
        `mirrors_predefined = [${tomlString(slow.url)}, ${tomlString(fast.url)}]`,
        "shutdown_drain_secs = 0",
      ].join("\n"),
    );
    await Deno.mkdir(join(work, "cache"));
    const flexo = await startFlexo(config);
    try {
      const started = performance.now();
      const response = await fetch(flexo.url + PKG, { signal: AbortSignal.timeout(BOUND_MS) });
      assertEquals(response.status, 200);
      const body = new Uint8Array(await response.arrayBuffer());
      const ms = performance.now() - started;
      assertEquals(sha256(body), sha256(data), "the client got the file's bytes");
      assert(ms < BOUND_MS, `the package took ${Math.round(ms)} ms`);
      const ranges = fast.requests.filter((r) => r.method === "GET").map((r) => r.range ?? "");
      assert(ranges.some((range) => /^bytes=\d+-\d+$/.test(range)), `the fast mirror was probed: ${ranges}`);
      assert(ranges.some((range) => /^bytes=[1-9]\d*-$/.test(range)), `it resumed the rest: ${ranges}`);
      assertEquals(slow.countRequests(PKG, { method: "GET" }), 1);
      assert(/delivers .* while .* delivered .*switching mirror/.test(flexo.output()), flexo.output());
      const metrics = await (await fetch(`${flexo.url}/metrics`)).text();
      for (const name of ["flexo_overtake_probes_total", "flexo_overtaken_transfers_total"]) {
        assert(metrics.includes(`${name}{pool="official"} 1\n`), `${name} in:\n${metrics}`);
      }
    } finally {
      await flexo.stop();
    }
  });
});
