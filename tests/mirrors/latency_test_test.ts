import assert from "node:assert/strict";
import {
  LATENCY_TEST_CONCURRENCY,
  measureLatency,
  rankMirrorsByLatency,
  relaxMirrorsAuto,
  runLatencyTests,
} from "../../src/mirrors/latency_test.ts";
import type { RecordedRequest } from "../helpers/fake_mirror.ts";
import {
  latencyMirrors,
  mirrorsAutoSettings as settings,
  statusEntry as entry,
} from "../helpers/mirror_fixtures.ts";

/** The parts of a recorded request that the latency test decides. */
const sent = ({ method, path, range }: RecordedRequest) => ({ method, path, range });

Deno.test("measureLatency() asks for one byte of core.db and measures the time to the headers", async () => {
  await using mirrors = await latencyMirrors();
  const mirror = await mirrors.start({ delayMs: 60 });
  const latency = await measureLatency(mirror.url, { timeoutMs: 2000 });
  assert.ok(latency >= 55 && latency < 1500, `latency ${latency}`);
  assert.deepEqual(mirror.requests.map(sent), [{
    method: "GET",
    path: "/core/os/x86_64/core.db",
    range: "bytes=0-0",
  }]);
  await measureLatency(mirror.url.slice(0, -1), { timeoutMs: 2000, method: "HEAD" });
  assert.deepEqual(sent(mirror.requests[1]), {
    method: "HEAD",
    path: "/core/os/x86_64/core.db",
    range: undefined,
  });
});

Deno.test("measureLatency() rejects error statuses, Cloudflare and timeouts", async () => {
  await using mirrors = await latencyMirrors();
  const missing = await mirrors.start({ status: 404 });
  const cloudflare = await mirrors.start({ headers: { server: "cloudflare" } });
  const slow = await mirrors.start({ delayMs: 400 });
  await assert.rejects(measureLatency(missing.url, { timeoutMs: 2000 }), /404/);
  await assert.rejects(measureLatency(cloudflare.url, { timeoutMs: 2000 }), /Cloudflare/);
  await assert.rejects(measureLatency(slow.url, { timeoutMs: 100 }), /no response headers within 100 ms/);
});

Deno.test("runLatencyTests() ranks mirrors by latency and leaves out failures", async () => {
  await using mirrors = await latencyMirrors();
  const fast = await mirrors.start();
  const medium = await mirrors.start({ delayMs: 80 });
  const slow = await mirrors.start({ delayMs: 160 });
  const tooSlow = await mirrors.start({ delayMs: 550 });
  const broken = await mirrors.start({ status: 500 });
  const candidates = [slow, broken, tooSlow, fast, medium].map((m) => ({
    url: m.url,
    country_code: "FR",
    score: 1,
  }));
  const [results, best] = await Promise.all([
    runLatencyTests(candidates, { timeoutMs: 400 }),
    runLatencyTests(candidates, { timeoutMs: 400, limit: 2 }),
  ]);
  assert.deepEqual(results.map((r) => r.url), [fast.url, medium.url, slow.url]);
  assert.deepEqual(results[0].countryCode, "FR");
  assert.ok(results[1].latencyMs >= 75, `latency ${results[1].latencyMs}`);
  assert.deepEqual(best.map((r) => r.url), [fast.url, medium.url]);
});

Deno.test("runLatencyTests() runs at most `concurrency` tests at a time and uses the injected clock", async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  let clock = 0;
  const fakeFetch = (async (input: RequestInfo | URL) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const n = Number(new URL(String(input)).hostname.split(".")[3]);
    await Promise.resolve(); // yield: the other tests started meanwhile are in flight too
    clock += n; // the clock advances by the mirror's number: mirror 10 looks slowest
    inFlight--;
    return new Response(null, { status: 206 });
  }) as typeof fetch;
  const candidates = Array.from({ length: 10 }, (_, i) => ({ url: `http://127.0.0.${i + 1}/` }));
  const results = await runLatencyTests(candidates, {
    timeoutMs: 1000,
    concurrency: 3,
    fetch: fakeFetch,
    now: () => clock,
  });
  assert.equal(maxInFlight, 3);
  assert.equal(results.length, 10);
  for (let i = 1; i < results.length; i++) assert.ok(results[i - 1].latencyMs <= results[i].latencyMs);
  // One at a time, each latency is exactly the clock's advance during that test.
  const reversed = [...candidates].reverse();
  const sequential = await runLatencyTests(reversed, {
    timeoutMs: 1000,
    concurrency: 1,
    fetch: fakeFetch,
    now: () => clock,
  });
  assert.deepEqual(sequential.map((r) => r.latencyMs), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual(sequential.map((r) => r.url), candidates.map((c) => c.url));
  const defaultBound = await runLatencyTests(
    Array.from({ length: 100 }, (_, i) => ({ url: `http://127.0.0.${i + 1}/` })),
    { timeoutMs: 1000, fetch: fakeFetch, now: () => clock },
  );
  assert.equal(defaultBound.length, 100);
  assert.equal(maxInFlight, LATENCY_TEST_CONCURRENCY);
  assert.ok(LATENCY_TEST_CONCURRENCY > 40, "40 silent mirrors leave room for the others in the first round");
});

Deno.test("relaxMirrorsAuto() adds 3 to max_score and 100 ms to the timeout, as flexo does", () => {
  const relaxed = relaxMirrorsAuto(settings({ max_score: 2.5, timeout: 350 }));
  assert.equal(relaxed.max_score, 5.5);
  assert.equal(relaxed.timeout, 450);
  assert.equal(relaxed.num_mirrors, 8);
});

Deno.test("rankMirrorsByLatency() relaxes max_score when no mirror qualifies", async () => {
  await using mirrors = await latencyMirrors();
  const mirror = await mirrors.start();
  const warnings: string[] = [];
  const { results, relaxations } = await rankMirrorsByLatency(
    [entry(mirror.url, 7)],
    settings({ max_score: 2 }),
    { log: { warn: (m) => warnings.push(m) } },
  );
  assert.deepEqual(results.map((r) => r.url), [mirror.url]);
  assert.equal(relaxations, 2); // 2 -> 5 -> 8
  assert.equal(warnings.length, 2);
  assert.match(warnings[1], /max_score = 8 and timeout = 1200 ms/);
});

Deno.test("rankMirrorsByLatency() relaxes the timeout when every mirror is too slow", async () => {
  await using mirrors = await latencyMirrors();
  const mirror = await mirrors.start({ delayMs: 170 });
  // Timeouts 20, 120, 220 ms: the third attempt passes.
  const { results, relaxations } = await rankMirrorsByLatency(
    [entry(mirror.url, 1)],
    settings({ timeout: 20 }),
  );
  assert.deepEqual(results.map((r) => r.url), [mirror.url]);
  assert.equal(relaxations, 2);
});

Deno.test("rankMirrorsByLatency() gives up after 3 relaxations and skips lagging mirrors", async () => {
  await using mirrors = await latencyMirrors();
  const broken = await mirrors.start({ status: 404 });
  const lagging = await mirrors.start();
  const { results, relaxations } = await rankMirrorsByLatency(
    [entry(broken.url, 1), entry(lagging.url, 1, { delay: 200_000 })],
    settings(),
  );
  assert.deepEqual(results, []);
  assert.equal(relaxations, 3);
  assert.equal(broken.requests.length, 4);
  assert.equal(lagging.requests.length, 0);
});
