/**
 * Automatic mirror selection at a first start (no saved ranking): the first request is answered within 3 s,
 * start-up included, even when the fallback mirrors and the top 40 mirrors of the status JSON are silent
 * (they accept connections and never answer). Each mirror that passes its latency test is used at once, and a
 * request in flight moves on to it. The proxy is put together as main.ts does it (a mirror pool filled by
 * `startMirrorSelection`, `createApp`, `startServer`), in this process, with a fetch that reaches only
 * 127.0.0.1: anything else (the built-in mirrors) is silent, like a network that drops packets.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { makeRepo } from "../helpers/make_repo.ts";
import { mirrorsAutoSettings, statusEntry } from "../helpers/mirror_fixtures.ts";
import { testConfig } from "../helpers/test_app.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { createApp } from "../../src/app/app.ts";
import { startMirrorSelection } from "../../src/mirrors/mirror_selection.ts";
import { MirrorPool } from "../../src/mirrors/mirrors.ts";
import { startServer } from "../../src/server/server.ts";

/** The global fetch for 127.0.0.1; for any other host a request that never answers until it is aborted. */
const loopbackOnly: typeof fetch = (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  if (url.hostname === "127.0.0.1") return fetch(input, init);
  return new Promise((_, reject) => {
    const signal = init?.signal ?? (input instanceof Request ? input.signal : undefined);
    signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
};

Deno.test("in auto mode the first request after start is answered within 3 s although the top 40 mirrors of the status JSON are silent, and never from an out-of-date mirror", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "mirror"), {
      repo: "core",
      packages: [{ name: "tool", version: "1.0-1", size: 20_000 }],
    });
    const older = await makeRepo(join(dir, "older"), {
      repo: "core",
      packages: [{ name: "tool", version: "0.9-1", size: 20_000 }],
    });
    await using good = await startFakeMirror(repo.dir);
    // Fast and best-scored, but hours behind in its sync: it must not beat the up-to-date mirror.
    await using outOfDate = await startFakeMirror(older.dir);
    await using silent = await startFakeMirror(repo.dir, { silent: true });
    // The 40 best-scored mirrors are silent; the one that works has a worse score.
    const entries = [
      statusEntry(outOfDate.url, 0.1, { delay: 7200, last_sync: "2024-05-14T07:00:00Z" }),
      ...Array.from({ length: 40 }, (_, i) => statusEntry(`${silent.url}s${i}/`, 0.5 + i / 100)),
      statusEntry(good.url, 2),
    ];
    const status = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => Response.json({ version: 3, urls: entries }),
    );
    const cache = join(dir, "cache");
    await Deno.mkdir(cache);
    const config = testConfig(cache, [], {
      mirror_selection_method: "auto",
      mirrorlist_latency_test_results_file: join(dir, "state", "latency.json"),
      // Its ranking is written there: never this machine's own /var/cache/flexo/state/mirrorlist.
      mirrorlist_fallback_file: join(dir, "state", "mirrorlist"),
      mirrors_auto: mirrorsAutoSettings({
        mirrors_status_json_endpoint: `http://127.0.0.1:${status.addr.port}/`,
        timeout: 350,
      }),
    });
    const started = performance.now();
    const pool = new MirrorPool();
    const selection = startMirrorSelection(config, { pool, fetch: loopbackOnly });
    const app = createApp(config, { pool, fetch: loopbackOnly, limits: { connectTimeoutMs: 3000 } });
    const server = startServer(app, { hostnames: ["127.0.0.1"], port: 0 });
    try {
      assertEquals(
        pool.source,
        "built-in",
        "a first start: no ranking yet, the built-in (here silent) mirrors",
      );
      const response = await fetch(`http://127.0.0.1:${server.addresses[0].port}/core/os/x86_64/core.db`);
      const body = new Uint8Array(await response.arrayBuffer());
      const ms = performance.now() - started;
      assertEquals(response.status, 200);
      assertEquals(body, await Deno.readFile(join(repo.osDir, "core.db")));
      console.log(`first answer ${Math.round(ms)} ms after start`);
      assert(ms < 3000, `the first answer came ${Math.round(ms)} ms after start`);
      assert(good.countRequests("core.db", { method: "GET" }) >= 1, "the working mirror answered");
      assertEquals(outOfDate.requests.length, 0, "the out-of-date mirror is never asked");
      await selection.ready;
      assertEquals(pool.primary(), good.url, "the working, up-to-date mirror is ranked first");
      assertEquals(outOfDate.requests.length, 0);
    } finally {
      selection.stop();
      await server.shutdown({ graceMs: 1000 });
      await app.downloads.idle();
      await status.shutdown();
    }
  });
});
