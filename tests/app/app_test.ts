import { HOT_FILE_RECHECK_MS } from "../../src/cache/cache_store.ts";
import { assertEquals } from "../helpers/assert.ts";
import { fakeFetch, serveBytes, testBytes } from "../helpers/fake_fetch.ts";
import { testApp } from "../helpers/test_app.ts";

const PKG = "/core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst";

const address = (hostname: string): Deno.NetAddr => ({ transport: "tcp", hostname, port: 40000 });

Deno.test("createApp() admits only allowed_clients when the list is set, and every client when it is empty", async () => {
  const { fetch, requests } = fakeFetch((_url, req) => serveBytes(testBytes(1000), req));
  const app = await testApp(["http://a.test/"], {
    fetch,
    config: { allowed_clients: ["192.168.1.0/24", "::1", "fd00::/8"] },
  });
  const open = await testApp(["http://a.test/"], { fetch });
  try {
    for (
      const [hostname, admitted] of [
        ["192.168.1.77", true],
        ["::ffff:192.168.1.5", true],
        ["::1", true],
        ["fd12::5", true],
        ["192.168.2.1", false],
        ["10.0.0.1", false],
        ["2001:db8::1", false],
      ] as const
    ) {
      const refusal = app.admit?.(address(hostname));
      assertEquals(refusal === undefined, admitted, `${hostname}: ${JSON.stringify(refusal)}`);
      if (refusal) assertEquals(refusal !== "each_request" && refusal.status, 403);
      assertEquals(
        open.admit?.(address(hostname)),
        undefined,
        "everyone is admitted without allowed_clients",
      );
    }
    assertEquals(requests.length, 0, "deciding on a client causes no upstream traffic");
  } finally {
    await app.cleanup();
    await open.cleanup();
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

Deno.test("createApp() gives its surelyMissing check to the cache store", async () => {
  const asked: string[] = [];
  const app = await testApp(["http://a.test/"], {
    surelyMissing: (path) => {
      asked.push(path);
      return true;
    },
  });
  try {
    assertEquals(app.store.statComplete(["core", "os", "x86_64", "b-1-1-x86_64.pkg.tar.zst"]), undefined);
    assertEquals(asked, [`${app.dir}/core/os/x86_64/b-1-1-x86_64.pkg.tar.zst`]);
  } finally {
    await app.cleanup();
  }
});
