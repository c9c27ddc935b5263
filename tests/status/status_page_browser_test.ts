/**
 * The status page in a real headless browser (Debian's chromium driven by playwright-core), served by a real
 * server while a slow download runs. Skips with a message when chromium or playwright-core is not available.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { fakeFetch, serveBytes, testBytes } from "../helpers/fake_fetch.ts";
import { testConfig } from "../helpers/test_app.ts";
import { createApp } from "../../src/app/app.ts";
import { CacheUsage } from "../../src/cache/cache_usage.ts";
import { startServer } from "../../src/server/server.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { FOLDER, publish, startPrefetchOrigin, TOOL_NEW, TOOL_OLD } from "../helpers/prefetch_repo.ts";
import { makeRepo } from "../helpers/make_repo.ts";
import { CHROMIUM, CHROMIUM_ARGS, loadPlaywright, type Playwright, until } from "../helpers/browser.ts";

const playwright = await loadPlaywright();
const skipReason = typeof playwright === "string" ? playwright : undefined;
if (skipReason) console.log(`skipped: status page browser test: ${skipReason}`);

const A = "http://mirror-a.test/";
const B = "http://mirror-b.test/";
/** A cache peer that has only PEER_PKG (and answers 504, as a peer does, for anything else). */
const PEER = "http://peer.test/";
const PEER_PKG = "/extra/os/x86_64/from-peer-1-1-any.pkg.tar.zst";
const PKG = "/extra/os/x86_64/linux-firmware-20250101-1-any.pkg.tar.zst";
const SIZE = 3 * 1024 * 1024;

Deno.test({
  name:
    "status page shows a download in progress with its speed at the first look, the mirrors, a 24 h chart, " +
    "the node's name and peer hits, and numbers that update by themselves",
  ignore: skipReason !== undefined,
  // playwright keeps a pipe to the browser and timers of its own until the browser is closed.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { chromium } = playwright as Playwright;
    const dir = await Deno.makeTempDir({ prefix: "flexo-page-" });
    const shots = await Deno.makeTempDir({ prefix: "flexo-screenshots-" });
    const data = testBytes(SIZE, 3);
    // Mirror A refuses every package; B trickles one: 96 chunks of 32 KiB, 60 ms apart (about 6 s).
    const fromPeer = testBytes(5000, 4);
    const { fetch } = fakeFetch((url, req) => {
      if (url.startsWith(PEER)) {
        return url === PEER + PEER_PKG.slice(1) ? serveBytes(fromPeer, req) : { status: 504 };
      }
      // No databases: this node of a cluster (it has a peer) asks for one before it stores a package, in vain.
      if (url.endsWith(".db")) return { status: 404 };
      if (url.startsWith(A) || url.includes("broken")) return "refuse";
      return serveBytes(data, req, { chunkSize: 32 * 1024, chunkDelayMs: 60 });
    });
    await Deno.writeFile(join(dir, "old-1-1-any.pkg.tar.zst"), new Uint8Array(123_456));
    const usage = new CacheUsage(dir);
    await usage.start();
    const app = createApp(testConfig(dir, [A, B], { node_name: "site-1:7878", cache_peers: [PEER] }), {
      fetch,
      cacheUsage: () => usage.snapshot(),
      onDownloadComplete: (d) => d.file && usage.added(d.file.size, { path: d.file.path }),
      limits: { connectTimeoutMs: 2000, lowSpeedLimit: 1, lowSpeedTimeMs: 2000, lastResortStallMs: 4000 },
    });
    const server = startServer(app, { hostnames: ["127.0.0.1"], port: 0 });
    const origin = `http://127.0.0.1:${server.addresses[0].port}`;
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      // Something to show in the error list and the request counts.
      const broken = await fetch_(`${origin}/extra/os/x86_64/broken-1-1-any.pkg.tar.zst`);
      assertEquals(broken.status, 502);
      await broken.body?.cancel();

      const client = fetch_(`${origin}${PKG}`).then((r) => r.arrayBuffer());
      // The page is opened when the download has run for most of a second (a dozen 60 ms chunks).
      await until(() => Promise.resolve((app.downloads.list()[0]?.written ?? 0) >= 12 * 32 * 1024));
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const outside: string[] = [];
      const problems: string[] = [];
      page.on("request", (r) => {
        if (!r.url().startsWith(origin)) outside.push(r.url());
      });
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(m.text());
      });
      page.on("pageerror", (e) => problems.push(e.message));
      await page.goto(`${origin}/?refresh=500`);

      // The first look already has speeds: the download's, and mirror B's throughput from it (no transfer of B
      // has ended yet).
      const initial = JSON.parse((await page.locator("#initial-status").textContent())!);
      assert(initial.downloads[0].bytesPerSecond > 0, JSON.stringify(initial.downloads));
      const initialB = initial.mirrors.ranking.find((m: { url: string }) => m.url === B);
      assert(initialB.throughputBps > 0 && initialB.successes === 0, JSON.stringify(initialB));
      const rowB = page.locator("#mirrors tbody tr", { hasText: B });
      assert(/\d.*\/s$/.test((await rowB.locator("td").nth(4).textContent())!), "B's throughput is shown");
      // The chart of the last 24 hours: 288 five-minute bars, drawn in the page itself.
      assertEquals(await page.locator("#traffic svg").getAttribute("data-buckets"), "288");
      assert((await page.locator("#traffic-note").textContent())!.includes("requests/min"));

      // Every mirror failed the broken package and none has delivered yet: the outage banner says so.
      assert(await page.locator("#outage").isVisible(), "the outage banner shows");
      assert((await page.locator("#outage").textContent())!.includes("Every mirror failed"));
      const row = page.locator("#downloads tr[data-path]");
      await row.first().waitFor({ timeout: 5000 });
      assertEquals(await row.count(), 1);
      assertEquals(await row.locator("td.path").textContent(), PKG.slice(1));
      const bar = row.locator('[role="progressbar"]');
      assertEquals(await bar.getAttribute("aria-valuemax"), String(SIZE));
      const first = Number(await bar.getAttribute("aria-valuenow"));
      assert(first >= 0 && first < SIZE, `progress ${first} of ${SIZE}`);

      // The page refreshes itself: after two more refreshes the progress has moved, with a speed and a mirror.
      const refreshes = Number(await page.locator("body").getAttribute("data-refreshes"));
      await until(async () =>
        Number(await page.locator("body").getAttribute("data-refreshes")) >= refreshes + 2
      );
      const second = Number(await bar.getAttribute("aria-valuenow"));
      assert(second > first, `progress should grow without a reload: ${first} then ${second}`);
      assert(second < SIZE, "the download should still be running for the screenshot");
      assert(/\d.*\/s$/.test((await row.locator("td").nth(2).textContent())!), "a speed is shown");
      assertEquals(await row.locator("td.url").textContent(), B);
      const width = (await bar.locator("span").getAttribute("style"))?.match(/width: ([\d.]+)%/)?.[1];
      assert(width !== undefined && Number(width) > 0, `bar width ${width}`);
      assertEquals(await page.locator("#mirrors tbody tr").count(), 2);
      assert((await page.locator("#errors li").first().textContent())!.includes("broken-1-1"));
      assertEquals(await page.locator("#cache-size").textContent(), "121 KiB");
      assertEquals(await page.locator("#cache-files").textContent(), "1 file");
      assertEquals(await page.locator("#node-name").textContent(), "site-1:7878");
      assertEquals(await page.locator("#peer-hits").textContent(), "0 files");
      assert((await page.locator("#peer-note").textContent())!.includes("1 peer"));
      const shot = join(shots, "status-during-download.png");
      await page.screenshot({ path: shot, fullPage: true });
      assert((await Deno.stat(shot)).size > 10_000, "the screenshot should not be empty");
      const keep = Deno.env.get("FLEXO_KEEP_SCREENSHOTS") !== undefined;
      console.log(keep ? `screenshot: ${shot}` : "screenshots taken (FLEXO_KEEP_SCREENSHOTS=1 keeps them)");

      assertEquals((await client).byteLength, SIZE);
      await page.locator("#downloads td.empty").waitFor({ timeout: 5000 });
      // The committed file is added to the cache size; mirror A's refusal is on record now.
      await until(async () => (await page.locator("#cache-files").textContent()) === "2 files");
      assertEquals(await page.locator("#cache-size").textContent(), "3.1 MiB");
      await page.screenshot({ path: join(shots, "status-after-download.png"), fullPage: true });
      // The chart has the download's bytes from upstream in its newest bar (or the one before, if a
      // five-minute boundary passed during the test), and the request line.
      await until(async () =>
        (await page.locator("#traffic-note").textContent())!.startsWith("0 B from the cache, 3.0 MiB")
      );
      const upstreamBars = page.locator("#traffic rect.upstream");
      assert(await upstreamBars.count() >= 1, "a bar of bytes from upstream");
      assert(Number(await upstreamBars.last().getAttribute("data-i")) >= 286, "in the newest bars");
      assert(Number(await upstreamBars.last().getAttribute("height")) > 0);
      assertEquals(await page.locator("#traffic polyline.rate").count(), 1);
      assert(
        /2 requests; peak 0\.[24] requests\/min/.test((await page.locator("#traffic-note").textContent())!),
      );
      const [mirrorA, mirrorB] = [0, 1].map((i) => page.locator("#mirrors tbody tr").nth(i));
      assertEquals(await mirrorB.locator("td").nth(6).textContent(), "1", "one transfer from B");
      // A refused the broken package (the outage: counted though not penalised) and the big one (penalised).
      assertEquals(await mirrorA.locator("td").nth(7).textContent(), "2", "two failures of A");
      assertEquals(await mirrorB.locator("td").nth(7).textContent(), "1", "B's failure in the outage counts");
      assertEquals(await page.locator("#outage").isVisible(), false, "B delivered: no outage any more");
      assertEquals(await mirrorA.locator(".tag").textContent(), "penalised");
      assert((await mirrorA.locator(".error-text").textContent())!.includes("connection refused"));
      // A miss that the cache peer has: the page counts it as taken from a peer.
      const peerFile = await fetch_(`${origin}${PEER_PKG}`);
      assertEquals(new Uint8Array(await peerFile.arrayBuffer()), fromPeer);
      await until(async () => (await page.locator("#peer-hits").textContent()) === "1 file");
      assertEquals(outside, [], "the page must load nothing from elsewhere");
      assertEquals(problems, [], "no script errors or policy violations");
    } finally {
      await browser.close();
      await server.shutdown({ graceMs: 1000 });
      await app.downloads.idle();
      await Deno.remove(dir, { recursive: true });
      if (Deno.env.get("FLEXO_KEEP_SCREENSHOTS") === undefined) await Deno.remove(shots, { recursive: true });
    }
  },
});

Deno.test({
  name: "status page shows prefetch: its state, last and next run, runs, files, bytes and the files fetched",
  ignore: skipReason !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { chromium } = playwright as Playwright;
    await using origin = await startPrefetchOrigin();
    const timers = new FakeTimers();
    const app = createApp(testConfig(origin.cacheDir, [origin.mirror.url], { prefetch: { enabled: true } }), {
      prefetchTimers: timers,
    });
    const server = startServer(app, { hostnames: ["127.0.0.1"], port: 0 });
    const url = `http://127.0.0.1:${server.addresses[0].port}`;
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      await app.prefetcher.start();
      await (await fetch_(`${url}/${FOLDER}/${TOOL_OLD}`)).body?.cancel();
      await publish(origin.repo);
      const report = await app.prefetcher.run();
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on("pageerror", (e) => problems.push(e.message));
      await page.goto(`${url}/?refresh=500`);
      const value = (key: string) => page.locator(`#prefetch tr[data-key="${key}"] td.num`).textContent();
      assertEquals(await value("state"), "on");
      assert(/^\d+ s ago$/.test((await value("last-run"))!), `last run: ${await value("last-run")}`);
      // The interval is the default 6 h, counted from start(), just before.
      assert(
        /^in (5 h 59|6 h 0) min$/.test((await value("next-run"))!),
        `next run: ${await value("next-run")}`,
      );
      assertEquals(await value("runs"), "1");
      assertEquals(await value("files"), "1");
      assert(report.bytes > 1024 && report.bytes < 100 * 1024, `${report.bytes} bytes`);
      assertEquals(await value("bytes"), `${(report.bytes / 1024).toFixed(1)} KiB`);
      assertEquals(await page.locator("#prefetch-files li").allTextContents(), [
        "Last run fetched:",
        `${FOLDER}/${TOOL_NEW}`,
      ]);
      // A second run, with nothing new to fetch: the page shows it without a reload.
      await app.prefetcher.run();
      await until(async () => (await value("runs")) === "2");
      assertEquals(await value("files"), "1");
      assertEquals(await page.locator("#prefetch-files li").allTextContents(), [
        "The last run fetched nothing.",
      ]);
      assertEquals(problems, []);
    } finally {
      app.prefetcher.stop();
      await browser.close();
      await server.shutdown({ graceMs: 1000 });
      await app.downloads.idle();
    }
  },
});

Deno.test({
  name:
    "status page shows the 'serving cached databases' banner while every mirror is down, and hides it after",
  ignore: skipReason !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { chromium } = playwright as Playwright;
    const dir = await Deno.makeTempDir({ prefix: "flexo-page-" });
    const repo = await makeRepo(join(dir, "mirror"), {
      repo: "flexotest",
      packages: [{ name: "one", version: "1.0-1", size: 1000 }],
    });
    const db = await Deno.readFile(join(repo.osDir, "flexotest.db"));
    const mirrors = { up: true };
    const { fetch } = fakeFetch((_url, req) => mirrors.up ? serveBytes(db, req) : "refuse");
    const cache = join(dir, "cache");
    await Deno.mkdir(cache);
    const app = createApp(testConfig(cache, [A, B]), { fetch });
    const server = startServer(app, { hostnames: ["127.0.0.1"], port: 0 });
    const origin = `http://127.0.0.1:${server.addresses[0].port}`;
    const DB = `${origin}/flexotest/os/x86_64/flexotest.db`;
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      await (await fetch_(DB)).arrayBuffer();
      await app.downloads.idle();
      mirrors.up = false;
      const stale = await fetch_(DB);
      await stale.arrayBuffer();
      assertEquals(stale.headers.get("cache-status"), "flexo; hit; detail=stale");
      const page = await browser.newPage();
      await page.goto(`${origin}/?refresh=300`);
      const banner = page.locator("#outage");
      assert(await banner.isVisible(), "the banner shows");
      const text = (await banner.textContent())!;
      assert(text.includes("Mirrors unreachable since"), text);
      assert(text.includes("serving cached databases"), text);
      // A mirror answers again: the next refresh hides the banner without a reload.
      mirrors.up = true;
      await (await fetch_(DB)).arrayBuffer();
      await app.downloads.idle();
      await until(async () => !(await banner.isVisible()));
    } finally {
      await browser.close();
      await server.shutdown({ graceMs: 1000 });
      await app.downloads.idle();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The real fetch (the app's upstream fetch is the fake one). */
function fetch_(url: string): Promise<Response> {
  return globalThis.fetch(url);
}
