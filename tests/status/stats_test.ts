import { Stats } from "../../src/status/stats.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { gatedFetch, rangeHead, testBytes } from "../helpers/fake_fetch.ts";
import { testApp } from "../helpers/test_app.ts";

const PKG = "/core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst";

Deno.test("Stats counts bytes from upstream as they reach the client and bytes from the cache per response", async () => {
  const data = testBytes(1_000_000, 31);
  const { fetch, gates } = gatedFetch((req) => rangeHead(data.byteLength, req));
  const app = await testApp(["http://a.test/"], { fetch });
  try {
    const reader = (await app.get(PKG)).body!.getReader();
    gates[0].push(data.slice(0, 300_000));
    let received = 0;
    while (received < 300_000) received += (await reader.read()).value!.byteLength;
    assert(app.stats.bytesFromUpstream >= received, "what the client has is counted");
    // The mirror has sent no more than 300 000 bytes yet: the rest cannot have been counted.
    assert(app.stats.bytesFromUpstream <= 300_000, "what it has not received yet is not");
    gates[0].push(data.slice(300_000));
    gates[0].end();
    while (!(await reader.read()).done);
    assertEquals(app.stats.bytesFromUpstream, data.length);
    await app.downloads.idle();
    await (await app.get(PKG)).arrayBuffer();
    assertEquals(app.stats.bytesFromCache, data.length);
    assertEquals(app.stats.hitRatio(), 0.5);
  } finally {
    await app.cleanup();
  }
});

Deno.test("Stats.recordError() keeps only the newest errors", () => {
  const stats = new Stats({ maxErrors: 2 });
  for (let i = 0; i < 5; i++) stats.recordError(i, `error ${i}`);
  assertEquals(stats.recentErrors.map((e) => e.message), ["error 3", "error 4"]);
  assertEquals(stats.hitRatio(), 0);
});

Deno.test("Stats.activity() changes with every answered request and every byte served", () => {
  const stats = new Stats();
  const seen = [stats.activity()];
  stats.recordRequest("CACHE HIT", 0);
  seen.push(stats.activity());
  stats.bytesFromUpstream += 10;
  seen.push(stats.activity());
  stats.recordRequest("CACHE HIT", 5);
  seen.push(stats.activity());
  assertEquals(new Set(seen).size, seen.length, `${seen}`);
  assertEquals(stats.activity(), stats.activity(), "no change without work");
});

Deno.test("Stats.hitRatio() counts every kind of hit and miss of a GET, and no HEAD", () => {
  const stats = new Stats();
  for (const result of ["CACHE HIT", "REVALIDATED", "NOT MODIFIED", "JOINED DOWNLOAD"] as const) {
    stats.recordRequest(result);
  }
  // A database fetched anew is a miss as a package's download is.
  stats.recordRequest("CACHE MISS");
  stats.recordRequest("UPDATED");
  assertEquals(stats.lookups(), { hits: 4, misses: 2 });
  assertEquals(stats.hitRatio(), 4 / 6);
  stats.recordRequest("UPDATED", 0, true);
  stats.recordRequest("CACHE HIT", 0, true);
  assertEquals(stats.lookups(), { hits: 4, misses: 2 }, "HEAD requests apart");
});
