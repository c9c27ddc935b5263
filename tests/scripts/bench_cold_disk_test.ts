/**
 * The benchmark's cold-disk rows (`scripts/bench_cold_disk.ts`): a "cold" phase counts only when the large file
 * really left the page cache. These tests never drop the machine's page cache (other work may be measuring):
 * the drop is replaced by one that does nothing, as `drop_caches` does for pages not yet written to disk.
 */

import { join } from "node:path";
import { type ColdDiskMeasured, measureColdDisk, residentBytes } from "../../scripts/bench_cold_disk.ts";
import { figuresOf } from "../../scripts/bench_report.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const HAVE_FINCORE = await new Deno.Command("fincore", {
  args: ["--version"],
  stdout: "null",
  stderr: "null",
})
  .output().then((out) => out.success, () => false);
const HAVE_CURL = await new Deno.Command("curl", { args: ["--version"], stdout: "null", stderr: "null" })
  .output().then((out) => out.success, () => false);

function phase(p99Ms: number, maxMs: number): ColdDiskMeasured["warm"] {
  return { requests: 100, slowestMs: [maxMs], p99Ms, maxMs, medianMs: 0.5, downloadMs: 1000 };
}

function coldDisk(coldVerified: boolean): ColdDiskMeasured {
  return {
    largeBytes: 400 * 1024 * 1024,
    downloads: 4,
    warm: phase(1, 10),
    cold: phase(1, 10),
    dropped: true,
    residentAfterDropBytes: coldVerified ? 0 : 400 * 1024 * 1024,
    coldVerified,
    disk: "the cache's own disk",
  };
}

Deno.test("figuresOf(): the cold-disk rows fail when the large file stayed in the page cache, however fast", () => {
  const rows = figuresOf({ coldDisk: coldDisk(false) }).filter((f) => f.id.startsWith("cold_disk_small_"));
  assertEquals(rows.map((f) => f.id), ["cold_disk_small_p99", "cold_disk_small_max"]);
  for (const row of rows) {
    assertEquals(row.ratio, 1);
    assertEquals(row.pass, false, `${row.id} passed with a warm "cold" phase`);
    assert(row.label.includes("NOT COLD"), row.label);
  }
  const verified = figuresOf({ coldDisk: coldDisk(true) }).filter((f) => f.id.startsWith("cold_disk_small_"));
  assertEquals(verified.map((f) => f.pass), [true, true]);
});

Deno.test({
  name: "residentBytes() tells how much of a file is in the page cache: all of one just written" +
    (HAVE_FINCORE ? "" : " (skipped: no fincore, util-linux)"),
  ignore: !HAVE_FINCORE,
  fn: async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, "file");
      await Deno.writeFile(path, randomBytes(1024 * 1024));
      assertEquals(await residentBytes(path), 1024 * 1024);
      assertEquals(await residentBytes(join(dir, "missing")), null);
    });
  },
});

Deno.test({
  name: "measureColdDisk() reports a cold phase as not cold when the drop left the large file in memory" +
    (HAVE_FINCORE && HAVE_CURL ? "" : " (skipped: fincore or curl missing)"),
  ignore: !HAVE_FINCORE || !HAVE_CURL,
  fn: async () => {
    await withTempDir(async (dir) => {
      const large = randomBytes(1024 * 1024);
      const largePath = join(dir, "large");
      await Deno.writeFile(largePath, large);
      const small = new Uint8Array(randomBytes(4096));
      const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (request) => {
        const path = new URL(request.url).pathname;
        if (path === "/large") return new Response(await Deno.readFile(largePath));
        if (path === "/small") return new Response(small);
        return new Response("no", { status: 404 });
      });
      try {
        const base = `http://127.0.0.1:${server.addr.port}`;
        let drops = 0;
        const measured = await measureColdDisk({
          largeUrl: `${base}/large`,
          largeBytes: large.length,
          smallUrl: `${base}/small`,
          downloads: 1,
          disk: "test",
          largePath,
          // As drop_caches does for dirty pages: nothing.
          dropCache: () => Promise.resolve(++drops > 0),
        });
        assertEquals(drops, 1);
        assertEquals(measured.dropped, true);
        assertEquals(measured.residentAfterDropBytes, large.length);
        assertEquals(measured.coldVerified, false);
        assert(measured.cold.requests > 0 && measured.warm.requests > 0);
      } finally {
        await server.shutdown();
      }
    });
  },
});
