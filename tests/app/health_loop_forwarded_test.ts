/**
 * `/healthz`, Via loop protection and client addresses from trusted proxies, on the app alone.
 */

import { captureLog } from "../helpers/log_capture.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { NodeHealth, PROBE_VALID_MS } from "../../src/app/health.ts";
import { testApp } from "../helpers/test_app.ts";
import { clientAddressOf, forwardedFor } from "../../src/app/forwarded.ts";
import { viaNames } from "../../src/app/loop_guard.ts";
import type { ServeInfo } from "../../src/http/client_request.ts";

const PKG = "/core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst";

/** What the server would pass for a connection from `hostname`. */
function from(hostname: string): ServeInfo {
  return {
    remoteAddr: { transport: "tcp", hostname, port: 40000 },
    completed: new Promise(() => {}),
  } as ServeInfo;
}

Deno.test("/healthz is 200 ok while serving and 503 once draining", async () => {
  const app = await testApp(["http://127.0.0.1:9/"]);
  try {
    let response = await app.get("/healthz");
    assertEquals([response.status, await response.text()], [200, "ok\n"]);
    app.health.startDraining();
    response = await app.get("/healthz");
    assertEquals([response.status, await response.text()], [503, "draining\n"]);
    // A cached answer would hide the drain from a balancer behind a cache.
    assertEquals(response.headers.get("cache-control"), "no-store");
    response = await app.get("/healthz", { method: "HEAD" });
    assertEquals([response.status, await response.text()], [503, ""]);
  } finally {
    await app.cleanup();
  }
});

Deno.test("/healthz is 503 while the cache directory cannot take a file, and 200 again once it can", async () => {
  const app = await testApp(["http://127.0.0.1:9/"]);
  try {
    // A lost mount, a directory replaced: every miss fails (502) while the node answers its hits.
    await Deno.remove(app.dir, { recursive: true });
    await Deno.writeTextFile(app.dir, "not a directory");
    let response = await app.get("/healthz");
    const text = await response.text();
    assertEquals(response.status, 503, "the balancer keeps sending misses to a node that cannot store them");
    assert(text.startsWith("cache directory unusable: "), text);
    assert(text.includes(app.dir), text);
    await Deno.remove(app.dir);
    await Deno.mkdir(app.dir);
    response = await app.get("/healthz");
    assertEquals([response.status, await response.text()], [200, "ok\n"]);
  } finally {
    await app.cleanup();
  }
});

Deno.test("NodeHealth.check() probes at most once a second while the probe passes, once for checks at a time, and each time while it fails", async () => {
  let now = 0;
  let probes = 0;
  let failing = false;
  const health = new NodeHealth({
    now: () => now,
    probe: () => {
      probes++;
      return failing
        ? Promise.reject(Object.assign(new Error("read-only"), { code: "EROFS" }))
        : Promise.resolve();
    },
  });
  const all = await Promise.all([health.check(), health.check(), health.check()]);
  assertEquals([all.map((v) => v.type), probes], [["serving", "serving", "serving"], 1]);
  now = PROBE_VALID_MS - 1;
  await health.check();
  assertEquals(probes, 1, "a passed probe counts for a second");
  failing = true;
  now = PROBE_VALID_MS;
  assertEquals((await health.check()).type, "unusable_cache");
  assertEquals((await health.check()).type, "unusable_cache");
  assertEquals(probes, 3, "a failing probe is asked again at each check, so the node comes back at once");
  failing = false;
  assertEquals((await health.check()).type, "serving");
});

Deno.test("NodeHealth.check() probes again when the clock went back after a probe passed", async () => {
  let now = 10 * 3_600_000;
  let failing = false;
  const health = new NodeHealth({
    now: () => now,
    probe: () =>
      failing ? Promise.reject(Object.assign(new Error("read-only"), { code: "EROFS" })) : Promise.resolve(),
  });
  assertEquals((await health.check()).type, "serving");
  // The clock is set back an hour, and the cache directory is lost: the pass of "the future" counts no more.
  now -= 3_600_000;
  failing = true;
  assertEquals((await health.check()).type, "unusable_cache");
});

Deno.test("NodeHealth.check() logs once when /healthz turns 503 for the cache directory, and when it is 200 again", async () => {
  const captured = await captureLog();
  try {
    let failing = true;
    const health = new NodeHealth({
      now: () => 0,
      probe: () =>
        failing
          ? Promise.reject(Object.assign(new Error("Read-only file system (os error 30)"), { code: "EROFS" }))
          : Promise.resolve(),
    });
    for (let i = 0; i < 3; i++) assertEquals((await health.check()).type, "unusable_cache");
    failing = false;
    assertEquals((await health.check()).type, "serving");
    assertEquals((await health.check()).type, "serving");
  } finally {
    await captured.close();
  }
  const log = captured.text();
  const lines = log.split("\n").filter((line) => line.includes("flexo.health"));
  assertEquals(lines.length, 2, log);
  assert(lines[0].startsWith("<4>[WRN]") && lines[0].includes("Read-only file system"), lines[0]);
  assert(lines[1].startsWith("<6>[INF]") && lines[1].includes("200"), lines[1]);
});

Deno.test("NodeHealth.check() is serving through a full disk or a lack of descriptors, which pass by themselves", async () => {
  const failing = (code: string) => () => Promise.reject(Object.assign(new Error(code), { code }));
  for (const code of ["ENOSPC", "EDQUOT", "EMFILE", "ENFILE", "EINTR"]) {
    assertEquals(await new NodeHealth({ probe: failing(code) }).check(), { type: "serving" }, code);
  }
  for (const code of ["EROFS", "EACCES", "EPERM", "ENOTDIR", "EIO"]) {
    assertEquals((await new NodeHealth({ probe: failing(code) }).check()).type, "unusable_cache", code);
  }
  const draining = new NodeHealth({ probe: failing("EROFS") });
  draining.startDraining();
  assertEquals(await draining.check(), { type: "draining" });
});

Deno.test("/healthz answers a trusted balancer's own health check, which names no client", async () => {
  // The balancer is trusted, the clients it forwards are allowed; the balancer itself is not a client.
  const config = { allowed_clients: ["192.0.2.0/24"], trusted_proxies: ["127.0.0.1/32"] };
  const app = await testApp(["http://127.0.0.1:9/"], { config });
  try {
    assertEquals(app.admit!({ transport: "tcp", hostname: "127.0.0.1", port: 1 }), "each_request");
    // HAProxy's `option httpchk` and nginx's checks send no X-Forwarded-For.
    let response = await app.fetch(new Request("http://flexo.test/healthz"), from("127.0.0.1"));
    assertEquals(
      [response.status, await response.text()],
      [200, "ok\n"],
      "every node looks down to the balancer",
    );
    app.health.startDraining();
    response = await app.fetch(new Request("http://flexo.test/healthz"), from("127.0.0.1"));
    assertEquals(response.status, 503);
    // The files are still only for the allowed clients.
    response = await app.fetch(new Request(`http://flexo.test${PKG}`), from("127.0.0.1"));
    assertEquals(response.status, 403);
  } finally {
    await app.cleanup();
  }
});

Deno.test("a request that carries the node's own name in Via is answered 508 without asking a mirror", async () => {
  let asked = 0;
  const app = await testApp(["http://127.0.0.1:9/"], {
    nodeName: "node-a:7878",
    fetch: () => {
      asked++;
      return Promise.resolve(new Response("x"));
    },
  });
  try {
    const response = await app.get(PKG, { headers: { via: "1.1 tier-2, 1.1 node-a:7878" } });
    assertEquals(response.status, 508, await response.text());
    assertEquals(asked, 0);
  } finally {
    await app.cleanup();
  }
});

Deno.test("Via names and Forwarded addresses are parsed as RFC 9110 and RFC 7239 write them", () => {
  assertEquals(viaNames("1.1 a:7878, HTTP/1.0 b (comment), 2 c"), ["a:7878", "b", "c"]);
  assertEquals(forwardedFor('for=192.0.2.60;proto=http, for="[2001:db8::1]:4711", For=10.0.0.1:80'), [
    "192.0.2.60",
    "2001:db8::1",
    "10.0.0.1",
  ]);
  const client = clientAddressOf(["127.0.0.1/32", "10.0.0.0/8"]);
  // Read from the right, skipping trusted proxies: a client cannot pass itself off by sending the header.
  assertEquals(
    client("127.0.0.1", new Headers({ "x-forwarded-for": "1.2.3.4, 203.0.113.9, 10.0.0.2" })).address,
    "203.0.113.9",
  );
  assertEquals(client("192.0.2.1", new Headers({ "x-forwarded-for": "10.9.9.9" })), {
    source: "connection",
    address: "192.0.2.1",
  });
});

Deno.test("trusted_proxies: a forwarded address counts only on a connection from a trusted proxy", async () => {
  const config = { allowed_clients: ["127.0.0.1/32", "192.0.2.0/24"], trusted_proxies: ["127.0.0.1/32"] };
  const app = await testApp(["http://127.0.0.1:9/"], { config });
  try {
    const refused = { "x-forwarded-for": "203.0.113.5" };
    // Untrusted connection (allowed by its own address): the header is ignored.
    assertEquals(app.admit!({ transport: "tcp", hostname: "192.0.2.7", port: 1 }), undefined);
    let response = await app.fetch(
      new Request("http://flexo.test/status", { headers: refused }),
      from("192.0.2.7"),
    );
    assertEquals(response.status, 200);
    // Trusted proxy: admitted per connection, then its client is checked per request (none on the quick path).
    assertEquals(app.admit!({ transport: "tcp", hostname: "127.0.0.1", port: 1 }), "each_request");
    response = await app.fetch(
      new Request("http://flexo.test/status", { headers: refused }),
      from("127.0.0.1"),
    );
    assertEquals(response.status, 403, await response.text());
    response = await app.fetch(
      new Request("http://flexo.test/status", { headers: { forwarded: "for=203.0.113.5" } }),
      from("127.0.0.1"),
    );
    assertEquals(response.status, 403);
    response = await app.fetch(
      new Request("http://flexo.test/status", { headers: { "x-forwarded-for": "192.0.2.8" } }),
      from("127.0.0.1"),
    );
    assertEquals(response.status, 200);
    // An untrusted address outside allowed_clients is still refused by connection.
    assertEquals(app.admit!({ transport: "tcp", hostname: "198.51.100.1", port: 1 }), {
      status: 403,
      message: "This address is not in allowed_clients; ask the proxy's administrator to add it",
    });
  } finally {
    await app.cleanup();
  }
});
