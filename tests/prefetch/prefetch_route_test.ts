/**
 * POST /prefetch on the app, with the client's address as the server would pass it: who may ask (loopback
 * only, behind trusted proxies the client they report), what the answer says, and the other methods.
 */

import { createApp, type FlexoApp } from "../../src/app/app.ts";
import type { ServeInfo } from "../../src/http/client_request.ts";
import type { PrefetchReport } from "../../src/prefetch/prefetch_run.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { assertToolsAvailable } from "../helpers/make_repo.ts";
import {
  FOLDER,
  OTHER_NEW,
  type PrefetchOrigin,
  publish,
  startPrefetchOrigin,
  TOOL_NEW,
  TOOL_OLD,
} from "../helpers/prefetch_repo.ts";
import { testConfig } from "../helpers/test_app.ts";

await assertToolsAvailable(["repo-add", "bsdtar", "zstd"]);

/** What the server would pass for a connection from `hostname` (to `local`, when given). */
function from(hostname: string, local?: string): ServeInfo {
  return {
    remoteAddr: { transport: "tcp", hostname, port: 40000 },
    ...(local === undefined ? {} : { localAddr: { transport: "tcp", hostname: local, port: 7878 } }),
    completed: new Promise(() => {}),
  } as ServeInfo;
}

/**
 * An app in front of the origin, prefetch enabled, after a client on loopback fetched tool 0.9-1 and the
 * origin published tool 0.10-1.
 */
async function withApp(
  config: Record<string, unknown>,
  fn: (app: FlexoApp, origin: PrefetchOrigin) => Promise<void>,
): Promise<void> {
  await using origin = await startPrefetchOrigin();
  const app = createApp(
    testConfig(origin.cacheDir, [origin.mirror.url], { prefetch: { enabled: true }, ...config }),
  );
  try {
    const old = await app.fetch(new Request(`http://flexo.test/${FOLDER}/${TOOL_OLD}`), from("127.0.0.1"));
    assertEquals(old.status, 200);
    await old.body?.cancel();
    await publish(origin.repo);
    await fn(app, origin);
  } finally {
    await app.downloads.idle();
  }
}

/** A client's `pacman -Sy`: the new database is cached, which a dry run lists from (it revalidates none). */
async function syncDatabase(app: FlexoApp): Promise<void> {
  const db = await app.fetch(new Request(`http://flexo.test/${FOLDER}/flexotest.db`), from("127.0.0.1"));
  assertEquals(db.status, 200);
  await db.body?.cancel();
  await app.downloads.idle();
}

const post = (app: FlexoApp, client: string | ServeInfo, path = "/prefetch", headers: HeadersInit = {}) =>
  app.fetch(
    new Request(`http://flexo.test${path}`, { method: "POST", headers }),
    typeof client === "string" ? from(client) : client,
  );

Deno.test("POST /prefetch from loopback runs a pass and answers its report as JSON", async () => {
  await withApp({}, async (app, origin) => {
    const response = await post(app, "127.0.0.1");
    assertEquals(response.status, 200);
    assertEquals(response.headers.get("content-type")?.startsWith("application/json"), true);
    const report = await response.json() as PrefetchReport;
    assertEquals(report.dryRun, false);
    assertEquals(report.databases.map((d) => [d.path, d.outcome]), [[`${FOLDER}/flexotest.db`, "updated"]]);
    assertEquals(report.files.map((f) => [f.path, f.outcome]), [
      [`${FOLDER}/${TOOL_NEW}`, "fetched"],
    ]);
    assertEquals(report.bytes, (await Deno.stat(`${origin.repo.osDir}/${TOOL_NEW}`)).size);
    assert(await origin.cached(TOOL_NEW), "tool 0.10-1 is cached");
    assertEquals(origin.mirror.countRequests(TOOL_NEW, { method: "GET" }), 1);
    assertEquals(origin.mirror.countRequests(OTHER_NEW), 0);
    assertEquals(app.prefetcher.status().runs, 1);
  });
});

Deno.test("POST /prefetch also answers on IPv6 and IPv4-mapped loopback, and with ?dry_run=1 fetches nothing", async () => {
  await withApp({}, async (app, origin) => {
    await syncDatabase(app);
    for (const client of ["::1", "::ffff:127.0.0.1", "127.0.0.2"]) {
      const response = await post(app, client, "/prefetch?dry_run=1");
      assertEquals(response.status, 200, client);
      const report = await response.json() as PrefetchReport;
      assertEquals(report.dryRun, true);
      assertEquals(report.files.map((f) => [f.path, f.outcome]), [[`${FOLDER}/${TOOL_NEW}`, "would_fetch"]]);
    }
    assertEquals(origin.mirror.countRequests(TOOL_NEW), 0);
    assert(!(await origin.cached(TOOL_NEW)));
    assertEquals(app.prefetcher.status().runs, 0, "a dry run is not counted");
  });
});

Deno.test("POST /prefetch from a non-loopback client is refused with 403 and runs nothing", async () => {
  await withApp({}, async (app, origin) => {
    for (const client of ["192.0.2.7", "10.0.0.1", "::ffff:192.0.2.7", "2001:db8::1"]) {
      const response = await post(app, client);
      assertEquals(response.status, 403, client);
      assert((await response.text()).includes("loopback only"));
    }
    assertEquals(origin.mirror.countRequests(TOOL_NEW), 0);
    assertEquals(origin.mirror.countRequests("flexotest.db"), 0, "not even the databases are revalidated");
    assertEquals(app.prefetcher.status().runs, 0);
  });
});

Deno.test("POST /prefetch that a browser sends for a web page is refused with 403 and runs nothing, even from loopback", async () => {
  await withApp({}, async (app, origin) => {
    const browsers: Record<string, string>[] = [
      { origin: "https://example.com" },
      { "sec-fetch-site": "cross-site" },
      { origin: "null" },
    ];
    for (const headers of browsers) {
      const response = await post(app, "127.0.0.1", "/prefetch", headers);
      assertEquals(response.status, 403, JSON.stringify(headers));
      assert((await response.text()).includes("not answered to web pages"));
    }
    assertEquals(origin.mirror.countRequests(TOOL_NEW), 0);
    assertEquals(app.prefetcher.status().runs, 0);
  });
});

Deno.test("POST /prefetch from the host itself to the LAN address the proxy listens on is answered, from elsewhere refused", async () => {
  await withApp({}, async (app, origin) => {
    await syncDatabase(app);
    // `flexo prefetch` on the host of a proxy listening on 192.0.2.5: the host's packets to itself come from there.
    const own = await post(app, from("192.0.2.5", "192.0.2.5"), "/prefetch?dry_run=1");
    assertEquals(own.status, 200);
    assertEquals((await own.json() as PrefetchReport).files.map((f) => f.outcome), ["would_fetch"]);
    const other = await post(app, from("192.0.2.7", "192.0.2.5"));
    assertEquals(other.status, 403);
    await other.body?.cancel();
    assertEquals(origin.mirror.countRequests(TOOL_NEW), 0);
  });
});

Deno.test("POST /prefetch through a trusted proxy on loopback is refused for the remote client it reports", async () => {
  await withApp({ trusted_proxies: ["127.0.0.1/32"] }, async (app, origin) => {
    const reported: Record<string, string>[] = [{ "x-forwarded-for": "203.0.113.5" }, {
      forwarded: "for=192.0.2.60",
    }];
    for (const headers of reported) {
      const response = await post(app, "127.0.0.1", "/prefetch", headers);
      assertEquals(response.status, 403, JSON.stringify(headers));
      await response.body?.cancel();
    }
    assertEquals(origin.mirror.countRequests(TOOL_NEW), 0);
    // Without a forwarded address, the trusted proxy's connection is the client (a local `flexo prefetch`).
    const own = await post(app, "127.0.0.1", "/prefetch?dry_run=1");
    assertEquals(own.status, 200);
    await own.body?.cancel();
  });
});

Deno.test("GET, HEAD and PUT /prefetch are answered 405 with Allow: POST and never reach a mirror", async () => {
  await withApp({}, async (app, origin) => {
    for (const method of ["GET", "HEAD", "PUT", "DELETE"]) {
      const response = await app.fetch(
        new Request("http://flexo.test/prefetch", { method }),
        from("127.0.0.1"),
      );
      assertEquals([response.status, response.headers.get("allow")], [405, "POST"], method);
      await response.body?.cancel();
    }
    assertEquals(origin.mirror.requests.filter((r) => r.path.includes("prefetch")), []);
    assertEquals(origin.mirror.countRequests(TOOL_NEW), 0);
    assertEquals(app.prefetcher.status().runs, 0);
  });
});

Deno.test("POST /prefetch under offline = true asks no mirror and answers 503 saying why, and no run is scheduled", async () => {
  await using origin = await startPrefetchOrigin();
  // A client fetched tool before flexo was set offline (say, on a metered line).
  await Deno.mkdir(`${origin.cacheDir}/.flexo`);
  await Deno.writeTextFile(
    `${origin.cacheDir}/.flexo/package_usage.json`,
    JSON.stringify({ version: 1, folders: { [FOLDER]: { tool: Date.now() } } }),
  );
  await publish(origin.repo);
  const app = createApp(
    testConfig(origin.cacheDir, [origin.mirror.url], { offline: true, prefetch: { enabled: true } }),
  );
  try {
    await app.prefetcher.start();
    assertEquals(app.prefetcher.status().nextRunAt, undefined, "no run scheduled");
    for (const path of ["/prefetch", "/prefetch?dry_run=1"]) {
      const response = await post(app, "127.0.0.1", path);
      assertEquals(response.status, 503);
      assert((await response.text()).includes("offline"), "the answer names offline = true");
    }
    assertEquals(origin.mirror.countRequests(""), 0, "offline: never contact mirrors");
  } finally {
    app.prefetcher.stop();
    await app.downloads.idle();
  }
});
