/**
 * Cache peers on the app alone (scripted peers and mirrors): what is counted when a peer is asked before the
 * mirrors, and which pool's mirrors the download's transfers are counted on.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { fakeFetch, serveBytes } from "../helpers/fake_fetch.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { makeRepo } from "../helpers/make_repo.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { testApp } from "../helpers/test_app.ts";
import { captureLog } from "../helpers/log_capture.ts";

const PKG = "/core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst";
const PEER = "http://127.0.0.1:9101/";
const MIRROR = "http://127.0.0.1:9102/";

Deno.test("createApp() counts a peer hit only when the file came from the peer, and a mirror's transfer on its pool", async () => {
  const bytes = randomBytes(50_000);
  // The peer says it has the file, then has lost it by the GET (evicted, or it lies): 504.
  const upstream = fakeFetch((url, req) => {
    if (url.startsWith(PEER)) return req.method === "HEAD" ? { status: 200 } : { status: 504 };
    // A repository without a database: the node of a cluster asks for it first (database_first.ts), in vain.
    return url.endsWith(".db") ? { status: 404 } : { body: bytes };
  });
  const app = await testApp([MIRROR], { fetch: upstream.fetch, config: { cache_peers: [PEER] } });
  try {
    const response = await app.get(PKG);
    assertEquals(new Uint8Array(await response.arrayBuffer()), bytes);
    await app.downloads.idle();
    assertEquals(
      upstream.requests.map((r) => `${r.method} ${r.url}`),
      [
        `HEAD ${PEER}${PKG.slice(1)}`,
        `GET ${MIRROR}core/os/x86_64/core.db`,
        `GET ${PEER}${PKG.slice(1)}`,
        `GET ${MIRROR}${PKG.slice(1)}`,
      ],
    );
    assertEquals(app.stats.peerHits, 0, "a file that came from a mirror was counted as taken from a peer");
    const mirror = app.pool.snapshot().find((m) => m.url === MIRROR)!;
    assertEquals(
      [mirror.successes, mirror.bytes],
      [1, bytes.length],
      "the mirror's transfer was not counted",
    );
  } finally {
    await app.cleanup();
  }
});

Deno.test("createApp() counts a file taken from a peer once, and leaves the mirrors' counters alone", async () => {
  const bytes = randomBytes(50_000);
  // The mirrors fail, and have no database (which the node of a cluster asks them for first).
  const upstream = fakeFetch((url) =>
    url.startsWith(PEER) ? { body: bytes } : url.endsWith(".db") ? { status: 404 } : { status: 500 }
  );
  const app = await testApp([MIRROR], { fetch: upstream.fetch, config: { cache_peers: [PEER] } });
  try {
    assertEquals(new Uint8Array(await (await app.get(PKG)).arrayBuffer()), bytes);
    await app.downloads.idle();
    assertEquals(app.stats.peerHits, 1);
    const mirror = app.pool.snapshot().find((m) => m.url === MIRROR)!;
    assertEquals([mirror.successes, mirror.failures, mirror.bytes], [0, 0, 0]);
    assertEquals(
      upstream.requests.filter((r) => r.url.startsWith(MIRROR)).map((r) => r.url),
      [`${MIRROR}core/os/x86_64/core.db`],
      "the mirrors were asked for the database only",
    );
  } finally {
    await app.cleanup();
  }
});

Deno.test("createApp() does not make every miss wait for a cache peer that does not answer", async () => {
  const timers = new FakeTimers();
  const bytes = randomBytes(10_000);
  const asked: string[] = [];
  // The peer's machine drops packets: its requests never get an answer until they are given up.
  const upstream = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = String(input instanceof Request ? input.url : input);
    asked.push(url);
    if (!url.startsWith(PEER)) return Promise.resolve(new Response(bytes as Uint8Array<ArrayBuffer>));
    return new Promise((_, reject) => {
      init?.signal?.addEventListener("abort", () => reject(init.signal!.reason), { once: true });
    });
  };
  const app = await testApp([MIRROR], {
    fetch: upstream as typeof fetch,
    now: timers.now,
    timers,
    config: { cache_peers: [PEER] },
  });
  try {
    const first = app.get(PKG);
    assertEquals(await settled(first), "waiting", "the first miss waits for the peer");
    timers.advance(500);
    assertEquals((await first).status, 200);
    await (await first).arrayBuffer();
    const second = await settled(app.get(PKG.replace("zz-", "yy-")));
    assertEquals(
      second === "waiting" ? second : second.status,
      200,
      "the next miss waited for the silent peer",
    );
    if (second !== "waiting") await second.arrayBuffer();
    assertEquals(asked.filter((url) => url.startsWith(PEER)).length, 1);
  } finally {
    await app.cleanup();
  }
});

/** What `answer` has settled with once the turns of answered requests have run, or "waiting". */
async function settled<T>(answer: Promise<T>): Promise<T | "waiting"> {
  return await Promise.race([
    answer,
    new Promise<"waiting">((resolve) => setTimeout(() => resolve("waiting"), 50)),
  ]);
}

Deno.test("createApp() takes a small package that a cache peer sent corrupt from the mirrors at once, and not from that peer again", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "mirror"), {
      repo: "flexotest",
      packages: [{ name: "one", version: "1.0-1", size: 5000 }],
    });
    const db = await Deno.readFile(join(repo.osDir, "flexotest.db"));
    const pkg = repo.packages[0];
    const bytes = await Deno.readFile(pkg.path);
    // The peer's copy rotted on its disk: it says it has the file, and sends it with one byte changed.
    const corrupt = bytes.slice();
    corrupt[100] ^= 0xff;
    const { fetch, requests } = fakeFetch((url, req) => {
      if (url.startsWith(PEER)) return req.method === "HEAD" ? { status: 200 } : serveBytes(corrupt, req);
      return serveBytes(url.endsWith("/flexotest.db") ? db : bytes, req);
    });
    const app = await testApp([MIRROR], { fetch, config: { cache_peers: [PEER] } });
    const path = `/flexotest/os/x86_64/${pkg.fileName}`;
    try {
      // Held back whole until verified (a small file): the peer's corrupt copy is passed over for the mirror's.
      const first = await app.get(path);
      assertEquals(
        new Uint8Array(await first.arrayBuffer()),
        bytes,
        "the first request got the mirror's copy",
      );
      await app.downloads.idle();
      assertEquals(app.stats.integrityRejections, 1);
      const again = await app.get(path);
      assertEquals(new Uint8Array(await again.arrayBuffer()), bytes, "the next request failed again");
      await app.downloads.idle();
      assertEquals(
        requests.filter((r) => r.method === "GET" && r.url.startsWith(PEER)).length,
        1,
        "the peer's corrupt copy was taken again",
      );
    } finally {
      await app.cleanup();
    }
  });
});

Deno.test("createApp() warns once, naming node_name, and counts the lookups when a cache peer answers 508 because it has this node's name", async () => {
  const bytes = randomBytes(20_000);
  // The peer is a node with the same node_name (one configuration copied to every node): it takes the node's
  // Via for its own and answers 508 to every lookup.
  const upstream = fakeFetch((url) => (url.endsWith(".db") ? { status: 404 } : { body: bytes }));
  const log = await captureLog("info");
  const peer = await testApp([MIRROR], { fetch: upstream.fetch, config: { node_name: "flexo-node" } });
  const fetchBoth = ((input: string | URL | Request, init?: RequestInit) => {
    const url = String(input instanceof Request ? input.url : input);
    if (!url.startsWith(PEER)) return upstream.fetch(input, init);
    return Promise.resolve(peer.fetch(new Request(url.replace(PEER, "http://flexo.test/"), init)));
  }) as typeof fetch;
  const config = { cache_peers: [PEER], node_name: "flexo-node" };
  const app = await testApp([MIRROR], { fetch: fetchBoth, config });
  try {
    for (const name of ["a-1-1-any.pkg.tar.zst", "b-1-1-any.pkg.tar.zst"]) {
      const response = await app.get(`/core/os/x86_64/${name}`);
      assertEquals(new Uint8Array(await response.arrayBuffer()), bytes, "the mirrors still serve the file");
    }
    await app.downloads.idle();
    assertEquals(app.stats.peerLoops, 2);
  } finally {
    await log.close();
    await app.cleanup();
    await peer.cleanup();
  }
  const warnings = log.text().split("\n").filter((line) => line.includes("flexo.peers"));
  assertEquals(warnings.length, 1, log.text());
  assert(
    warnings[0].includes(PEER) && warnings[0].includes("every node needs its own node_name"),
    warnings[0],
  );
});
