import nodeAssert from "node:assert/strict";
import { waitFor } from "../helpers/wait.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { fakeFetch, gatedFetch, rangeHead, testBytes } from "../helpers/fake_fetch.ts";
import { testApp } from "../helpers/test_app.ts";
import { standInStatusSource } from "../helpers/status_source.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import type { FlexoApp } from "../../src/app/app.ts";
import { MirrorPool, type MirrorStats } from "../../src/mirrors/mirrors.ts";
import { resultLabel } from "../../src/status/metrics.ts";
import { Stats } from "../../src/status/stats.ts";
import { statusRoutes } from "../../src/status/status_routes.ts";
import type { StatusSource } from "../../src/status/status_source.ts";
import {
  LAST_FETCHED_SHOWN,
  SpeedMeter,
  type StatusReport,
  statusReport,
} from "../../src/status/status_report.ts";

const A = "http://mirror-a.test/";
const PKG = "/extra/os/x86_64/big-1:2.0-1-x86_64.pkg.tar.zst";
const SIZE = 2 * 1024 * 1024;

/** One sample line of the text format. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict reader of the Prometheus text format 0.0.4: every line must be `# HELP name text`,
 * `# TYPE name type`, an empty line, or `name{label="value",...} number`; label values must use only the
 * escapes \\ \" \n; every sample needs a TYPE line before it.
 */
function parseMetrics(
  text: string,
): { samples: Sample[]; types: Map<string, string>; help: Map<string, string> } {
  assert(text.endsWith("\n"), "the exposition must end with a line feed");
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const name = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  const lines = text.slice(0, -1).split("\n");
  for (const [i, line] of lines.entries()) {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    if (line === "") continue;
    let m = line.match(new RegExp(`^# HELP (${name}) (.*)$`));
    if (m) {
      assert(!help.has(m[1]), `${where}: second HELP for ${m[1]}`);
      help.set(m[1], m[2]);
      continue;
    }
    m = line.match(new RegExp(`^# TYPE (${name}) (counter|gauge|histogram|summary|untyped)$`));
    if (m) {
      assert(!types.has(m[1]), `${where}: second TYPE for ${m[1]}`);
      types.set(m[1], m[2]);
      continue;
    }
    m = line.match(new RegExp(`^(${name})(?:\\{(.*)\\})? (\\S+)$`));
    assert(m, `${where}: neither HELP, TYPE nor a sample`);
    assert(types.has(m[1]), `${where}: sample before its TYPE line`);
    const labels: Record<string, string> = {};
    let rest = m[2] ?? "";
    while (rest !== "") {
      const label = rest.match(/^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/);
      assert(label, `${where}: bad label set at ${JSON.stringify(rest)}`);
      labels[label[1]] = label[2].replace(/\\(.)/g, (_, ch) => (ch === "n" ? "\n" : ch));
      rest = rest.slice(label[0].length);
    }
    const value = Number(m[3]);
    assert(!Number.isNaN(value) || m[3] === "NaN", `${where}: value is not a number`);
    samples.push({ name: m[1], labels, value });
  }
  return { samples, types, help };
}

function sampleValue(
  samples: Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return samples.find((s) =>
    s.name === name && Object.entries(labels).every(([key, value]) => s.labels[key] === value)
  )?.value;
}

async function status(app: { get(path: string): Promise<Response> }): Promise<StatusReport> {
  const response = await app.get("/status");
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("cache-control"), "no-store");
  return await response.json();
}

async function metrics(app: { get(path: string): Promise<Response> }) {
  const response = await app.get("/metrics");
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  return parseMetrics(await response.text());
}

Deno.test("statusRoutes() report a download in progress and count its bytes afterwards", async () => {
  const data = testBytes(SIZE, 7);
  // The mirror sends what the test pushes, and the app's clock moves when the test says.
  const { fetch, gates } = gatedFetch((req) => rangeHead(SIZE, req));
  // One clock for the app and its transfers' watchdogs: nothing runs in real time (a watchdog looking in real
  // time would see the second the test moves the clock as a second without data).
  const timers = new FakeTimers();
  timers.advance(1_000_000);
  const usage = { bytes: 1234, files: 5, complete: true };
  const app = await testApp([A], { fetch, cacheUsage: () => usage, now: timers.now, timers });
  try {
    const client = app.get(PKG).then((r) => r.arrayBuffer());
    await waitFor("the mirror to be asked", () => gates.length === 1);
    const download = app.downloads.list()[0];
    /** Sends the file up to `end` and waits until the download has it on disk. */
    const sendUpTo = async (end: number) => {
      gates[0].push(data.slice(download.written, end));
      while (download.written < end) await download.changed();
    };
    await sendUpTo(SIZE / 4);
    const early = (await status(app)).downloads[0];
    assertEquals(early.path, PKG.slice(1));
    assertEquals(early.mirror, A);
    assertEquals(early.total, SIZE);
    assertEquals(early.state, "streaming");
    assertEquals(early.written, SIZE / 4);
    assertEquals(early.bytesPerSecond, null, "no speed from a single look");

    const midway = await metrics(app);
    assertEquals(sampleValue(midway.samples, "flexo_downloads_in_flight"), 1);
    assertEquals(sampleValue(midway.samples, "flexo_cache_size_bytes"), 1234);
    assertEquals(sampleValue(midway.samples, "flexo_cache_files"), 5);

    // A second later, another quarter of the file is on disk.
    timers.advance(1_000);
    await sendUpTo(SIZE / 2);
    const later = (await status(app)).downloads[0];
    assertEquals(later.written, SIZE / 2);
    // Measured from the download's start (the page shows a speed at the first look): half the file in a second.
    assertEquals(later.bytesPerSecond, SIZE / 2);

    gates[0].push(data.slice(SIZE / 2));
    gates[0].end();
    assertEquals((await client).byteLength, SIZE);
    await app.downloads.idle();
    const hit = await app.get(PKG);
    assertEquals((await hit.arrayBuffer()).byteLength, SIZE);

    const after = await status(app);
    assertEquals(after.downloads, []);
    assertEquals(after.requests.byResult["CACHE MISS"], 1);
    assertEquals(after.requests.byResult["CACHE HIT"], 1);
    assertEquals(after.requests.total, 2);
    assertEquals(after.requests.hitRatio, 0.5);
    assertEquals(after.served, { fromCacheBytes: SIZE, fromUpstreamBytes: SIZE });
    assertEquals(after.mirrors.ranking[0].url, A);
    assertEquals(after.mirrors.ranking[0].successes, 1);
    assertEquals(after.mirrors.ranking[0].bytes, SIZE);
    assertEquals(after.cache, { directory: app.store.root, bytes: 1234, files: 5, complete: true });

    const done = await metrics(app);
    assertEquals(sampleValue(done.samples, "flexo_downloads_in_flight"), 0);
    assertEquals(sampleValue(done.samples, "flexo_requests_total", { result: "cache_miss" }), 1);
    assertEquals(sampleValue(done.samples, "flexo_requests_total", { result: "cache_hit" }), 1);
    assertEquals(sampleValue(done.samples, "flexo_served_bytes_total", { origin: "cache" }), SIZE);
    assertEquals(sampleValue(done.samples, "flexo_served_bytes_total", { origin: "upstream" }), SIZE);
    assertEquals(sampleValue(done.samples, "flexo_cache_hit_ratio"), 0.5);
    // A HEAD of the cached file (a monitoring probe) is a request, not a file request of the ratio.
    await (await app.get(PKG, { method: "HEAD" })).body?.cancel();
    const probed = await status(app);
    assertEquals([probed.requests.total, probed.requests.head, probed.requests.lookups], [3, 1, 2]);
    assertEquals(probed.requests.hitRatio, 0.5);
    assertEquals(sampleValue((await metrics(app)).samples, "flexo_cache_hit_ratio"), 0.5);
    const mirror = { pool: "official", mirror: A };
    assertEquals(sampleValue(done.samples, "flexo_upstream_received_bytes_total", mirror), SIZE);
    assertEquals(sampleValue(done.samples, "flexo_upstream_transfers_total", mirror), 1);
    assertEquals(sampleValue(done.samples, "flexo_upstream_errors_total", mirror), 0);
  } finally {
    // A failed assertion must not leave the download waiting for bytes that never come (cleanup waits for it).
    gates[0]?.fail(new Error("the test ended"));
    await app.cleanup();
  }
});

Deno.test("GET /metrics is valid text format with HELP and TYPE for every metric and escaped labels", async () => {
  const pool = new MirrorPool();
  const odd = 'http://odd.test/a"b\\c\nd/';
  pool.setMirrors([odd], "predefined");
  pool.recordFailure(odd, "connection refused");
  const { fetch } = fakeFetch(() => ({ status: 404 }));
  // The configuration refuses such a URL; the pool given holds it, as one read from a mirror list could.
  const app = await testApp(["http://plain.test/"], {
    fetch,
    pool,
    config: { custom_repo: [{ name: "arm", url: "http://arm.test/" }] },
  });
  try {
    await (await app.get("/core/os/x86_64/nothing-1-1-x86_64.pkg.tar.zst")).body?.cancel();
    const { samples, types, help } = await metrics(app);
    for (const [name, type] of types) {
      assert(help.get(name)!.length > 10, `${name} needs a helpful HELP line`);
      assert(name.startsWith("flexo_"), `${name} should be in the flexo_ namespace`);
      if (type === "counter") assert(name.endsWith("_total"), `counter ${name} should end in _total`);
    }
    for (
      const name of [
        "flexo_requests_total",
        "flexo_served_bytes_total",
        "flexo_upstream_received_bytes_total",
        "flexo_upstream_errors_total",
        "flexo_downloads_in_flight",
        "flexo_retention_removed_files_total",
        "flexo_retention_freed_bytes_total",
        "flexo_integrity_rejections_total",
        "flexo_uptime_seconds",
        "flexo_build_info",
      ]
    ) {
      assert(types.has(name), `${name} is missing`);
    }
    // Without a cache usage source there is nothing to say about the cache size.
    assert(!types.has("flexo_cache_size_bytes"));
    assertEquals(sampleValue(samples, "flexo_upstream_errors_total", { pool: "official", mirror: odd }), 1);
    assertEquals(
      sampleValue(samples, "flexo_upstream_errors_total", {
        pool: "custom_repo/arm",
        mirror: "http://arm.test/",
      }),
      0,
    );
    assertEquals(sampleValue(samples, "flexo_requests_total", { result: "not_found" }), 1);
    const build = samples.find((s) => s.name === "flexo_build_info")!;
    assertEquals(build.value, 1);
    assert(/^\d+\.\d+\.\d+/.test(build.labels.version), `version label ${build.labels.version}`);
  } finally {
    await app.cleanup();
  }
});

Deno.test("resultLabel() turns the proxy's result words into label values", () => {
  assertEquals(resultLabel("CACHE HIT"), "cache_hit");
  assertEquals(resultLabel("NOT FOUND"), "not_found");
  assertEquals(resultLabel("JOINED DOWNLOAD"), "joined_download");
});

Deno.test("GET / serves the self-contained page with a strict policy and the report embedded safely", async () => {
  const app = await testApp([A], { fetch: fakeFetch(() => "refuse").fetch });
  try {
    app.stats.recordError(Date.now(), "GET /</script><script>alert(1)</script>: refused");
    const response = await app.get("/");
    assertEquals(response.status, 200);
    assertEquals(response.headers.get("content-type"), "text/html; charset=UTF-8");
    const policy = response.headers.get("content-security-policy")!;
    assert(policy.includes("default-src 'none'"), policy);
    const nonce = policy.match(/'nonce-([0-9a-f]+)'/)![1];
    const html = await response.text();
    assert(!html.includes("<script>alert"), "an error message must not be able to open a script element");
    assert(html.includes("\\u003c/script>\\u003cscript>alert(1)"), "the message is kept, escaped");
    // No external assets: every script and style is inline and carries the nonce; nothing is loaded from a URL.
    assert(!/\b(src|href)=["']?(https?:)?\/\//i.test(html), "the page must not load anything from elsewhere");
    for (const tag of html.matchAll(/<(script|style)\b[^>]*>/g)) {
      assert(tag[0].includes(`nonce="${nonce}"`) || tag[0].includes('type="application/json"'), tag[0]);
    }
    const initial = html.match(/<script id="initial-status" type="application\/json">(.*?)<\/script>/s)![1];
    const report: StatusReport = JSON.parse(initial);
    assertEquals(report.recentErrors[0].message, "GET /</script><script>alert(1)</script>: refused");

    const head = await app.get("/", { method: "HEAD" });
    assertEquals(head.status, 200);
    assertEquals(await head.text(), "");
    // A second page gets another nonce.
    const again = await app.get("/");
    await again.body?.cancel();
    assert(!again.headers.get("content-security-policy")!.includes(nonce));
  } finally {
    await app.cleanup();
  }
});

Deno.test("GET /status lists recent errors newest first and the custom repositories' mirrors", async () => {
  const app = await testApp([A], {
    fetch: fakeFetch(() => "refuse").fetch,
    config: { custom_repo: [{ name: "arm", url: "http://arm.test/" }] },
  });
  try {
    const failed = await app.get(PKG);
    assertEquals(failed.status, 502);
    await failed.body?.cancel();
    app.stats.recordError(Date.now(), "second");
    const report = await status(app);
    assertEquals(report.recentErrors.length, 2);
    assertEquals(report.recentErrors[0].message, "second");
    assert(report.recentErrors[1].message.includes("big-1:2.0-1"), report.recentErrors[1].message);
    assertEquals(report.customRepos.map((r) => [r.name, r.ranking.map((m) => m.url)]), [
      ["arm", ["http://arm.test/"]],
    ]);
    assertEquals(report.mirrors.ranking[0].penalty, 0, "a failure of every mirror penalises none of them");
    assertEquals(report.mirrors.ranking[0].failures, 1, "but it counts, with its error");
    assert(report.mirrors.ranking[0].lastError !== undefined);
    assertEquals(report.cache.bytes, null, "without a cache usage source the size is unknown");
    assertEquals(report.requests.byResult["UPSTREAM ERROR"], 1);
  } finally {
    await app.cleanup();
  }
});

Deno.test("statusRoutes() read only the parts of StatusSource: a stand-in without an app will do", async () => {
  // app.ts's FlexoApp is a StatusSource as it is (checked by the type checker here, without a cast).
  const fits = (app: FlexoApp): StatusSource => app;
  assert(typeof fits === "function");
  const stats = new Stats();
  stats.recordRequest("CACHE HIT", 10);
  const source = standInStatusSource({ stats, startedAt: 1_000 });
  const routes = statusRoutes(source, { now: () => 61_000 });
  const report = await status({ get: async (path) => await routes.request(path) });
  assertEquals(report.mirrors, { source: "stand-in", ranking: [], overtakes: { probes: 0, overtaken: 0 } });
  assertEquals(report.cache, { directory: "/nowhere", bytes: null, files: null, complete: false });
  assertEquals(report.uptimeSeconds, 60);
  assertEquals(report.requests.byResult, { "CACHE HIT": 1 });
  const scraped = await metrics({ get: async (path) => await routes.request(path) });
  assertEquals(sampleValue(scraped.samples, "flexo_requests_total", { result: "cache_hit" }), 1);
  assertEquals(sampleValue(scraped.samples, "flexo_uptime_seconds"), 60);
});

Deno.test("SpeedMeter.sample() measures from the first look, then over the last few seconds", () => {
  const meter = new SpeedMeter({ windowMs: 5_000 });
  const download = { startedAt: 1_000, resumedFrom: 0, written: 0 };
  const other = { startedAt: 1_000, resumedFrom: 0, written: 30_000_000 };
  const look = (written: number, now: number) => {
    download.written = written;
    return meter.sample(download, now);
  };
  assertEquals(look(100, 1_300), null, "in its first half second: too short to measure");
  // A page opened 4 s into a 3 MB/s transfer shows its speed at the first look.
  assertEquals(look(12_000_000, 5_000), 3_000_000);
  assertEquals(look(15_000_000, 6_000), 3_000_000, "since the start, while the window is not full");
  assertEquals(look(30_000_000, 11_000), 3_000_000, "over the last 5 s");
  // The window moves: older samples are dropped, so a stall shows as a falling speed.
  assertEquals(look(30_000_000, 17_000), 0);
  assertEquals(meter.sample(other, 17_000), 30_000_000 / 16, "each download is measured on its own");
  // A resumed download counts only the bytes it fetched itself.
  const resumed = { startedAt: 0, resumedFrom: 8_000_000, written: 9_000_000 };
  assertEquals(meter.sample(resumed, 1_000), 1_000_000);
});

Deno.test("statusReport() shows a mirror's running downloads as its throughput until a transfer ends", () => {
  const mirror = { url: A, rank: 0, throughputBps: undefined } as unknown as MirrorStats;
  const measured = { ...mirror, url: "http://b.test/", throughputBps: 123 } as MirrorStats;
  const running = {
    segments: ["core", "x"],
    mirror: A,
    written: 2_000_000,
    total: 9_000_000,
    state: "receiving",
  };
  const report = statusReport(
    standInStatusSource({
      pool: {
        source: "test",
        snapshot: () => [mirror, measured],
        hedgeBudget: { hedges: 0, wins: 0 },
        overtakes: { probes: 0, overtaken: 0 },
      },
      downloads: { list: () => [{ ...running, startedAt: 0, resumedFrom: 0 }] },
    } as unknown as Partial<StatusSource>),
    { now: () => 2_000, speeds: new SpeedMeter() },
  );
  assertEquals(report.downloads[0].bytesPerSecond, 1_000_000);
  assertEquals(report.mirrors.ranking.map((m) => m.throughputBps), [1_000_000, 123]);
});

Deno.test("the test's metrics reader refuses malformed lines (so the format test can fail)", () => {
  assertEquals(parseMetrics('# TYPE a_total counter\na_total{x="1"} 2\n').samples, [
    { name: "a_total", labels: { x: "1" }, value: 2 },
  ]);
  for (
    const bad of [
      "a_total 1\n", // no TYPE
      "# TYPE a gauge\na 1", // no final line feed
      '# TYPE a gauge\na{x="unterminated} 1\n',
      '# TYPE a gauge\na{x="bad \\t escape"} 1\n',
      "# TYPE a gauge\na one\n",
      "# COMMENT a b\n", // valid for Prometheus, but flexo writes no other comments
    ]
  ) {
    nodeAssert.throws(() => parseMetrics(bad), Error, JSON.stringify(bad));
  }
});

Deno.test("GET /metrics counts the log lines dropped because the log's output could not keep up", async () => {
  const source = standInStatusSource();
  let dropped = 0;
  const routes = statusRoutes(source, { now: () => 0, logDropped: () => dropped });
  const get = async (path: string) => await routes.request(path);
  assertEquals(sampleValue((await metrics({ get })).samples, "flexo_log_lines_dropped_total"), 0);
  dropped = 1234;
  assertEquals(sampleValue((await metrics({ get })).samples, "flexo_log_lines_dropped_total"), 1234);
});

Deno.test("GET /status and /metrics name the node and count the files taken from cache peers and the lookups they answered 508", async () => {
  const stats = new Stats();
  const source = standInStatusSource({
    stats,
    nodeName: "site-1:7878",
    config: { cache_peers: ["http://10.0.0.2:7878/", "http://user:secret@10.0.0.3:7878/"] },
  });
  const routes = statusRoutes(source, { now: () => 0 });
  const get = async (path: string) => await routes.request(path);
  assertEquals((await status({ get })).node, {
    name: "site-1:7878",
    cachePeers: ["http://10.0.0.2:7878/", "http://user:***@10.0.0.3:7878/"],
    peerHits: 0,
    peerLoops: 0,
  });
  stats.peerHits = 3;
  stats.peerLoops = 2;
  assertEquals((await status({ get })).node.peerHits, 3);
  assertEquals((await status({ get })).node.peerLoops, 2);
  const { samples } = await metrics({ get });
  assertEquals(sampleValue(samples, "flexo_peer_hits_total"), 3);
  assertEquals(sampleValue(samples, "flexo_peer_loops_total"), 2);
  assertEquals(samples.find((s) => s.name === "flexo_build_info")?.labels.node, "site-1:7878");
});

Deno.test("statusReport() and GET /metrics count the connections refused at max_connections", async () => {
  const stats = new Stats();
  const routes = statusRoutes(standInStatusSource({ stats }), { now: () => 0 });
  const get = async (path: string) => await routes.request(path);
  assertEquals((await status({ get })).connections, { refused: 0 });
  stats.refusedConnections = 7;
  assertEquals((await status({ get })).connections, { refused: 7 });
  assertEquals(sampleValue((await metrics({ get })).samples, "flexo_connections_refused_total"), 7);
});

/** The metric names of docs/operations.md's metrics table (its first column; `flexo_` is left out there). */
async function documentedMetrics(): Promise<string[]> {
  const doc = await Deno.readTextFile(new URL("../../docs/operations.md", import.meta.url));
  const table = doc.slice(doc.indexOf("| metric "));
  const rows = table.slice(0, table.search(/\n(?!\|)/)).split("\n").slice(2);
  assert(rows.length > 10, `no metrics table in docs/operations.md:\n${rows.join("\n")}`);
  return rows.flatMap((row) => [...row.split("|")[1].matchAll(/`([a-z_]+)`/g)].map((m) => `flexo_${m[1]}`));
}

Deno.test("GET /metrics exposes exactly the metrics that docs/operations.md lists", async () => {
  const app = await testApp([A], { cacheUsage: () => ({ bytes: 1, files: 1, complete: true }) });
  try {
    const exposed = [...(await metrics(app)).types.keys()].sort();
    assertEquals((await documentedMetrics()).sort(), exposed);
  } finally {
    await app.cleanup();
  }
});

Deno.test("statusReport() lists a bounded number of the files the last prefetch run fetched, and how many it fetched", () => {
  // A run of the default 5 GiB budget fetches thousands of packages and signatures; the page asks every 2 s.
  const lastFetched = Array.from(
    { length: 5000 },
    (_, i) => `extra/os/x86_64/package-${i}-1.0-1-x86_64.pkg.tar.zst`,
  );
  const prefetch = () => ({ enabled: true, running: false, runs: 1, files: 5000, bytes: 1, lastFetched });
  const report = statusReport(standInStatusSource(), { now: () => 0, prefetch });
  assertEquals(report.prefetch?.lastFetchedCount, 5000);
  assertEquals(report.prefetch?.lastFetched, lastFetched.slice(0, LAST_FETCHED_SHOWN));
  assert(JSON.stringify(report).length < 64 * 1024, `${JSON.stringify(report).length} bytes of JSON`);
});

Deno.test("GET /metrics counts each pool's overtake probes and the transfers they overtook", async () => {
  const counts = (probes: number, overtaken: number) => ({
    snapshot: () => [],
    hedgeBudget: { hedges: 0, wins: 0 },
    overtakes: { probes, overtaken },
  });
  const source = standInStatusSource({
    pool: { source: "test", ...counts(5, 2) },
    customPools: new Map([["arm", counts(3, 1)]]),
  });
  const routes = statusRoutes(source, { now: () => 0 });
  const { samples } = await metrics({ get: async (path: string) => await routes.request(path) });
  const value = (name: string, pool: string) => sampleValue(samples, name, { pool });
  assertEquals(value("flexo_overtake_probes_total", "official"), 5);
  assertEquals(value("flexo_overtaken_transfers_total", "official"), 2);
  assertEquals(value("flexo_overtake_probes_total", "custom_repo/arm"), 3);
  assertEquals(value("flexo_overtaken_transfers_total", "custom_repo/arm"), 1);
});
