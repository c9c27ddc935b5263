import nodeAssert from "node:assert/strict";
import { assert, assertEquals } from "../helpers/assert.ts";
import { fakeFetch, gatedFetch, type GatedRequest, rangeHead, testBytes } from "../helpers/fake_fetch.ts";
import { testDatabase } from "../helpers/test_database.ts";
import { CacheStore } from "../../src/cache/cache_store.ts";
import type { Download } from "../../src/download/download.ts";
import { DownloadManager, purposeOf, rulesFor } from "../../src/download/download_manager.ts";
import { MirrorPool } from "../../src/mirrors/mirrors.ts";
import type { FileKind } from "../../src/repo/file_kind.ts";
import { parseRequestPath, type RequestTarget } from "../../src/repo/request_path.ts";
import { settledNow, waitFor } from "../helpers/wait.ts";

const A = "http://mirror-a.test/";
/** A database's size too: every body is `testDatabase()`'s or `testBytes(SIZE)`. */
const SIZE = 5_120;

function target(path: string): RequestTarget {
  return parseRequestPath(path, { customRepoNames: [] });
}

const PKG = target("/core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst");
const OTHER_PKG = target("/extra/os/x86_64/xz-5.6.2-1-x86_64.pkg.tar.zst");

/**
 * A manager over a temporary cache and one gated mirror (`wrapFetch` may answer some requests itself);
 * `cleanup()` ends every body and removes the cache.
 */
async function setup(
  extra: {
    onComplete?: (download: Download, target: RequestTarget) => void;
    pool?: MirrorPool;
    wrapFetch?: (gated: typeof fetch) => typeof fetch;
  } = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "flexo-manager-" });
  // Every request is answered at once; the test writes each body through its gate.
  const gated = gatedFetch((req) => rangeHead(SIZE, req));
  const gates = gated.gates;
  const fetch = extra.wrapFetch?.(gated.fetch) ?? gated.fetch;
  const pool = extra.pool ?? new MirrorPool();
  if (!extra.pool) pool.setMirrors([A], "test");
  const poolsAsked: RequestTarget[] = [];
  const manager = new DownloadManager({
    store: new CacheStore(dir),
    poolFor: (t) => {
      poolsAsked.push(t);
      return pool;
    },
    deps: { fetch, now: Date.now },
    limits: { connectTimeoutMs: 5_000, lowSpeedLimit: 1, lowSpeedTimeMs: 60_000, lastResortStallMs: 60_000 },
    onComplete: extra.onComplete,
  });
  return {
    dir,
    manager,
    gates,
    poolsAsked,
    /** Waits until `count` requests have reached the mirror. */
    async requests(count: number): Promise<GatedRequest[]> {
      await waitFor(`${count} upstream requests`, () => gates.length >= count);
      return gates;
    },
    async cleanup() {
      for (const gate of gates) {
        try {
          gate.fail(new Error("test over"));
        } catch {
          // ended already
        }
      }
      await manager.idle();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Sends the whole file through a gate and waits for the download to end. */
async function complete(gate: GatedRequest, download: Download, body = testBytes(SIZE)): Promise<void> {
  gate.push(body);
  gate.end();
  await download.finished;
}

Deno.test("rulesFor() resumes packages across mirrors, treats a missing database signature as final and keeps it on its mirror", () => {
  const cases: [FileKind, ReturnType<typeof rulesFor>][] = [
    ["package", {
      resumeAcrossMirrors: true,
      notFoundIsFinal: false,
      keepPartialOnFailure: true,
      movesOn: true,
    }],
    ["package_signature", {
      resumeAcrossMirrors: true,
      notFoundIsFinal: false,
      keepPartialOnFailure: true,
      movesOn: true,
    }],
    ["database", {
      resumeAcrossMirrors: false,
      notFoundIsFinal: false,
      keepPartialOnFailure: false,
      movesOn: true,
    }],
    ["database_signature", {
      resumeAcrossMirrors: false,
      notFoundIsFinal: true,
      keepPartialOnFailure: false,
      movesOn: false,
    }],
    ["other", {
      resumeAcrossMirrors: false,
      notFoundIsFinal: false,
      keepPartialOnFailure: false,
      movesOn: true,
    }],
  ];
  for (const [kind, expected] of cases) assertEquals(rulesFor(kind), expected, `rulesFor("${kind}")`);
});

Deno.test("purposeOf() orders mirrors for packages, databases and anything else", () => {
  const cases: [FileKind, ReturnType<typeof purposeOf>][] = [
    ["package", "package"],
    ["package_signature", "package"],
    ["database", "database"],
    ["database_signature", "database"],
    ["other", "other"],
  ];
  for (const [kind, expected] of cases) assertEquals(purposeOf(kind), expected, `purposeOf("${kind}")`);
});

Deno.test("obtain() returns the running download for the same file and another for another file", async () => {
  const t = await setup();
  try {
    const first = t.manager.obtain(PKG);
    const again = t.manager.obtain(target("/core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst"));
    nodeAssert.equal(again, first, "a second request for the file joins the first download");
    nodeAssert.equal(t.manager.active(PKG), first);
    const other = t.manager.obtain(OTHER_PKG);
    nodeAssert.notEqual(other, first);
    const gates = await t.requests(2);
    assertEquals(gates.length, 2, "one upstream request per file");
    assertEquals(gates.map((g) => g.url).sort(), [A + OTHER_PKG.upstreamPath, A + PKG.upstreamPath].sort());
    assertEquals(t.manager.list().length, 2);
    assert(t.manager.list().includes(first) && t.manager.list().includes(other));
  } finally {
    await t.cleanup();
  }
});

Deno.test("obtain() starts a new download once the previous one has ended", async () => {
  const t = await setup();
  try {
    const first = t.manager.obtain(PKG);
    const [gate] = await t.requests(1);
    gate.push(testBytes(SIZE).slice(0, 300));
    await waitFor("300 bytes on disk", () => first.written === 300);
    gate.fail(new TypeError("connection reset"));
    await first.finished;
    assertEquals(first.state, "failed");
    assertEquals(t.manager.active(PKG), undefined);
    const second = t.manager.obtain(PKG);
    nodeAssert.notEqual(second, first, "a failed download is not joined");
    const gates = await t.requests(2);
    assertEquals(gates[1].headers.get("range"), "bytes=300-", "the new download resumes the partial file");
    gates[1].push(testBytes(SIZE).slice(300));
    gates[1].end();
    await second.finished;
    assertEquals(second.state, "complete");
    const third = t.manager.obtain(PKG);
    nodeAssert.notEqual(third, second, "a complete download is not joined either");
    await third.finished;
    assertEquals(third.state, "complete", "the new download finds the file in the cache");
    assertEquals(t.gates.length, 2, "without asking upstream");
  } finally {
    await t.cleanup();
  }
});

Deno.test("active() ignores a download that has ended but is not yet forgotten", async () => {
  const t = await setup();
  try {
    const download = t.manager.obtain(PKG);
    const [gate] = await t.requests(1);
    gate.push(testBytes(SIZE));
    gate.end();
    // A download announces its end to readers before its `finished` promise lets the manager forget it.
    while (!download.ended) await download.changed();
    assert(t.manager.list().includes(download), "precondition: the manager still lists the ended download");
    assertEquals(t.manager.active(PKG), undefined);
    const next = t.manager.obtain(PKG);
    nodeAssert.notEqual(next, download);
    await t.manager.idle();
    assertEquals(t.manager.list(), [], "forgetting the old download did not drop the new one early");
  } finally {
    await t.cleanup();
  }
});

Deno.test("list() and idle() follow the running downloads", async () => {
  const t = await setup();
  try {
    await t.manager.idle();
    assertEquals(t.manager.list(), []);
    const first = t.manager.obtain(PKG);
    const second = t.manager.obtain(OTHER_PKG);
    const gates = await t.requests(2);
    const idle = t.manager.idle();
    assertEquals(await settledNow(idle), false, "idle() waits while downloads run");
    const gateOf = (d: Download) => gates.find((g) => g.url.endsWith(d.segments.at(-1)!))!;
    await complete(gateOf(first), first);
    assertEquals(t.manager.list(), [second]);
    assertEquals(await settledNow(idle), false, "idle() waits for the last download");
    await complete(gateOf(second), second);
    await idle;
    assertEquals(t.manager.list(), []);
  } finally {
    await t.cleanup();
  }
});

Deno.test("onComplete() is called once with the download and its target, and not for a failure", async () => {
  const calls: [Download, RequestTarget][] = [];
  const t = await setup({ onComplete: (download, target) => calls.push([download, target]) });
  try {
    const download = t.manager.obtain(PKG);
    t.manager.obtain(PKG);
    const [gate] = await t.requests(1);
    assertEquals(calls.length, 0);
    await complete(gate, download);
    await t.manager.idle();
    assertEquals(calls.length, 1);
    nodeAssert.equal(calls[0][0], download);
    nodeAssert.equal(calls[0][1], PKG);
    const failing = t.manager.obtain(OTHER_PKG);
    const gates = await t.requests(2);
    gates[1].fail(new TypeError("connection reset"));
    await failing.finished;
    await t.manager.idle();
    assertEquals(calls.length, 1, "a failed download is not reported as complete");
  } finally {
    await t.cleanup();
  }
});

Deno.test("obtain() asks the pool poolFor() gives and sends If-Modified-Since when told to", async () => {
  const pool = new MirrorPool();
  pool.setMirrors(["http://custom.test/repo/"], "test");
  const t = await setup({ pool });
  try {
    const db = target("/core/os/x86_64/core.db");
    const since = Date.UTC(2026, 0, 1);
    const download = t.manager.obtain(db, { ifModifiedSince: since });
    const [gate] = await t.requests(1);
    nodeAssert.equal(t.poolsAsked[0], db);
    assertEquals(gate.url, "http://custom.test/repo/core/os/x86_64/core.db");
    assertEquals(gate.headers.get("if-modified-since"), "Thu, 01 Jan 2026 00:00:00 GMT");
    await complete(gate, download, testDatabase());
    assertEquals(download.state, "complete");
  } finally {
    await t.cleanup();
  }
});

Deno.test("obtain() lets a new download of a file start only after the previous one has finished its cleanup", async () => {
  let finished = false;
  let finishedWhenAsked: boolean | undefined;
  // A revalidation is answered 304; a plain request gets the file through its gate.
  const t = await setup({
    wrapFetch: (gated) =>
      ((input: string | URL | Request, init?: RequestInit) => {
        if (new Headers(init?.headers).has("if-modified-since")) {
          return Promise.resolve(new Response(null, { status: 304 }));
        }
        finishedWhenAsked = finished;
        return gated(input, init);
      }) as typeof fetch,
  });
  const DB = target("/core/os/x86_64/core.db");
  try {
    const revalidation = t.manager.obtain(DB, { ifModifiedSince: Date.now() });
    assertEquals((await revalidation.head).status, "not_modified");
    // Its clients have their answer, but it may still be removing its (empty) partial file.
    revalidation.finished.then(() => finished = true);
    const fresh = t.manager.obtain(DB);
    nodeAssert.notEqual(fresh, revalidation);
    const [gate] = await t.requests(1);
    assertEquals(
      finishedWhenAsked,
      true,
      "the new download asked upstream only after the previous one finished",
    );
    gate.push(testDatabase());
    gate.end();
    await fresh.finished;
    assertEquals(fresh.state, "complete", "its partial file was not removed under it");
  } finally {
    await t.cleanup();
  }
});

Deno.test("DownloadManager.databaseSource() names the mirror a database came from or that said 304 to it, never one with an older copy", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-manager-" });
  const B = "http://mirror-b.test/";
  const db = testDatabase();
  const T2 = Date.parse("Tue, 14 Nov 2023 22:13:20 GMT");
  const T1 = T2 - 3600_000;
  // How each mirror answers now: its copy's date, or "refuse".
  const copies: Record<string, number | "refuse"> = { [A]: T2, [B]: T1 };
  const { fetch } = fakeFetch((url, req) => {
    const copy = copies[url.startsWith(A) ? A : B];
    if (copy === "refuse") return "refuse";
    const since = req.headers.get("if-modified-since");
    if (since !== null && Date.parse(since) === copy) return { status: 304 };
    return { headers: { "last-modified": new Date(copy).toUTCString() }, body: db };
  });
  const pool = new MirrorPool();
  pool.setMirrors([A, B], "test");
  const manager = new DownloadManager({
    store: new CacheStore(dir),
    poolFor: () => pool,
    deps: { fetch, now: Date.now },
    limits: { connectTimeoutMs: 5_000, lowSpeedLimit: 1, lowSpeedTimeMs: 60_000, lastResortStallMs: 60_000 },
  });
  const DB = target("/core/os/x86_64/core.db");
  const run = async (options: { ifModifiedSince?: number } = {}) => {
    const download = manager.obtain(DB, options);
    await download.finished;
    return download.state;
  };
  try {
    assertEquals(await run(), "complete");
    assertEquals(manager.databaseSource(DB, T2), A, "the mirror it was downloaded from");
    assertEquals(manager.databaseSource(DB, T1), undefined, "only for that snapshot");
    // Only B answers, with an older copy: the cached one stays, and B is no source of it.
    copies[A] = "refuse";
    pool.setMirrors([B, A], "test");
    assertEquals(await run({ ifModifiedSince: T2 }), "not_modified");
    assertEquals(manager.databaseSource(DB, T2), A);
    // B has synced: its 304 says it holds the cached snapshot.
    copies[B] = T2;
    assertEquals(await run({ ifModifiedSince: T2 }), "not_modified");
    assertEquals(manager.databaseSource(DB, T2), B);
  } finally {
    await manager.idle();
    await Deno.remove(dir, { recursive: true });
  }
});
