/**
 * The real HTTP server: hostile request targets sent over raw TCP (fetch and `new Request()` would normalise
 * them before they leave the client), methods, HEAD, malformed input, several listen addresses and a port in use.
 */

import { dirname, join } from "node:path";
import { createApp, type FlexoApp } from "../../src/app/app.ts";
import { type RunningServer, startServer } from "../../src/server/server.ts";
import { type LibcResult, type LibcSymbols, openLibc } from "../../src/server/libc.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { type FakeMirror, startFakeMirror } from "../helpers/fake_mirror.ts";
import { startTestProxy, type TestProxy, withinMs } from "../helpers/proxy_server.ts";
import { testConfig } from "../helpers/test_app.ts";
import { filesBelow } from "../helpers/temp_dir.ts";

const GOOD = "/core/os/x86_64/ok-1.0-1-x86_64.pkg.tar.zst";
const GOOD_BYTES = new TextEncoder().encode("the real package\n".repeat(1000));
/** A file beside the cache directory that a traversal would reach: `cache/core/os/x86_64/../../../../`. */
const BAIT = "bait.pkg.tar.zst";
const BAIT_TEXT = "SECRET OUTSIDE THE CACHE\n";

/** A raw HTTP response. */
interface RawResponse {
  status: number;
  head: string;
  body: string;
}

/** Sends `requestLine` and headers over a fresh TCP connection and reads the answer until the server closes. */
async function rawRequest(port: number, requestLine: string, extraHeaders = ""): Promise<RawResponse> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const text = `${requestLine}\r\nHost: 127.0.0.1:${port}\r\n${extraHeaders}Connection: close\r\n\r\n`;
    await conn.write(new TextEncoder().encode(text));
    const raw = await withinMs(readToEnd(conn), 5_000, `no complete answer to ${requestLine.slice(0, 80)}`);
    const split = raw.indexOf("\r\n\r\n");
    const head = split < 0 ? raw : raw.slice(0, split);
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]);
    assert(
      Number.isInteger(status),
      `not an HTTP response to ${requestLine.slice(0, 80)}: ${raw.slice(0, 200)}`,
    );
    return { status, head, body: split < 0 ? "" : raw.slice(split + 4) };
  } finally {
    conn.close();
  }
}

async function readToEnd(conn: Deno.Conn): Promise<string> {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(64 * 1024);
  let text = "";
  while (true) {
    const n = await conn.read(buffer);
    if (n === null) return text + decoder.decode();
    text += decoder.decode(buffer.subarray(0, n), { stream: true });
  }
}

/** A mirror serving GOOD and a proxy using it, with the bait file beside the proxy's cache directory. */
async function withProxy(fn: (proxy: TestProxy, mirror: FakeMirror) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "flexo-server-mirror-" });
  await Deno.mkdir(join(root, dirname(GOOD)), { recursive: true });
  await Deno.writeFile(join(root, GOOD), GOOD_BYTES);
  const mirror = await startFakeMirror(root);
  const proxy = await startTestProxy({ mirrors: [mirror.url] });
  try {
    await Deno.writeTextFile(join(dirname(proxy.dir), BAIT), BAIT_TEXT);
    await withinMs(fn(proxy, mirror), 20_000, "the test did not finish within 20 s");
  } finally {
    await mirror.close();
    await proxy.close();
    await Deno.remove(root, { recursive: true });
  }
}

/** A good request over raw TCP gets the package: the server is still serving. */
async function assertStillServing(proxy: TestProxy): Promise<void> {
  const good = await rawRequest(proxy.port, `GET ${GOOD} HTTP/1.1`);
  assertEquals(good.status, 200, `a good request after hostile ones: ${good.head}`);
  assertEquals(good.body, new TextDecoder().decode(GOOD_BYTES));
}

const HOSTILE_TARGETS = [
  "/core/os/x86_64/../../../../etc/passwd",
  `/core/os/x86_64/../../../../${BAIT}`,
  "//etc/passwd",
  `//${BAIT}`,
  "/core/os/x86_64/%2e%2e/%2e%2e/x",
  `/core/os/x86_64/%2E%2E/%2E%2E/%2E%2E/%2E%2E/${BAIT}`,
  `/core/os/x86_64/.%2e/.%2e/.%2e/.%2e/${BAIT}`,
  "/core/os/x86_64/a%2Fb.pkg.tar.zst",
  `/core/os/x86_64/..%2f..%2f..%2f..%2f${BAIT}`,
  `/core/os/x86_64/..\\..\\..\\..\\${BAIT}`,
  "/core\\os\\x86_64\\ok-1.0-1-x86_64.pkg.tar.zst",
  `/core/os/x86_64/..%5c..%5c..%5c..%5c${BAIT}`,
  "/core/os/x86_64/ok-1.0-1-x86_64.pkg.tar.zst%00.sig",
  "/core/os/x86_64/%00",
  "/core/os/x86_64/.hidden-1.0-1-x86_64.pkg.tar.zst",
  `/custom_repo/../../${BAIT}`,
  "/core/os/x86_64/%zz.pkg.tar.zst",
  "*",
];

Deno.test("startServer() refuses hostile request targets with 4xx before any mirror or file is touched", async () => {
  await withProxy(async (proxy, mirror) => {
    for (const target of HOSTILE_TARGETS) {
      const answer = await rawRequest(proxy.port, `GET ${target} HTTP/1.1`);
      assert(answer.status >= 400 && answer.status < 500, `GET ${target} gave ${answer.head}`);
      assert(
        !answer.body.includes("root:") && !answer.body.includes("SECRET"),
        `GET ${target} leaked a file`,
      );
    }
    const overlong = await rawRequest(proxy.port, `GET /core/os/x86_64/${"a".repeat(2000)} HTTP/1.1`);
    assertEquals(overlong.status, 414);
    assertEquals(mirror.requests.map((r) => r.rawPath), [], "no hostile request reached the mirror");
    assertEquals(await filesBelow(dirname(proxy.dir)), [BAIT], "nothing was written, in or beside the cache");
    assertEquals(await Deno.readTextFile(join(dirname(proxy.dir), BAIT)), BAIT_TEXT);
    await assertStillServing(proxy);
  });
});

// Absolute-form targets name another host: flexo is not a forward proxy, so they are refused.
Deno.test({
  name: "startServer() refuses an absolute-form request target with 4xx",
  fn: async () => {
    await withProxy(async (proxy, mirror) => {
      for (const target of [`http://evil${GOOD}`, "http://evil/x"]) {
        const answer = await rawRequest(proxy.port, `GET ${target} HTTP/1.1`);
        assert(answer.status >= 400 && answer.status < 500, `GET ${target} gave ${answer.head}`);
      }
      assertEquals(mirror.requests.map((r) => r.rawPath), [], "no absolute-form request reached the mirror");
      assertEquals(await filesBelow(dirname(proxy.dir)), [BAIT]);
      await assertStillServing(proxy);
    });
  },
});

Deno.test("startServer() keeps serving after malformed requests and connections closed mid-request", async () => {
  await withProxy(async (proxy, mirror) => {
    const garbage = ["NONSENSE\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "\x00\x01\x02\xff\r\n\r\n"];
    for (const text of garbage) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      try {
        await conn.write(new TextEncoder().encode(text));
        const answer = await withinMs(readToEnd(conn), 5_000, `no answer to ${JSON.stringify(text)}`);
        // Closing the connection without an answer is as good as a 400; 505 says which version to use.
        const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1] ?? 400);
        assert(
          (status >= 400 && status < 500) || status === 505,
          `${JSON.stringify(text)} got ${answer.slice(0, 100)}`,
        );
      } finally {
        conn.close();
      }
    }
    const halfway = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    await halfway.write(new TextEncoder().encode(`GET ${GOOD} HTTP/1.1\r\nHost: 127.0.0.1\r\nRan`));
    halfway.close();
    assertEquals(mirror.requests.length, 0, "no malformed request reached the mirror");
    await assertStillServing(proxy);
  });
});

Deno.test("startServer() answers DELETE, POST and PUT with 405 and an Allow header", async () => {
  await withProxy(async (proxy, mirror) => {
    for (const method of ["DELETE", "POST", "PUT"]) {
      const response = await fetch(proxy.url + GOOD, { method, body: method === "DELETE" ? undefined : "x" });
      assertEquals(response.status, 405, method);
      assertEquals(response.headers.get("allow"), "GET, HEAD", method);
      await response.body?.cancel();
    }
    const raw = await rawRequest(proxy.port, `DELETE ${GOOD} HTTP/1.1`);
    assertEquals(raw.status, 405);
    assert(/^allow: GET, HEAD$/im.test(raw.head), `the raw 405 carries Allow: ${raw.head}`);
    assertEquals(mirror.requests.length, 0);
    assertEquals(await filesBelow(proxy.dir), [], "nothing was cached or deleted");
    await assertStillServing(proxy);
  });
});

Deno.test("startServer() answers TRACE and CONNECT with 405 and Allow, and an unknown method with 501", async () => {
  // RFC 9110 15.5.6 and 15.6.2; Request cannot carry TRACE, CONNECT or TRACK, so the connection layer answers
  // them with the app's rule. They got 400 before.
  await withProxy(async (proxy, mirror) => {
    for (const line of [`TRACE ${GOOD} HTTP/1.1`, `CONNECT mirror.example:443 HTTP/1.1`]) {
      const raw = await rawRequest(proxy.port, line);
      assertEquals(raw.status, 405, line);
      assert(/^allow: GET, HEAD$/im.test(raw.head), `the 405 carries Allow: ${raw.head}`);
    }
    for (const line of [`TRACK ${GOOD} HTTP/1.1`, `FOO ${GOOD} HTTP/1.1`]) {
      assertEquals((await rawRequest(proxy.port, line)).status, 501, line);
    }
    assertEquals(mirror.requests.length, 0);
    await assertStillServing(proxy);
  });
});

Deno.test("startServer() answers HEAD with the length and no body, uncached and cached", async () => {
  await withProxy(async (proxy, mirror) => {
    const uncached = await rawRequest(proxy.port, `HEAD ${GOOD} HTTP/1.1`);
    assertEquals(uncached.status, 200);
    assert(
      new RegExp(`^content-length: ${GOOD_BYTES.length}$`, "im").test(uncached.head),
      `HEAD gives the length: ${uncached.head}`,
    );
    assertEquals(uncached.body, "");
    assertEquals(mirror.requests.map((r) => r.method), ["HEAD"], "a HEAD does not start a download");
    await assertStillServing(proxy);
    await proxy.app.downloads.idle();
    const cached = await fetch(proxy.url + GOOD, { method: "HEAD" });
    assertEquals(cached.status, 200);
    assertEquals(cached.headers.get("content-length"), String(GOOD_BYTES.length));
    assertEquals(cached.headers.get("flexo-payload-origin"), "Cache");
    assertEquals(cached.body, null);
    assertEquals(mirror.countRequests(GOOD), 2, "one HEAD and one GET upstream, the cached HEAD none");
  });
});

/** True when this machine can listen on the IPv6 loopback address. */
function ipv6LoopbackAvailable(): boolean {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * A mirror serving `path` (`bytes`) and a server of a proxy using it on 127.0.0.1 and, where the machine has it,
 * ::1; removed after `fn`.
 */
async function withServerOnEveryAddress(
  file: { path: string; bytes: Uint8Array },
  options: { clientTimeoutMs: number; sendfile?: boolean; libc?: LibcResult },
  fn: (context: { server: RunningServer; app: FlexoApp; mirror: FakeMirror }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "flexo-server-test-" });
  const root = await Deno.makeTempDir({ prefix: "flexo-server-mirror-" });
  await Deno.mkdir(join(root, dirname(file.path)), { recursive: true });
  await Deno.writeFile(join(root, file.path), file.bytes);
  const mirror = await startFakeMirror(root);
  const hostnames = ["127.0.0.1"];
  if (ipv6LoopbackAvailable()) hostnames.push("::1");
  else console.log("IPv6 loopback (::1) is not available here: testing 127.0.0.1 only");
  const app = createApp(testConfig(dir, [mirror.url]));
  const server = startServer(app, { hostnames, port: 0, ...options });
  try {
    assertEquals(server.addresses.map((a) => a.hostname), hostnames);
    await fn({ server, app, mirror });
  } finally {
    await server.shutdown({ graceMs: 2_000 });
    await mirror.close();
    await app.downloads.idle();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(root, { recursive: true });
  }
}

for (const clientTimeoutMs of [60_000, 0]) {
  const how = clientTimeoutMs > 0 ? "with a client timeout" : "with no client timeout (0)";
  Deno.test(`startServer() answers on every configured address, ${how}`, async () => {
    await withServerOnEveryAddress(
      { path: GOOD, bytes: GOOD_BYTES },
      { clientTimeoutMs },
      async ({ server }) => {
        for (const { hostname, port } of server.addresses) {
          const host = hostname.includes(":") ? `[${hostname}]` : hostname;
          const response = await fetch(`http://${host}:${port}${GOOD}`);
          assertEquals(response.status, 200, hostname);
          assertEquals(
            new Uint8Array(await response.arrayBuffer()),
            GOOD_BYTES,
            `the proxy answers on ${hostname}`,
          );
        }
      },
    );
  });
}

Deno.test("startServer() closes a connection that sends no request within clientTimeoutMs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-server-test-" });
  const app = createApp(testConfig(dir, ["http://127.0.0.1:9/"]));
  const server = startServer(app, { hostnames: ["127.0.0.1"], port: 0, clientTimeoutMs: 200 });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addresses[0].port });
    try {
      const read = await withinMs(conn.read(new Uint8Array(16)), 3_000, "the silent connection stayed open");
      assertEquals(read, null);
    } finally {
      conn.close();
    }
  } finally {
    await server.shutdown({ graceMs: 2_000 });
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: 'startServer() listens on ["0.0.0.0", "::"], the documented list for every address, on one port',
  ignore: !ipv6LoopbackAvailable(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "flexo-server-test-" });
    const probe = Deno.listen({ hostname: "0.0.0.0", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const root = await Deno.makeTempDir({ prefix: "flexo-server-mirror-" });
    await Deno.mkdir(join(root, dirname(GOOD)), { recursive: true });
    await Deno.writeFile(join(root, GOOD), GOOD_BYTES);
    const mirror = await startFakeMirror(root);
    const app = createApp(testConfig(dir, [mirror.url]));
    try {
      // Where "::" takes IPv4 too (net.ipv6.bindv6only = 0, Linux's default), 0.0.0.0 on the same port is taken.
      const server = startServer(app, { hostnames: ["0.0.0.0", "::"], port });
      try {
        for (const host of ["127.0.0.1", "[::1]"]) {
          const response = await fetch(`http://${host}:${port}${GOOD}`);
          assertEquals(
            new Uint8Array(await response.arrayBuffer()),
            GOOD_BYTES,
            `the proxy answers on ${host}`,
          );
        }
      } finally {
        await server.shutdown({ graceMs: 2_000 });
      }
    } finally {
      await mirror.close();
      await app.downloads.idle();
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("startServer() says clearly that the port is in use", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-server-test-" });
  const occupier = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (occupier.addr as Deno.NetAddr).port;
  try {
    const app = createApp(testConfig(dir, ["http://127.0.0.1:9/"]));
    let message = "";
    try {
      const server = startServer(app, { hostnames: ["127.0.0.1"], port });
      await server.shutdown({ graceMs: 100 });
    } catch (error) {
      message = error instanceof Error ? error.message : String(error);
    }
    assert(message.includes(`Port ${port} on 127.0.0.1 is already in use`), `the error says so: ${message}`);
    assert(/another port/.test(message), `the error says what to do: ${message}`);
  } finally {
    occupier.close();
    await Deno.remove(dir, { recursive: true });
  }
});

for (const sendfile of [true, false]) {
  Deno.test(`startServer() serves a large cached package ${sendfile ? "with sendfile" : "through JavaScript (sendfile off)"}, whole and in ranges, on every address`, async () => {
    const LARGE = "/core/os/x86_64/large-1.0-1-x86_64.pkg.tar.zst";
    const bytes = randomBytes(3 * 1024 * 1024 + 5);
    const options = { clientTimeoutMs: 60_000, sendfile };
    await withServerOnEveryAddress({ path: LARGE, bytes }, options, async ({ server, app, mirror }) => {
      const cold = await fetch(`http://127.0.0.1:${server.addresses[0].port}${LARGE}`);
      assertEquals(new Uint8Array(await cold.arrayBuffer()), bytes, "the cold download");
      await app.downloads.idle();
      for (const { hostname, port } of server.addresses) {
        const host = hostname.includes(":") ? `[${hostname}]` : hostname;
        const sentBefore = server.sentWithSendfile;
        const whole = await fetch(`http://${host}:${port}${LARGE}`);
        assertEquals(whole.headers.get("flexo-payload-origin"), "Cache");
        assertEquals(new Uint8Array(await whole.arrayBuffer()), bytes, `${hostname}: the whole file`);
        assertEquals(
          server.sentWithSendfile - sentBefore,
          sendfile ? 1 : 0,
          `${hostname}: sent with sendfile`,
        );
        const range = await fetch(`http://${host}:${port}${LARGE}`, {
          headers: { Range: "bytes=1000-2000999" },
        });
        assertEquals(range.status, 206);
        assertEquals(range.headers.get("content-range"), `bytes 1000-2000999/${bytes.length}`);
        assertEquals(
          new Uint8Array(await range.arrayBuffer()),
          bytes.subarray(1000, 2001000),
          `${hostname}: range`,
        );
        const head = await fetch(`http://${host}:${port}${LARGE}`, { method: "HEAD" });
        assertEquals(head.headers.get("content-length"), String(bytes.length));
        assertEquals(await head.arrayBuffer(), new ArrayBuffer(0), "HEAD has no body");
      }
      assertEquals(mirror.countRequests(LARGE), 1, "downloaded once");
    });
  });
}

Deno.test("startServer() sends files with the libc it is given (main.ts loads it once for everything)", async () => {
  const opened = openLibc();
  if (!opened.ok) {
    console.log(`libc cannot be loaded here (${opened.reason}): nothing to test`);
    return;
  }
  const calls = { sendfile: 0, getrlimit: 0 };
  const counted = new Proxy(opened.libc, {
    get(target, name, receiver) {
      const symbol = Reflect.get(target, name, receiver);
      if (name !== "sendfile" && name !== "getrlimit") return symbol;
      return (...args: unknown[]) => {
        calls[name]++;
        return (symbol as (...args: unknown[]) => unknown)(...args);
      };
    },
  }) as LibcSymbols;
  const LARGE = "/core/os/x86_64/large-1.0-1-x86_64.pkg.tar.zst";
  const bytes = randomBytes(2 * 1024 * 1024);
  const options = { clientTimeoutMs: 60_000, sendfile: true, libc: { ok: true as const, libc: counted } };
  await withServerOnEveryAddress({ path: LARGE, bytes }, options, async ({ server, app }) => {
    const url = `http://127.0.0.1:${server.addresses[0].port}${LARGE}`;
    assertEquals(new Uint8Array(await (await fetch(url)).arrayBuffer()), bytes, "the cold download");
    await app.downloads.idle();
    const sentBefore = server.sentWithSendfile;
    calls.sendfile = 0;
    const cached = await fetch(url);
    assertEquals(new Uint8Array(await cached.arrayBuffer()), bytes, "the cached file");
    assertEquals(server.sentWithSendfile - sentBefore, 1, "sent with sendfile");
    assert(calls.sendfile > 0, "the given libc's sendfile sent it");
    assert(calls.getrlimit > 0, "the given libc's getrlimit read the open-files limit");
  });
});
