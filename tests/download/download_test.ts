import { assert, assertEquals } from "../helpers/assert.ts";
import { fakeFetch, gatedFetch, rangeHead, serveBytes, testBytes } from "../helpers/fake_fetch.ts";
import { testApp } from "../helpers/test_app.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { waitFor } from "../helpers/wait.ts";
import { testDatabase } from "../helpers/test_database.ts";

const A = "http://mirror-a.test/";
const B = "http://mirror-b.test/";
const C = "http://mirror-c.test/";
const PKG = "/core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst";

async function bytesOf(response: Response): Promise<Uint8Array> {
  return new Uint8Array(await response.arrayBuffer());
}

Deno.test("Download.start() fetches a miss once and the next request is a cache hit", async () => {
  const data = testBytes(700_000);
  const { fetch, requests } = fakeFetch((_url, req) => serveBytes(data, req));
  const app = await testApp([A], { fetch });
  try {
    const first = await app.get(PKG);
    assertEquals(first.status, 200);
    assertEquals(first.headers.get("flexo-payload-origin"), "RemoteMirror");
    assertEquals(first.headers.get("content-length"), String(data.length));
    assertEquals(await bytesOf(first), data);
    await app.downloads.idle();
    const second = await app.get(PKG);
    assertEquals(second.headers.get("flexo-payload-origin"), "Cache");
    assertEquals(await bytesOf(second), data);
    assertEquals(requests.length, 1);
    assertEquals(second.headers.get("last-modified"), "Tue, 14 Nov 2023 22:13:20 GMT");
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() shares one upstream transfer between clients arriving at different times", async () => {
  const data = testBytes(2_000_000, 7);
  const { fetch, gates } = gatedFetch(() => ({
    headers: { "content-length": String(data.byteLength), "last-modified": "Tue, 14 Nov 2023 22:13:20 GMT" },
  }));
  const app = await testApp([A], { fetch });
  try {
    const quarter = data.byteLength / 4;
    const clients: Promise<Uint8Array>[] = [];
    for (let i = 0; i < 4; i++) {
      // Client i arrives when the download has i quarters of the file on disk.
      const response = await app.get(PKG);
      assertEquals(response.status, 200);
      clients.push(bytesOf(response));
      assertEquals(gates.length, 1, `client ${i} follows the one request to the mirror`);
      const download = app.downloads.list()[0];
      assertEquals(download.written, i * quarter, `client ${i} joined with ${i} quarters on disk`);
      gates[0].push(data.slice(i * quarter, (i + 1) * quarter));
      while (download.written < (i + 1) * quarter) await download.changed();
    }
    gates[0].end();
    for (const body of await Promise.all(clients)) assertEquals(body, data);
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() resumes on the next mirror after a dropped connection, byte-exact", async () => {
  const data = testBytes(1_000_000, 3);
  const { fetch, requests } = fakeFetch((url, req) =>
    url.startsWith(A) ? serveBytes(data, req, { dropAfter: 300_000 }) : serveBytes(data, req)
  );
  const app = await testApp([A, B], { fetch });
  try {
    const response = await app.get(PKG);
    assertEquals(await bytesOf(response), data);
    assertEquals(requests.length, 2);
    assertEquals(requests[1].url, B + PKG.slice(1));
    assertEquals(requests[1].headers.get("range"), "bytes=300000-");
    await app.downloads.idle();
    assertEquals(app.pool.snapshot().find((m) => m.url === A)?.failures, 1);
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() leaves a mirror that stalls after the headers", async () => {
  const data = testBytes(500_000, 4);
  const { fetch, requests } = fakeFetch((url, req) =>
    url.startsWith(A) ? serveBytes(data, req, { stallAfter: 100_000 }) : serveBytes(data, req)
  );
  const timers = new FakeTimers();
  const app = await testApp([A, B], { fetch, now: timers.now, timers: timers.deps });
  try {
    const response = await app.get(PKG);
    const download = app.downloads.list()[0];
    while (download.written < 100_000) await download.changed();
    // Nothing more comes: twice low_speed_time (300 ms in testApp) later, the mirror has been left.
    timers.advance(600);
    assertEquals(await bytesOf(response), data);
    assertEquals(requests.map((r) => r.headers.get("range")), [null, "bytes=100000-"]);
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() keeps a slow last mirror instead of aborting it", async () => {
  const data = testBytes(60_000, 5);
  const timers = new FakeTimers();
  const { fetch, gates } = gatedFetch((req) => rangeHead(data.byteLength, req));
  const app = await testApp([A], {
    fetch,
    now: timers.now,
    timers: timers.deps,
    limits: {
      connectTimeoutMs: 2_000,
      lowSpeedLimit: 1_000_000,
      lowSpeedTimeMs: 200,
      lastResortStallMs: 2_000,
    },
  });
  try {
    const body = app.get(PKG).then(bytesOf);
    await waitFor("the mirror to be asked", () => gates.length === 1);
    const download = app.downloads.list()[0];
    // 10 000 bytes every 150 ms (66 kB/s, far below low_speed_limit) for 900 ms: over four times low_speed_time.
    for (let at = 0; at < data.byteLength; at += 10_000) {
      gates[0].push(data.slice(at, at + 10_000));
      while (download.written < at + 10_000) await download.changed();
      timers.advance(150);
    }
    gates[0].end();
    assertEquals(await body, data);
    assertEquals(gates.length, 1, "no other mirror was asked");
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() moves a slow transfer to the next mirror and continues the stream", async () => {
  const data = testBytes(400_000, 6);
  const timers = new FakeTimers();
  const { fetch: gated, gates } = gatedFetch((req) => rangeHead(data.byteLength, req));
  const { fetch: fast, requests } = fakeFetch((_url, req) => serveBytes(data, req));
  let slowAsked: AbortSignal | undefined;
  const fetch: typeof globalThis.fetch = (input, init) => {
    if (!String(input).startsWith(A)) return fast(input, init);
    slowAsked = init?.signal ?? undefined;
    return gated(input, init);
  };
  const app = await testApp([A, B], {
    fetch,
    now: timers.now,
    timers: timers.deps,
    limits: {
      connectTimeoutMs: 2_000,
      lowSpeedLimit: 100_000,
      lowSpeedTimeMs: 300,
      lastResortStallMs: 2_000,
    },
  });
  try {
    const body = app.get(PKG).then(bytesOf);
    await waitFor("the first mirror to be asked", () => gates.length === 1);
    const download = app.downloads.list()[0];
    // 2 000 bytes every 100 ms: 20 kB/s, below low_speed_limit, until the watchdog gives up on the mirror.
    let sent = 0;
    while (!slowAsked!.aborted) {
      assert(sent < 20_000, "the slow mirror was kept");
      gates[0].push(data.slice(sent, sent += 2_000));
      while (download.written < sent) await download.changed();
      timers.advance(100);
    }
    assertEquals(timers.now(), 300, "given up once it had been slow for low_speed_time");
    assertEquals(await body, data);
    assertEquals(requests.length, 1);
    assert(requests[0].url.startsWith(B), requests[0].url);
    assertEquals(requests[0].headers.get("range"), `bytes=${sent}-`, "the next mirror is asked for the rest");
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() skips ahead when a resumed mirror ignores the Range header", async () => {
  const data = testBytes(800_000, 8);
  const { fetch } = fakeFetch((url, req) =>
    url.startsWith(A) ? serveBytes(data, req, { dropAfter: 250_000 }) : { body: data } // 200 with everything
  );
  const app = await testApp([A, B], { fetch });
  try {
    assertEquals(await bytesOf(await app.get(PKG)), data);
    await app.downloads.idle();
    assertEquals(await Deno.readFile(`${app.dir}${PKG}`), data);
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() tries the next mirror on 404, 500, refused connections and HTML pages", async () => {
  const data = testBytes(10_000, 9);
  const { fetch, requests } = fakeFetch((url, req) => {
    if (url.startsWith(A)) return { status: 404 };
    if (url.startsWith(B)) return { status: 500 };
    if (url.startsWith(C)) return "refuse";
    if (url.startsWith("http://mirror-d.test/")) {
      return {
        headers: { "content-type": "text/html" },
        body: new TextEncoder().encode("<html>oops</html>"),
      };
    }
    return serveBytes(data, req);
  });
  const app = await testApp([A, B, C, "http://mirror-d.test/", "http://mirror-e.test/"], { fetch });
  try {
    assertEquals(await bytesOf(await app.get(PKG)), data);
    assertEquals(requests.length, 5);
    await app.downloads.idle();
    const failures = Object.fromEntries(app.pool.snapshot().map((m) => [m.url, m.failures]));
    assertEquals(failures[A], 0, "a 404 is not the mirror's fault");
    assertEquals(failures[B], 1);
    assertEquals(failures[C], 1);
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() answers 404 when no mirror has the file and 502 when all fail", async () => {
  const { fetch } = fakeFetch((url) => (url.includes("missing") ? { status: 404 } : { status: 503 }));
  const app = await testApp([A, B], { fetch });
  try {
    const missing = await app.get("/core/os/x86_64/missing-1-1-x86_64.pkg.tar.zst");
    assertEquals(missing.status, 404);
    await missing.body?.cancel();
    const failing = await app.get(PKG);
    assertEquals(failing.status, 502);
    assert((await failing.text()).includes("mirror-b.test"), "the message names the mirrors");
    await app.downloads.idle();
    assertEquals(
      app.pool.snapshot().map((m) => m.penalty),
      [0, 0],
      "a file failing everywhere penalises no one",
    );
    assertEquals(
      app.pool.snapshot().map((m) => m.failures),
      [1, 1],
      "but each mirror's failure counts",
    );
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() answers 504 when every mirror times out", async () => {
  const { fetch } = fakeFetch(() => ({ delayMs: 3_600_000, body: new Uint8Array(1) }));
  const timers = new FakeTimers();
  const app = await testApp([A], {
    fetch,
    now: timers.now,
    timers: timers.deps,
    limits: { connectTimeoutMs: 100, lowSpeedLimit: 1, lowSpeedTimeMs: 300, lastResortStallMs: 2_000 },
  });
  try {
    const answer = app.get(PKG);
    await waitFor("the mirror to be asked", () => timers.pending.includes(100));
    timers.advance(100);
    const response = await answer;
    assertEquals(response.status, 504);
    await response.body?.cancel();
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() never commits a truncated file and resumes it on the next request", async () => {
  const data = testBytes(600_000, 10);
  let broken = true;
  const { fetch, requests } = fakeFetch((_url, req) =>
    serveBytes(data, req, broken ? { dropAfter: 200_000 } : {})
  );
  const app = await testApp([A], { fetch });
  try {
    const first = await app.get(PKG);
    assertEquals(first.status, 200);
    let failed = false;
    try {
      await first.arrayBuffer();
    } catch {
      failed = true;
    }
    assert(failed, "the client sees the transfer fail instead of a short file");
    await app.downloads.idle();
    assertEquals(await app.store.statComplete(PKG.slice(1).split("/")), undefined);
    broken = false;
    const second = await app.get(PKG);
    assertEquals(await bytesOf(second), data);
    assertEquals(requests.at(-1)?.headers.get("range"), "bytes=200000-");
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() discards a body longer than announced", async () => {
  const data = testBytes(50_000, 11);
  const { fetch } = fakeFetch((url, req) =>
    url.startsWith(A)
      ? { headers: { "content-length": "40000" }, body: data, chunkSize: 10_000 }
      : serveBytes(data.slice(0, 40_000), req)
  );
  const app = await testApp([A, B], { fetch });
  try {
    const response = await app.get(PKG);
    await response.body?.cancel().catch(() => {});
    await app.downloads.idle();
    assertEquals(await app.store.statComplete(PKG.slice(1).split("/")), undefined);
    const again = await app.get(PKG);
    assertEquals((await bytesOf(again)).length, 40_000);
    // What the first mirror sent was received all the same (upstream_received_bytes_total): the bytes taken
    // before the chunk that went past the end.
    const received = Object.fromEntries(app.pool.snapshot().map((m) => [m.url, m.bytes]));
    assertEquals(received, { [A]: 40_000, [B]: 40_000 });
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() accepts a body without Content-Length that ends cleanly", async () => {
  const data = testBytes(90_000, 12);
  const { fetch } = fakeFetch(() => ({ headers: { "content-length": "" }, body: data }));
  const noLength: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    const headers = new Headers(response.headers);
    headers.delete("content-length");
    return new Response(response.body, { status: response.status, headers });
  };
  const app = await testApp([A], { fetch: noLength });
  try {
    const response = await app.get(PKG);
    assertEquals(response.headers.get("content-length"), null);
    assertEquals(await bytesOf(response), data);
    await app.downloads.idle();
    assertEquals((await app.store.statComplete(PKG.slice(1).split("/")))?.size, data.length);
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() completes for the cache when the client disconnects", async () => {
  const data = testBytes(1_500_000, 13);
  const { fetch, gates } = gatedFetch((req) => rangeHead(data.byteLength, req));
  const app = await testApp([A], { fetch });
  try {
    const response = await app.get(PKG);
    const reader = response.body!.getReader();
    gates[0].push(data.slice(0, 50_000));
    await reader.read();
    await reader.cancel();
    // The client has gone while most of the file is still to come.
    gates[0].push(data.slice(50_000));
    gates[0].end();
    await app.downloads.idle();
    assertEquals(await Deno.readFile(`${app.dir}${PKG}`), data);
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() never gives a client the bytes of a file of another length than its head announced", async () => {
  // The first mirror announces 300 000 bytes and breaks off before its first byte; the next one has another
  // file of that name, 400 000 bytes long. The client was told Content-Length: 300000.
  const announced = testBytes(300_000, 21);
  const other = testBytes(400_000, 22);
  const { fetch } = fakeFetch((url, req) =>
    url.startsWith(A) ? serveBytes(announced, req, { dropAfter: 0 }) : serveBytes(other, req)
  );
  const app = await testApp([A, B], { fetch });
  try {
    const response = await app.get(PKG);
    assertEquals(response.headers.get("content-length"), String(announced.byteLength));
    const body = await bytesOf(response).catch(() => undefined);
    assert(
      body === undefined || body.byteLength !== announced.byteLength,
      "no complete answer of wrong bytes",
    );
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() commits a database with the date of the mirror its bytes came from, so that an older snapshot never replaces it", async () => {
  // The first mirror announces its snapshot of Tuesday and breaks off before its first byte; the next one sends
  // its snapshot of Thursday, of the same length. Later only a mirror with Wednesday's snapshot answers.
  const DB = "/core/os/x86_64/core.db";
  const [tuesday, wednesday, thursday] = [testDatabase(1), testDatabase(2), testDatabase(3)];
  let later = false;
  const { fetch } = fakeFetch((url) => {
    if (later) {
      if (url.startsWith(B)) return "refuse";
      return { headers: { "last-modified": "Wed, 15 Nov 2023 12:00:00 GMT" }, body: wednesday };
    }
    return url.startsWith(A)
      ? { headers: { "last-modified": "Tue, 14 Nov 2023 12:00:00 GMT" }, body: tuesday, dropAfter: 0 }
      : { headers: { "last-modified": "Thu, 16 Nov 2023 12:00:00 GMT" }, body: thursday };
  });
  const app = await testApp([A, B], { fetch });
  try {
    await (await app.get(DB)).body?.cancel();
    await app.downloads.idle();
    const cached = app.store.statComplete(DB.slice(1).split("/"));
    assertEquals(await Deno.readFile(`${app.dir}${DB}`), thursday);
    assertEquals(cached?.mtime.toUTCString(), "Thu, 16 Nov 2023 12:00:00 GMT");
    later = true;
    await (await app.get(DB)).body?.cancel();
    await app.downloads.idle();
    assertEquals(await Deno.readFile(`${app.dir}${DB}`), thursday, "the cache keeps the newer snapshot");
  } finally {
    await app.cleanup();
  }
});

Deno.test("Download.start() fails and keeps nothing when a mirror's body goes past the length announced, and the next request starts clean", async () => {
  // The first mirror announces 300 000 bytes and breaks off before its first byte; the next one sends another
  // file of that name, 400 000 bytes with no length of its own. Its bytes past 300 000 cannot be the file.
  const announced = testBytes(300_000, 31);
  const other = testBytes(400_000, 32);
  let fixed = false;
  const { fetch } = fakeFetch((url, req) => {
    if (fixed) return serveBytes(announced, req);
    return url.startsWith(A)
      ? serveBytes(announced, req, { dropAfter: 0 })
      : { body: other, noContentLength: true };
  });
  const app = await testApp([A, B], { fetch });
  try {
    const response = await app.get(PKG);
    const body = await bytesOf(response).catch(() => undefined);
    assert(body === undefined || body.byteLength < announced.byteLength, "no complete answer of wrong bytes");
    await app.downloads.idle();
    const segments = PKG.slice(1).split("/");
    assertEquals(app.store.statComplete(segments), undefined, "nothing committed");
    assertEquals(
      await Deno.stat(app.store.partialPath(segments)).catch(() => "gone"),
      "gone",
      "partial discarded",
    );
    // The next request starts clean and gets the file.
    fixed = true;
    assertEquals(await bytesOf(await app.get(PKG)), announced);
  } finally {
    await app.cleanup();
  }
});
