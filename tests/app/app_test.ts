import { isForeignAbsoluteForm } from "../../src/app/app.ts";
import { HOT_FILE_RECHECK_MS } from "../../src/cache/cache_store.ts";
import { assertEquals } from "../helpers/assert.ts";
import { fakeFetch, serveBytes, testBytes } from "../helpers/fake_fetch.ts";
import { testApp } from "../helpers/test_app.ts";

const PKG = "/core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst";

function infoFrom(hostname: string): Deno.ServeHandlerInfo<Deno.NetAddr> {
  return {
    remoteAddr: { transport: "tcp", hostname, port: 40000 },
    completed: Promise.resolve(),
  } as Deno.ServeHandlerInfo<Deno.NetAddr>;
}

Deno.test("createApp() answers only allowed_clients when the list is set", async () => {
  const { fetch, requests } = fakeFetch((_url, req) => serveBytes(testBytes(1000), req));
  const app = await testApp(["http://a.test/"], {
    fetch,
    config: { allowed_clients: ["192.168.1.0/24", "::1", "fd00::/8"] },
  });
  try {
    for (
      const [address, status] of [
        ["192.168.1.77", 200],
        ["::ffff:192.168.1.5", 200],
        ["::1", 200],
        ["fd12::5", 200],
        ["192.168.2.1", 403],
        ["10.0.0.1", 403],
        ["2001:db8::1", 403],
      ] as const
    ) {
      const response = await app.fetch(new Request(`http://flexo.test${PKG}`), infoFrom(address));
      assertEquals(response.status, status, `${address} got ${response.status}`);
      await response.body?.cancel();
    }
    const status = await app.fetch(new Request("http://flexo.test/status"), infoFrom("10.0.0.1"));
    assertEquals(status.status, 403, "the status page is protected too");
    await status.body?.cancel();
    assertEquals(requests.length, 1, "refused clients cause no upstream traffic");
  } finally {
    await app.cleanup();
  }
});

Deno.test("createApp() answers everyone when allowed_clients is empty, as flexo does", async () => {
  const { fetch } = fakeFetch((_url, req) => serveBytes(testBytes(1000), req));
  const app = await testApp(["http://a.test/"], { fetch });
  try {
    const response = await app.fetch(new Request(`http://flexo.test${PKG}`), infoFrom("203.0.113.9"));
    assertEquals(response.status, 200);
    await response.body?.cancel();
  } finally {
    await app.cleanup();
  }
});

Deno.test("isForeignAbsoluteForm() tells absolute-form targets for other hosts from ordinary requests", () => {
  const request = (url: string, host?: string) => new Request(url, { headers: host ? { host } : {} });
  assertEquals(isForeignAbsoluteForm(request("http://127.0.0.1:7878/x", "127.0.0.1:7878")), false);
  assertEquals(isForeignAbsoluteForm(request("http://proxy/x", "PROXY:80")), false);
  assertEquals(isForeignAbsoluteForm(request("http://[::1]:7878/x", "[::1]:7878")), false);
  assertEquals(isForeignAbsoluteForm(request("http://localhost:7878/x")), false);
  assertEquals(isForeignAbsoluteForm(request("http://evil/x", "127.0.0.1:7878")), true);
  assertEquals(isForeignAbsoluteForm(request("http://evil/x", "bad host/")), true);
});

Deno.test("createApp() refuses an absolute-form request for another host also for a file it answers from memory", async () => {
  const data = testBytes(4096, 43);
  const { fetch } = fakeFetch((_url, req) => serveBytes(data, req));
  const app = await testApp(["http://a.test/"], { fetch });
  const get = (url: string, host: string) => app.fetch(new Request(url, { headers: { host } }));
  try {
    for (let i = 0; i < 3; i++) {
      const response = await get(`http://flexo.test${PKG}`, "flexo.test");
      assertEquals(new Uint8Array(await response.arrayBuffer()), data);
      await app.downloads.idle();
    }
    for (
      const [url, host] of [[`http://evil.test${PKG}`, "flexo.test"], [
        `http://flexo.test${PKG}`,
        "flexo.tes",
      ]]
    ) {
      const refused = await get(url, host);
      await refused.body?.cancel();
      assertEquals(refused.status, 400, `${url} with Host ${host}`);
    }
    assertEquals(app.stats.requests.get("CACHE HIT"), 2);
  } finally {
    await app.cleanup();
  }
});

Deno.test("createApp() answers a repeated small cache hit from memory with the same headers and fresh bytes", async () => {
  const data = testBytes(4096, 41);
  const { fetch, requests } = fakeFetch((_url, req) => serveBytes(data, req));
  let clockOffset = 0;
  const app = await testApp(["http://a.test/"], { fetch, now: () => Date.now() + clockOffset });
  const get = (init?: RequestInit) =>
    app.fetch(
      new Request(`http://flexo.test${PKG}`, { ...init, headers: { host: "flexo.test", ...init?.headers } }),
    );
  try {
    await (await get()).arrayBuffer();
    await app.downloads.idle();
    const first = await get(); // from disk, loaded into memory
    const firstBody = new Uint8Array(await first.arrayBuffer());
    const second = await get(); // from memory
    assertEquals(new Uint8Array(await second.arrayBuffer()), firstBody);
    assertEquals([...second.headers], [...first.headers]);
    assertEquals(second.headers.get("flexo-payload-origin"), "Cache");
    const ranged = await get({ headers: { range: "bytes=0-9" } });
    assertEquals(ranged.status, 206);
    assertEquals(new Uint8Array(await ranged.arrayBuffer()), data.slice(0, 10));
    // The same answer again: the clone of the kept response still has its body.
    assertEquals(new Uint8Array(await (await get()).arrayBuffer()), firstBody);
    // The file changes on disk (say, replaced by hand): memory serves the new bytes once the file is checked.
    const replaced = testBytes(4096, 42);
    await Deno.writeFile(`${app.dir}${PKG}`, replaced);
    clockOffset += HOT_FILE_RECHECK_MS;
    const fresh = await get();
    assertEquals(new Uint8Array(await fresh.arrayBuffer()), replaced);
    assertEquals(fresh.headers.get("content-length"), "4096");
    assertEquals(requests.length, 1);
    assertEquals(app.stats.requests.get("CACHE HIT"), 5);
  } finally {
    await app.cleanup();
  }
});

Deno.test("isForeignAbsoluteForm() refuses an absolute-form target whose host no URL parser accepts", () => {
  const request = { url: "http://\u{18CD6}/", headers: new Headers({ host: "127.0.0.1:7878" }) } as Request;
  assertEquals(isForeignAbsoluteForm(request), true);
});
