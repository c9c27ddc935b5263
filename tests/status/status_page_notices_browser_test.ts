/**
 * The counters an operator acts on, on the status page in a real headless browser (see ../helpers/browser.ts):
 * quiet while they are zero, then each in its place with its hint, without a reload. The page is served by
 * the status routes over a stand-in of the proxy whose counters the test sets.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { CHROMIUM, CHROMIUM_ARGS, loadPlaywright, type Playwright, until } from "../helpers/browser.ts";
import { standInStatusSource } from "../helpers/status_source.ts";
import { statusRoutes } from "../../src/status/status_routes.ts";
import { Stats } from "../../src/status/stats.ts";

const playwright = await loadPlaywright();
const skipReason = typeof playwright === "string" ? playwright : undefined;
if (skipReason) console.log(`skipped: status page notices browser test: ${skipReason}`);

const pool = () => ({
  snapshot: () => [],
  hedgeBudget: { hedges: 0, wins: 0 },
  overtakes: { probes: 0, overtaken: 0 },
});

Deno.test({
  name: "statusPage() does show refused connections and requests, peer loops, overtaking and HEAD requests " +
    "in their places once above zero, and nothing of them before",
  ignore: skipReason !== undefined,
  // playwright keeps a pipe to the browser and timers of its own until the browser is closed.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { chromium } = playwright as Playwright;
    const stats = new Stats();
    const official = pool(), arm = pool();
    const source = standInStatusSource({
      stats,
      nodeName: "site-1",
      pool: { source: "test", ...official },
      customPools: new Map([["arm", arm]]),
    });
    const routes = statusRoutes(source, { now: () => Date.now() });
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (request) => routes.fetch(request),
    );
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const problems: string[] = [];
      page.on("pageerror", (e) => problems.push(e.message));
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(m.text());
      });
      await page.goto(`http://127.0.0.1:${server.addr.port}/?refresh=300`);
      const refreshed = async () => {
        const seen = Number(await page.locator("body").getAttribute("data-refreshes"));
        await until(async () =>
          Number(await page.locator("body").getAttribute("data-refreshes")) >= seen + 1
        );
      };

      // Every counter at zero: no notice anywhere, and no HEAD count by the hit ratio.
      await refreshed();
      assertEquals(await page.locator("ul.notices li").count(), 0, "a quiet page while all is well");
      assertEquals(await page.locator("ul.notices:visible").count(), 0, "empty lists take no room");
      assert(!(await page.locator("#hit-note").textContent())!.includes("HEAD"));

      stats.refusedConnections = 7;
      stats.refusedRequest(403);
      stats.refusedRequest(403);
      stats.peerLoops = 2;
      official.overtakes.probes = 5;
      official.overtakes.overtaken = 2;
      arm.overtakes.probes = 1;
      stats.requests.set("CACHE HIT", 4);
      stats.headRequests.set("CACHE HIT", 3);
      await refreshed();

      const text = (selector: string) => page.locator(selector).textContent().then((t) => t ?? "");
      // Under "Requests by result": the connections refused at max_connections and the 403s, with hints.
      const requests = page.locator("#request-notices li");
      assertEquals(await requests.evaluateAll((items) => items.map((i) => i.getAttribute("data-key"))), [
        "connections-refused",
        "refused-403",
      ]);
      const refused = await text('#request-notices li[data-key="connections-refused"]');
      assert(
        refused.startsWith("7 connections refused") && refused.includes("Raise max_connections"),
        refused,
      );
      assert((await text('#request-notices li[data-key="refused-403"]')).includes("allowed_clients"));
      // In the card of the cache peers: the loops, and to give each node its own node_name.
      const loops = await text('#peer-notices li[data-key="peer-loops"]');
      assert(loops.startsWith("2 peer lookups looped") && loops.includes("own node_name"), loops);
      // Below each pool's own mirror table: its overtaking.
      const officialNote = await text('#mirrors ul[data-pool="official"] li[data-key="overtakes"]');
      assert(officialNote.includes("5 probes") && officialNote.includes("mirrors_predefined"), officialNote);
      const armNote = await text('#custom-repos ul[data-pool="custom_repo/arm"] li[data-key="overtakes"]');
      assert(armNote.includes("1 probe of") && armNote.includes("nothing to do"), armNote);
      // HEAD requests beside the hit ratio, not in it.
      assert((await text("#hit-note")).includes("(3 HEAD, not in the ratio)"), await text("#hit-note"));
      assert(await page.locator("#peer-notices").isVisible(), "the peer notice is seen");
      assertEquals(problems, [], "no script errors or policy violations");
    } finally {
      await browser.close();
      await server.shutdown();
    }
  },
});
