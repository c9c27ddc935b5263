/**
 * Failover against real sockets: the proxy runs as an HTTP server on 127.0.0.1, the mirrors are fake mirrors
 * that misbehave on demand (see `helpers/fake_mirror.ts`), and the client is `fetch` against the proxy. Every
 * body a client receives is compared with the file's sha256.
 *
 * Not tested here: a mirror that flips bytes (`corruptBytes`). Without the repository database to compare
 * against, the proxy cannot tell flipped bytes from the real file; integrity checking is issue 4.
 */

import { dirname, join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { type FakeMirror, type FaultOptions, startFakeMirror } from "../helpers/fake_mirror.ts";
import { startTestProxy, type TestProxy, withinMs } from "../helpers/proxy_server.ts";
import { waitFor } from "../helpers/wait.ts";
import { sha256 } from "../helpers/bytes.ts";
import { testBytes } from "../helpers/fake_fetch.ts";
import { concat } from "../../src/byte_reader.ts";

const PKG = "/core/os/x86_64/big-1:2.0-1-x86_64.pkg.tar.zst";
const SEGMENTS = PKG.slice(1).split("/");

/** A mirror root holding `files` (path → bytes), and the mirrors serving it. */
interface Setup {
  mirrors: FakeMirror[];
  proxy: TestProxy;
  roots: string[];
}

/**
 * Starts one fake mirror per entry of `faults`, each serving its own copy of `files` (an entry `null` serves an
 * empty directory), and a proxy using them in order; runs `fn` and tears everything down.
 */
async function withSetup(
  options: { files: Record<string, Uint8Array>; faults: (FaultOptions | null)[]; timeoutMs?: number },
  fn: (setup: Setup) => Promise<void>,
): Promise<void> {
  const roots: string[] = [];
  const mirrors: FakeMirror[] = [];
  let proxy: TestProxy | undefined;
  try {
    for (const fault of options.faults) {
      const root = await Deno.makeTempDir({ prefix: "flexo-failover-mirror-" });
      roots.push(root);
      if (fault !== null) {
        for (const [path, bytes] of Object.entries(options.files)) {
          await Deno.mkdir(dirname(join(root, path)), { recursive: true });
          await Deno.writeFile(join(root, path), bytes);
        }
      }
      mirrors.push(await startFakeMirror(root, fault ?? {}));
    }
    proxy = await startTestProxy({ mirrors: mirrors.map((m) => m.url) });
    const timeoutMs = options.timeoutMs ?? 15_000;
    await withinMs(
      fn({ mirrors, proxy, roots }),
      timeoutMs,
      `the test did not finish within ${timeoutMs} ms`,
    );
  } finally {
    for (const mirror of mirrors) await mirror.close();
    await proxy?.close();
    for (const root of roots) await Deno.remove(root, { recursive: true });
  }
}

/** What a client got. */
interface Received {
  status: number;
  headers: Headers;
  bytes: Uint8Array;
  /** Milliseconds from sending the request to the first body byte (or the end of an empty body). */
  firstByteMs: number;
}

/** Fetches `path` from the proxy and reads the whole body; rejects if the body fails or takes too long. */
async function get(proxy: TestProxy, path: string, init: RequestInit = {}): Promise<Received> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error(`GET ${path} took longer than 12 s`)), 12_000);
  try {
    const started = performance.now();
    const response = await fetch(proxy.url + path, { ...init, signal: abort.signal });
    const chunks: Uint8Array[] = [];
    let firstByteMs: number | undefined;
    if (response.body) {
      for await (const chunk of response.body) {
        firstByteMs ??= performance.now() - started;
        chunks.push(chunk);
      }
    }
    firstByteMs ??= performance.now() - started;
    return { status: response.status, headers: response.headers, bytes: concat(chunks), firstByteMs };
  } finally {
    clearTimeout(timer);
  }
}

/** Asserts that the client got the whole file with status 200, and that the cache holds exactly it. */
async function assertServedAndCached(proxy: TestProxy, received: Received, data: Uint8Array): Promise<void> {
  assertEquals(received.status, 200);
  const announced = received.headers.get("content-length");
  if (announced !== null) assertEquals(announced, String(data.length), "the announced length is the file's");
  assertEquals(received.bytes.length, data.length, "the client got the whole file");
  assertEquals(sha256(received.bytes), sha256(data), "the client's bytes are the file's");
  await proxy.app.downloads.idle();
  const cached = await proxy.app.store.statComplete(SEGMENTS);
  assert(cached, "the file is in the cache");
  assertEquals(sha256(await Deno.readFile(cached.path)), sha256(data), "the cached bytes are the file's");
}

function failuresOf(proxy: TestProxy, mirror: FakeMirror): number | undefined {
  return proxy.app.pool.snapshot().find((m) => m.url === mirror.url)?.failures;
}

Deno.test("proxy server leaves a mirror slower than low_speed_limit and resumes byte-exact on the next", async () => {
  const data = testBytes(600_000, 1);
  await withSetup({ files: { [PKG]: data }, faults: [{ bytesPerSecond: 10_000 }, {}] }, async (s) => {
    const [slow, fast] = s.mirrors;
    const received = await get(s.proxy, PKG);
    await assertServedAndCached(s.proxy, received, data);
    assertEquals(slow.countRequests(PKG), 1);
    assertEquals(fast.countRequests(PKG), 1);
    const range = fast.requests[0].range ?? "";
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(range)?.[1]);
    assert(resumedAt > 0 && resumedAt < 100_000, `the next mirror resumes where the slow one left: ${range}`);
    assertEquals(failuresOf(s.proxy, slow), 1);
  });
});

Deno.test("proxy server leaves a mirror that stalls right after the headers", async () => {
  const data = testBytes(300_000, 2);
  await withSetup({ files: { [PKG]: data }, faults: [{ stallAfterBytes: 0 }, {}] }, async (s) => {
    const started = performance.now();
    const received = await get(s.proxy, PKG);
    await assertServedAndCached(s.proxy, received, data);
    assertEquals(s.mirrors[1].requests.map((r) => r.range), [undefined], "nothing to resume: a full GET");
    assert(performance.now() - started < 5_000, "the stall is noticed within low_speed_time");
  });
});

Deno.test("proxy server resumes with Range on the next mirror when one stalls mid-body", async () => {
  const data = testBytes(500_000, 3);
  await withSetup({ files: { [PKG]: data }, faults: [{ stallAfterBytes: 200_000 }, {}] }, async (s) => {
    await assertServedAndCached(s.proxy, await get(s.proxy, PKG), data);
    assertEquals(s.mirrors[1].requests.map((r) => r.range), ["bytes=200000-"]);
  });
});

Deno.test("proxy server resumes with Range on the next mirror when one drops the connection mid-body", async () => {
  const data = testBytes(1_000_000, 4);
  await withSetup(
    { files: { [PKG]: data }, faults: [{ dropAfterBytes: 300_000 }, {}, {}] },
    async (s) => {
      const [dropping, second, third] = s.mirrors;
      await assertServedAndCached(s.proxy, await get(s.proxy, PKG), data);
      assertEquals(dropping.countRequests(PKG), 1);
      assertEquals(second.requests.map((r) => r.range), ["bytes=300000-"]);
      assertEquals(third.requests.length, 0, "the third mirror is not needed");
      assertEquals(failuresOf(s.proxy, dropping), 1);
    },
  );
});

Deno.test("proxy server tries the next mirror when the first answers 404, without blaming it", async () => {
  const data = testBytes(200_000, 5);
  await withSetup({ files: { [PKG]: data }, faults: [null, {}] }, async (s) => {
    await assertServedAndCached(s.proxy, await get(s.proxy, PKG), data);
    assertEquals(s.mirrors.map((m) => m.countRequests(PKG)), [1, 1]);
    assertEquals(failuresOf(s.proxy, s.mirrors[0]), 0);
  });
});

Deno.test("proxy server fails over when the first mirror answers 500", async () => {
  const data = testBytes(200_000, 6);
  await withSetup({ files: { [PKG]: data }, faults: [{ status: 500 }, {}] }, async (s) => {
    await assertServedAndCached(s.proxy, await get(s.proxy, PKG), data);
    assertEquals(s.mirrors.map((m) => m.countRequests(PKG)), [1, 1]);
    assertEquals(failuresOf(s.proxy, s.mirrors[0]), 1);
  });
});

Deno.test("proxy server accepts a body without Content-Length and serves it with a length afterwards", async () => {
  const data = testBytes(400_000, 7);
  await withSetup({ files: { [PKG]: data }, faults: [{ omitContentLength: true }] }, async (s) => {
    const first = await get(s.proxy, PKG);
    assertEquals(first.headers.get("flexo-payload-origin"), "RemoteMirror");
    await assertServedAndCached(s.proxy, first, data);
    const second = await get(s.proxy, PKG);
    assertEquals(second.headers.get("flexo-payload-origin"), "Cache");
    assertEquals(second.headers.get("content-length"), String(data.length));
    assertEquals(sha256(second.bytes), sha256(data));
    assertEquals(s.mirrors[0].countRequests(PKG), 1);
  });
});

Deno.test("proxy server follows a mirror's redirect to another mirror", async () => {
  const data = testBytes(300_000, 8);
  const roots: string[] = [];
  await withSetup({ files: { [PKG]: data }, faults: [{}] }, async (s) => {
    // The proxy knows only the redirecting mirror; it sends everything to the one that has the file.
    const target = s.mirrors[0];
    const root = await Deno.makeTempDir({ prefix: "flexo-failover-redirect-" });
    roots.push(root);
    await using redirecting = await startFakeMirror(root, { redirectTo: target.url });
    await using proxy = await startTestProxy({ mirrors: [redirecting.url] });
    await assertServedAndCached(proxy, await get(proxy, PKG), data);
    assertEquals(redirecting.countRequests(PKG), 1);
    assertEquals(target.countRequests(PKG), 1);
  });
  for (const root of roots) await Deno.remove(root, { recursive: true });
});

Deno.test("proxy server does not append a whole file when a resumed mirror answers the Range with 200", async () => {
  const data = testBytes(800_000, 9);
  await withSetup(
    { files: { [PKG]: data }, faults: [{ dropAfterBytes: 250_000 }, { ignoreRange: true }] },
    async (s) => {
      await assertServedAndCached(s.proxy, await get(s.proxy, PKG), data);
      assertEquals(s.mirrors[1].requests.map((r) => r.range), ["bytes=250000-"]);
    },
  );
});

Deno.test("proxy server fails over from an HTML error page and never caches it", async () => {
  const data = testBytes(100_000, 10);
  await withSetup({ files: { [PKG]: data }, faults: [{ htmlErrorPage: true }, {}] }, async (s) => {
    const received = await get(s.proxy, PKG);
    assertEquals(received.headers.get("content-type"), "application/octet-stream");
    await assertServedAndCached(s.proxy, received, data);
    assertEquals(failuresOf(s.proxy, s.mirrors[0]), 1);
  });
  await withSetup({ files: { [PKG]: data }, faults: [{ htmlErrorPage: true }] }, async (s) => {
    const portal = await get(s.proxy, PKG);
    assertEquals(portal.status, 502);
    assert(!new TextDecoder().decode(portal.bytes).includes("<html"), "the HTML page is not passed on");
    await s.proxy.app.downloads.idle();
    assertEquals(await s.proxy.app.store.statComplete(SEGMENTS), undefined, "the HTML page is not cached");
    s.mirrors[0].faults = {};
    await assertServedAndCached(s.proxy, await get(s.proxy, PKG), data);
  });
});

Deno.test("proxy server answers 404 when no mirror has the file", async () => {
  await withSetup({ files: {}, faults: [null, null] }, async (s) => {
    const received = await get(s.proxy, PKG);
    assertEquals(received.status, 404);
    assertEquals(s.mirrors.map((m) => m.countRequests(PKG)), [1, 1]);
  });
});

Deno.test("proxy server answers 502 naming the mirrors when every mirror answers 500", async () => {
  const data = testBytes(10_000, 11);
  await withSetup({ files: { [PKG]: data }, faults: [{ status: 500 }, { status: 503 }] }, async (s) => {
    const received = await get(s.proxy, PKG);
    assertEquals(received.status, 502);
    const text = new TextDecoder().decode(received.bytes);
    for (const mirror of s.mirrors) assert(text.includes(mirror.url), `${mirror.url} is named in: ${text}`);
  });
});

Deno.test("proxy server fails the client's body, never hangs, when every mirror stalls after the headers", async () => {
  const data = testBytes(300_000, 12);
  await withSetup(
    { files: { [PKG]: data }, faults: [{ stallAfterBytes: 50_000 }, { stallAfterBytes: 100_000 }] },
    async (s) => {
      const started = performance.now();
      const outcome = await get(s.proxy, PKG).then(
        (received) => ({ received }),
        (error: unknown) => ({ error }),
      );
      const elapsed = performance.now() - started;
      if ("received" in outcome) {
        // Failing before the headers would be fine too; a 200 whose body ends without an error would not be.
        assert(
          outcome.received.status >= 500,
          `the client got status ${outcome.received.status} and ${outcome.received.bytes.length} bytes ` +
            "without an error",
        );
      }
      assert(elapsed < 8_000, `the failure came after ${Math.round(elapsed)} ms, too late`);
      assertEquals(s.mirrors[1].requests.map((r) => r.range), ["bytes=50000-"]);
      await s.proxy.app.downloads.idle();
      assertEquals(await s.proxy.app.store.statComplete(SEGMENTS), undefined, "no truncated file is cached");
    },
  );
});

Deno.test("proxy server answers 504 when every mirror stalls before the headers", async () => {
  const data = testBytes(10_000, 13);
  await withSetup(
    { files: { [PKG]: data }, faults: [{ delayMs: 30_000 }, { delayMs: 30_000 }] },
    async (s) => {
      const started = performance.now();
      const received = await get(s.proxy, PKG);
      assertEquals(received.status, 504);
      const elapsed = performance.now() - started;
      assert(elapsed < 6_000, `the 504 came after ${Math.round(elapsed)} ms, too late`);
    },
  );
});

Deno.test("proxy server shares one throttled upstream GET between five staggered clients", async () => {
  const data = testBytes(8 * 1024 * 1024, 14);
  const bytesPerSecond = 4 * 1024 * 1024;
  await withSetup({ files: { [PKG]: data }, faults: [{ bytesPerSecond }], timeoutMs: 25_000 }, async (s) => {
    const started = performance.now();
    const clients: Promise<Received & { doneMs: number }>[] = [];
    for (let i = 0; i < 5; i++) {
      // Client i arrives once the download has i sixths of the file (it takes about 2 s at the mirror's pace).
      const sixths = (i * data.length) / 6;
      await waitFor(`the download to pass ${i}/6 of the file`, () => {
        const download = s.proxy.app.downloads.list()[0];
        return i === 0 || (download !== undefined && download.written >= sixths);
      });
      clients.push(get(s.proxy, PKG).then((r) => ({ ...r, doneMs: performance.now() - started })));
    }
    const results = await Promise.all(clients);
    const downloadMs = results[0].doneMs;
    assert(downloadMs > 1_500, `the throttled download took ${Math.round(downloadMs)} ms, too fast to test`);
    const expected = sha256(data);
    for (const [i, result] of results.entries()) {
      assertEquals(result.status, 200, `client ${i}`);
      assertEquals(result.bytes.length, data.length, `client ${i} got every byte`);
      assertEquals(sha256(result.bytes), expected, `client ${i} got the file's bytes`);
    }
    for (const [i, result] of results.slice(1).entries()) {
      assert(
        result.firstByteMs < downloadMs / 4,
        `client ${i + 1} waited ${Math.round(result.firstByteMs)} ms for its first byte ` +
          `(the download took ${Math.round(downloadMs)} ms)`,
      );
    }
    assertEquals(s.mirrors[0].countRequests(PKG, { method: "GET" }), 1, "exactly one upstream GET");
    // The four joined clients' bytes crossed the internet once: saved, as the hit ratio says.
    await s.proxy.app.downloads.idle();
    assertEquals(s.proxy.app.stats.requests.get("JOINED DOWNLOAD"), 4);
    assertEquals(s.proxy.app.stats.bytesFromUpstream, data.length, "one client's bytes from upstream");
    assertEquals(s.proxy.app.stats.bytesFromCache, 4 * data.length, "four clients' bytes saved");
    await assertServedAndCached(s.proxy, results[4], data);
  });
});

Deno.test("proxy server completes the download into the cache when the client stops reading", async () => {
  const data = testBytes(1024 * 1024, 15);
  await withSetup({ files: { [PKG]: data }, faults: [{ bytesPerSecond: 2 * 1024 * 1024 }] }, async (s) => {
    const response = await fetch(s.proxy.url + PKG);
    assertEquals(response.status, 200);
    const reader = response.body!.getReader();
    const first = await reader.read();
    assert(!first.done && first.value.length > 0, "the client got some bytes");
    await reader.cancel();
    assert(s.proxy.app.downloads.list().length === 1, "the download is still running after the client left");
    await s.proxy.app.downloads.idle();
    const cached = await s.proxy.app.store.statComplete(SEGMENTS);
    assert(cached, "the download completed into the cache");
    assertEquals(sha256(await Deno.readFile(cached.path)), sha256(data));
    assertEquals(s.mirrors[0].countRequests(PKG, { method: "GET" }), 1);
  });
});
