/**
 * Hedged requests end to end: behind a mirror that accepts connections and never answers, the first byte of a
 * database, a package and a pass-through file comes within 1.5 s (connect_timeout is 3 s here, so waiting on
 * the silent mirror would take 3 s), later requests do not pay that delay again, and with healthy mirrors
 * hedging costs at most 10 % more upstream requests than client requests.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { makeRepo } from "../helpers/make_repo.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const REPO = "flexotest";
const LIMITS = { connectTimeoutMs: 3000 };

/** GETs `path` and returns the status, the milliseconds until the head and first body byte, and the body. */
async function timedGet(
  base: string,
  path: string,
): Promise<{ status: number; firstByteMs: number; bytes: number }> {
  const started = performance.now();
  const response = await fetch(base + path, { signal: AbortSignal.timeout(20_000) });
  const reader = response.body!.getReader();
  let first = await reader.read();
  const firstByteMs = performance.now() - started;
  let bytes = 0;
  while (!first.done) {
    bytes += first.value.byteLength;
    first = await reader.read();
  }
  return { status: response.status, firstByteMs, bytes };
}

async function withRepo(
  run: (repo: Awaited<ReturnType<typeof makeRepo>>, dir: string) => Promise<void>,
): Promise<void> {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "mirror"), {
      repo: REPO,
      packages: [{ name: "one", version: "1.0-1", size: 200_000 }, {
        name: "two",
        version: "1.0-1",
        size: 50_000,
      }],
    });
    await Deno.writeTextFile(join(dir, "mirror", REPO, "os", "x86_64", "notes.txt"), "pass-through\n");
    await run(repo, join(dir, "mirror"));
  });
}

Deno.test("behind a silent first mirror the first byte of a database, a package and a pass-through file comes within 1.5 s, and later requests do not wait again", async () => {
  await withRepo(async (repo, root) => {
    await using silent = await startFakeMirror(root, { silent: true });
    await using good = await startFakeMirror(root);
    await using proxy = await startTestProxy({ mirrors: [silent.url, good.url], limits: LIMITS });
    const base = `${proxy.url}/${REPO}/os/x86_64/`;
    const db = await timedGet(base, `${REPO}.db`);
    assertEquals(db.status, 200);
    assert(db.firstByteMs < 1500, `database: first byte after ${Math.round(db.firstByteMs)} ms`);
    const pkg = await timedGet(base, repo.packages[0].fileName);
    assertEquals(pkg.status, 200);
    assertEquals(pkg.bytes, repo.packages[0].size);
    assert(pkg.firstByteMs < 1500, `package: first byte after ${Math.round(pkg.firstByteMs)} ms`);
    const other = await timedGet(base, "notes.txt");
    assertEquals(other.status, 200);
    assert(other.firstByteMs < 1500, `pass-through: first byte after ${Math.round(other.firstByteMs)} ms`);
    // The silent mirror is ranked down: later requests go to the good mirror first and do not wait at all.
    const silentAsked = silent.requests.length;
    const again = await timedGet(base, repo.packages[1].fileName);
    assertEquals(again.status, 200);
    assertEquals(silent.requests.length, silentAsked, "the silent mirror was asked again");
    assert(again.firstByteMs < 300, `later package: first byte after ${Math.round(again.firstByteMs)} ms`);
  });
});

Deno.test("with healthy mirrors hedging adds at most 10 % upstream requests (measured over 200 client requests)", async () => {
  await withRepo(async (repo, root) => {
    await using a = await startFakeMirror(root);
    await using b = await startFakeMirror(root);
    await using proxy = await startTestProxy({ mirrors: [a.url, b.url], limits: LIMITS });
    const base = `${proxy.url}/${REPO}/os/x86_64/`;
    const clientRequests = 200;
    for (let i = 0; i < clientRequests; i++) {
      // Databases are revalidated upstream on every request; pass-through files are asked every time.
      const path = i % 2 === 0 ? `${REPO}.db` : "notes.txt";
      assertEquals((await timedGet(base, path)).status, 200);
    }
    await proxy.app.downloads.idle();
    const upstream = a.requests.length + b.requests.length;
    const extra = upstream - clientRequests;
    console.log(`${clientRequests} client requests, ${upstream} upstream requests (${extra} hedges)`);
    assert(
      extra <= clientRequests * 0.1,
      `${extra} extra upstream requests for ${clientRequests} client requests`,
    );
    assertEquals(repo.packages.length, 2);
  });
});

/** The value of a sample line `name{labels} value` in a /metrics scrape (0 when absent). */
function metricValue(text: string, name: string, labels: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

Deno.test("GET /metrics counts the hedged requests started and those that won", async () => {
  await withRepo(async (repo, root) => {
    await using silent = await startFakeMirror(root, { silent: true });
    await using good = await startFakeMirror(root);
    await using proxy = await startTestProxy({ mirrors: [silent.url, good.url], limits: LIMITS });
    const base = `${proxy.url}/${REPO}/os/x86_64/`;
    const scrape = async () => await (await fetch(`${proxy.url}/metrics`)).text();
    const before = await scrape();
    assertEquals(metricValue(before, "flexo_hedged_requests_total", 'pool="official"'), 0);
    assertEquals(metricValue(before, "flexo_hedged_requests_won_total", 'pool="official"'), 0);
    // Behind the silent mirror the first request is hedged, and the hedge (the good mirror) wins.
    assertEquals((await timedGet(base, `${REPO}.db`)).status, 200);
    const after = await scrape();
    assertEquals(metricValue(after, "flexo_hedged_requests_total", 'pool="official"'), 1);
    assertEquals(metricValue(after, "flexo_hedged_requests_won_total", 'pool="official"'), 1);
    // The silent mirror is ranked down: later requests ask the good mirror first, and need no hedge.
    assertEquals((await timedGet(base, "notes.txt")).status, 200);
    assertEquals((await timedGet(base, repo.packages[1].fileName)).status, 200);
    const last = await scrape();
    assertEquals(metricValue(last, "flexo_hedged_requests_total", 'pool="official"'), 1);
    assertEquals(metricValue(last, "flexo_hedged_requests_won_total", 'pool="official"'), 1);
  });
});
