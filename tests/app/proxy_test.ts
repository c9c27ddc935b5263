import { assert, assertEquals } from "../helpers/assert.ts";
import { fakeFetch, gatedFetch, rangeHead, serveBytes, testBytes } from "../helpers/fake_fetch.ts";
import { testDatabase } from "../helpers/test_database.ts";
import { testApp } from "../helpers/test_app.ts";

const A = "http://mirror-a.test/";
const B = "http://mirror-b.test/";
const DB = "/core/os/x86_64/core.db";
const PKG = "/extra/os/x86_64/big-1:2.0-1-x86_64.pkg.tar.zst";

async function bytesOf(response: Response): Promise<Uint8Array> {
  return new Uint8Array(await response.arrayBuffer());
}

/** A mirror whose core.db changes when `version` changes, honouring If-Modified-Since. */
function databaseMirror(state: { version: number }) {
  return fakeFetch((_url, req) => {
    const modified = new Date(Date.UTC(2026, 0, 1, 0, 0, state.version));
    const since = req.headers.get("if-modified-since");
    if (since && Date.parse(since) >= modified.getTime()) return { status: 304 };
    return { headers: { "last-modified": modified.toUTCString() }, body: testDatabase(state.version) };
  });
}

Deno.test("serveTarget() revalidates a database upstream on every request", async () => {
  const state = { version: 1 };
  const { fetch, requests } = databaseMirror(state);
  const app = await testApp([A], { fetch });
  try {
    assertEquals(await bytesOf(await app.get(DB)), testDatabase(1));
    await app.downloads.idle();
    const again = await app.get(DB);
    assertEquals(again.headers.get("flexo-payload-origin"), "Cache");
    assertEquals(await bytesOf(again), testDatabase(1));
    assertEquals(requests.length, 2);
    assertEquals(requests[1].headers.get("if-modified-since"), "Thu, 01 Jan 2026 00:00:01 GMT");
    state.version = 2;
    const changed = await app.get(DB);
    assertEquals(changed.headers.get("flexo-payload-origin"), "RemoteMirror");
    assertEquals(await bytesOf(changed), testDatabase(2));
  } finally {
    await app.cleanup();
  }
});

Deno.test("serveTarget() answers pacman's If-Modified-Since with 304 when the database has not changed", async () => {
  const state = { version: 1 };
  const { fetch } = databaseMirror(state);
  const app = await testApp([A], { fetch });
  try {
    const first = await app.get(DB);
    const lastModified = first.headers.get("last-modified")!;
    await first.body?.cancel();
    await app.downloads.idle();
    const notModified = await app.get(DB, { headers: { "If-Modified-Since": lastModified } });
    assertEquals(notModified.status, 304);
    assertEquals(notModified.body, null);
    state.version = 5;
    const modified = await app.get(DB, { headers: { "If-Modified-Since": lastModified } });
    assertEquals(modified.status, 200);
    assertEquals(await bytesOf(modified), testDatabase(5));
  } finally {
    await app.cleanup();
  }
});

Deno.test("serveTarget() asks only one mirror for a missing database signature", async () => {
  const { fetch, requests } = fakeFetch(() => ({ status: 404 }));
  const app = await testApp([A, B], { fetch });
  try {
    const response = await app.get("/core/os/x86_64/core.db.sig");
    assertEquals(response.status, 404);
    await response.body?.cancel();
    assertEquals(requests.length, 1);
  } finally {
    await app.cleanup();
  }
});

Deno.test("serveTarget() serves databases from the primary mirror", async () => {
  const { fetch, requests } = fakeFetch((url, req) => serveBytes(testDatabase(url.length), req));
  const app = await testApp([A, B], { fetch });
  try {
    for (let i = 0; i < 3; i++) await (await app.get(`/repo${i}/os/x86_64/repo${i}.db`)).arrayBuffer();
    assert(requests.every((r) => r.url.startsWith(A)), "every database came from the primary mirror");
  } finally {
    await app.cleanup();
  }
});

Deno.test("serveTarget() answers Range requests on cached files and on files still downloading", async () => {
  const data = testBytes(900_000, 21);
  const { fetch, gates } = gatedFetch((req) => rangeHead(data.byteLength, req));
  const app = await testApp([A], { fetch });
  try {
    const live = await app.get(PKG, { headers: { Range: "bytes=100-199" } });
    assertEquals(live.status, 206);
    assertEquals(live.headers.get("content-range"), "bytes 100-199/900000");
    // Its last byte comes once the file is verified.
    const liveBody = bytesOf(live);
    gates[0].push(data.slice(0, 300_000));
    // Past what is on disk so far: the answer follows the download.
    const resume = await app.get(PKG, { headers: { Range: "bytes=450000-" } });
    assertEquals(resume.status, 206);
    assertEquals(app.downloads.list()[0]?.ended, false, "the file is still downloading");
    gates[0].push(data.slice(300_000));
    gates[0].end();
    assertEquals(await liveBody, data.slice(100, 200));
    assertEquals(await bytesOf(resume), data.slice(450_000));
    assertEquals(gates.length, 1, "one request to the mirror");
    await app.downloads.idle();
    const suffix = await app.get(PKG, { headers: { Range: "bytes=-10" } });
    assertEquals(suffix.status, 206);
    assertEquals(suffix.headers.get("content-range"), "bytes 899990-899999/900000");
    assertEquals(await bytesOf(suffix), data.slice(899_990));
    const middle = await app.get(PKG, { headers: { Range: "bytes=1000-1999" } });
    assertEquals(await bytesOf(middle), data.slice(1000, 2000));
    const outside = await app.get(PKG, { headers: { Range: "bytes=900000-" } });
    assertEquals(outside.status, 416);
    assertEquals(outside.headers.get("content-range"), "bytes */900000");
    await outside.body?.cancel();
  } finally {
    await app.cleanup();
  }
});

Deno.test("serveTarget() answers HEAD from the cache and from upstream without starting a download", async () => {
  const data = testBytes(20_000, 22);
  const { fetch, requests } = fakeFetch((_url, req) => serveBytes(data, req));
  const app = await testApp([A], { fetch });
  try {
    const head = await app.get(PKG, { method: "HEAD" });
    assertEquals(head.status, 200);
    assertEquals(head.headers.get("content-length"), String(data.length));
    assertEquals(head.body, null);
    assertEquals(requests[0].method, "HEAD");
    assertEquals(app.downloads.list().length, 0);
    assertEquals(await app.store.statComplete(PKG.slice(1).split("/")), undefined);
    await (await app.get(PKG)).arrayBuffer();
    await app.downloads.idle();
    const cachedHead = await app.get(PKG, { method: "HEAD" });
    assertEquals(cachedHead.headers.get("flexo-payload-origin"), "Cache");
    assertEquals(cachedHead.headers.get("content-length"), String(data.length));
    assertEquals(requests.length, 2);
  } finally {
    await app.cleanup();
  }
});

Deno.test("serveTarget() caches custom repos under their own names so equal file names never collide", async () => {
  const { fetch } = fakeFetch((url, req) => serveBytes(new TextEncoder().encode(url), req));
  const app = await testApp([A], {
    fetch,
    config: {
      custom_repo: [
        { name: "one", url: "http://one.test/repo" },
        { name: "two", url: ["http://two.test/repo", "http://two-backup.test/repo"] },
      ],
    },
  });
  try {
    const file = "x86_64/tool-1.0-1-x86_64.pkg.tar.zst";
    const one = new TextDecoder().decode(await bytesOf(await app.get(`/custom_repo/one/${file}`)));
    const two = new TextDecoder().decode(await bytesOf(await app.get(`/custom_repo/two/${file}`)));
    assertEquals(one, `http://one.test/repo/${file}`);
    assertEquals(two, `http://two.test/repo/${file}`);
    await app.downloads.idle();
    assertEquals(await Deno.readTextFile(`${app.dir}/custom_repo/one/${file}`), one);
    assertEquals(await Deno.readTextFile(`${app.dir}/custom_repo/two/${file}`), two);
    const unknown = await app.get(`/custom_repo/three/${file}`);
    assertEquals(unknown.status, 404);
    await unknown.body?.cancel();
  } finally {
    await app.cleanup();
  }
});

Deno.test("serveTarget() passes other paths through without caching them", async () => {
  const { fetch, requests } = fakeFetch(() => ({ body: new TextEncoder().encode("1700000000\n") }));
  const app = await testApp([A], { fetch });
  try {
    for (let i = 0; i < 2; i++) {
      const response = await app.get("/lastsync");
      assertEquals(await response.text(), "1700000000\n");
      assertEquals(response.headers.get("flexo-payload-origin"), "RemoteMirror");
    }
    assertEquals(requests.length, 2);
  } finally {
    await app.cleanup();
  }
});

Deno.test("createApp() refuses other methods with 405 and hostile paths with 400 before any upstream request", async () => {
  const { fetch, requests } = fakeFetch(() => ({ body: new Uint8Array(1) }));
  const app = await testApp([A], { fetch });
  try {
    const post = await app.get(PKG, { method: "POST", body: "x" });
    assertEquals(post.status, 405);
    assertEquals(post.headers.get("allow"), "GET, HEAD");
    await post.body?.cancel();
    // (new Request() normalises "..", so raw dot segments are tested against the real server in server_test.ts.)
    for (const path of ["//etc/passwd", "/core/os/x86_64/a%2fb", "/core/os/x86_64/a%00b", "/.partial/x"]) {
      const response = await app.get(path);
      assert(response.status >= 400 && response.status < 500, `${path} gave ${response.status}`);
      await response.body?.cancel();
    }
    assertEquals(requests.length, 0);
  } finally {
    await app.cleanup();
  }
});

Deno.test("createApp() answers a method HTTP defines with 405 and Allow, and an unknown one with 501", async () => {
  // RFC 9110 15.5.6 and 15.6.2 (methods are case-sensitive: patch is not PATCH).
  const { fetch, requests } = fakeFetch(() => ({ body: new Uint8Array(1) }));
  const app = await testApp([A], { fetch });
  try {
    for (const method of ["OPTIONS", "PATCH", "DELETE", "PUT"]) {
      const response = await app.get(PKG, { method });
      assertEquals([response.status, response.headers.get("allow")], [405, "GET, HEAD"], method);
      await response.body?.cancel();
    }
    for (const method of ["PROPFIND", "FOO", "patch"]) {
      const response = await app.get("/status", { method });
      assertEquals(response.status, 501, method);
      await response.body?.cancel();
    }
    assertEquals(requests.length, 0);
  } finally {
    await app.cleanup();
  }
});

Deno.test("answerDownload() answers a Range request for a download of unknown length with 206 once the length is known", async () => {
  // A mirror that sends no Content-Length (a chunked body) and no database giving the size: the length is known
  // only at the body's end. A 200 with the whole file instead failed pacman's resume of a .part file (curl:
  // "HTTP server doesn't seem to support byte ranges. Cannot resume").
  const data = testBytes(100_000, 7);
  const { fetch, gates } = gatedFetch(() => ({ headers: {} }));
  const app = await testApp([A], { fetch });
  try {
    const first = await app.get(PKG);
    assertEquals([first.status, first.headers.get("content-length")], [200, null]);
    const whole = first.arrayBuffer();
    gates[0].push(data.subarray(0, 50_000));
    for (const [range, start] of [["bytes=1000-", 1000], ["bytes=-500", 99_500]] as const) {
      const asked = app.get(PKG, { headers: { Range: range } });
      if (range === "bytes=1000-") {
        gates[0].push(data.subarray(50_000));
        gates[0].end();
      }
      const response = await asked;
      assertEquals(response.status, 206, range);
      assertEquals(response.headers.get("content-range"), `bytes ${start}-99999/100000`, range);
      assertEquals(new Uint8Array(await response.arrayBuffer()), data.subarray(start), range);
    }
    assertEquals(new Uint8Array(await whole), data);
    assertEquals(gates.length, 1, "one download");
  } finally {
    await app.cleanup();
  }
});

Deno.test("answerDownload() answers a Range request that starts a download of unknown length with 206", async () => {
  const data = testBytes(30_000, 8);
  const { fetch, gates } = gatedFetch(() => ({ headers: {} }));
  const app = await testApp([A], { fetch });
  try {
    const asked = app.get(PKG, { headers: { Range: "bytes=100-199" } });
    while (gates.length === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    gates[0].push(data);
    gates[0].end();
    const response = await asked;
    assertEquals(response.status, 206);
    assertEquals(response.headers.get("content-range"), "bytes 100-199/30000");
    assertEquals(new Uint8Array(await response.arrayBuffer()), data.subarray(100, 200));
  } finally {
    await app.cleanup();
  }
});

Deno.test("answerDownload() answers a Range request for a download of unknown length that fails with an error, never a 206 of the bytes that came", async () => {
  // The body's end is where the length becomes known; a body cut short gives no length, and its bytes so far
  // are not the file: a 206 "of 10000 bytes" would let pacman finish its .part file as a truncated package.
  const data = testBytes(30_000, 9);
  const { fetch, gates } = gatedFetch(() => ({ headers: {} }));
  const app = await testApp([A], { fetch });
  try {
    const asked = app.get(PKG, { headers: { Range: "bytes=100-" } });
    while (gates.length === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    gates[0].push(data.subarray(0, 10_000));
    gates[0].fail(new Error("connection reset"));
    const response = await asked;
    const body = await bytesOf(response);
    assert(response.status >= 500, `answered ${response.status} with ${body.byteLength} bytes`);
    assertEquals(response.headers.get("content-range"), null);
  } finally {
    await app.cleanup();
  }
});

Deno.test("serveTarget() answers a Range request for a database download of unknown length with 206 once the length is known", async () => {
  const db = testDatabase(4);
  const { fetch, gates } = gatedFetch(() => ({ headers: {} }));
  const app = await testApp([A], { fetch });
  try {
    const asked = app.get(DB, { headers: { Range: "bytes=10-19" } });
    while (gates.length === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    gates[0].push(db);
    gates[0].end();
    const response = await asked;
    assertEquals(response.status, 206);
    assertEquals(response.headers.get("content-range"), `bytes 10-19/${db.byteLength}`);
    assertEquals(await bytesOf(response), db.subarray(10, 20));
  } finally {
    await app.cleanup();
  }
});

Deno.test("serveTarget() counts a client that shares a running database download as joined, not as a second fetch", async () => {
  const db = testDatabase(3);
  const { fetch, gates } = gatedFetch(() => ({ headers: { "content-length": String(db.byteLength) } }));
  const app = await testApp([A], { fetch });
  try {
    const first = await app.get(DB);
    gates[0].push(db.slice(0, 100));
    // A second client's pacman -Sy while the first's download runs: it is given the same download's bytes.
    const second = await app.get(DB);
    gates[0].push(db.slice(100));
    gates[0].end();
    assertEquals(await bytesOf(first), db);
    assertEquals(await bytesOf(second), db);
    assertEquals(gates.length, 1, "the database crossed the internet once");
    assertEquals(Object.fromEntries(app.stats.requests), { "UPDATED": 1, "JOINED DOWNLOAD": 1 });
    assertEquals(app.stats.bytesFromUpstream, db.byteLength, "the bytes from upstream, once");
    assertEquals(
      app.stats.bytesFromCache,
      db.byteLength,
      "the shared copy's bytes did not cross the internet",
    );
  } finally {
    await app.cleanup();
  }
});

Deno.test("serveTarget() counts a passed-through file's bytes as received from the mirror that sent them", async () => {
  const body = testBytes(70_000);
  const { fetch } = fakeFetch((url) => url.startsWith(A) ? "refuse" : { body });
  const app = await testApp([A, B], { fetch });
  try {
    const response = await app.get("/iso/latest/archlinux-x86_64.iso");
    assertEquals(await bytesOf(response), body);
    const received = Object.fromEntries(app.pool.snapshot().map((m) => [m.url, m.bytes]));
    assertEquals(received, { [A]: 0, [B]: body.byteLength });
    assertEquals(app.stats.bytesFromUpstream, body.byteLength);
  } finally {
    await app.cleanup();
  }
});
