/**
 * Loop protection end to end: requests to mirrors carry `Via: 1.1 <node_name>`, and a proxy configured as its own
 * mirror refuses the looped request with 508 at once instead of waiting for its own download until a timeout.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";

const PKG = "/core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst";
const SIG = "/iso/latest/archlinux-x86_64.iso.sig";

Deno.test("requests to a mirror carry Via: 1.1 <node_name>", async () => {
  const seen: (string | null)[] = [];
  const mirror = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    seen.push(req.headers.get("via"));
    return new Response("sig", { headers: { "content-length": "3" } });
  });
  await using proxy = await startTestProxy({
    mirrors: [`http://127.0.0.1:${mirror.addr.port}/`],
    config: { node_name: "site-1:7878" },
  });
  try {
    const response = await fetch(`${proxy.url}${SIG}`);
    assertEquals(await response.text(), "sig");
    assertEquals(seen, ["1.1 site-1:7878"]);
  } finally {
    await mirror.shutdown();
  }
});

Deno.test("two nodes on one host get different default names", async () => {
  await using a = await startTestProxy({ mirrors: ["http://127.0.0.1:9/"] });
  await using b = await startTestProxy({ mirrors: ["http://127.0.0.1:9/"] });
  assert(a.app.nodeName !== b.app.nodeName, `${a.app.nodeName} = ${b.app.nodeName}`);
});

Deno.test("a proxy that is its own mirror answers at once, naming the loop, instead of timing out", async () => {
  // A long connect timeout: before loop protection the answer came only when it ran out.
  await using proxy = await startTestProxy({
    mirrors: ["http://127.0.0.1:9/"],
    limits: { connectTimeoutMs: 20_000 },
  });
  proxy.app.pool.setMirrors([`${proxy.url}/`], "predefined");
  for (const path of [PKG, SIG]) {
    const started = performance.now();
    const response = await fetch(`${proxy.url}${path}`);
    const text = await response.text();
    const ms = performance.now() - started;
    assert(ms < 10_000, `${path}: answered after ${ms} ms`);
    assert(response.status >= 500, `${path}: ${response.status} ${text}`);
    assert(/508|Loop/.test(text), `${path}: ${response.status} ${text}`);
  }
  // The looped request itself is answered 508.
  const looped = await fetch(`${proxy.url}${PKG}`, { headers: { via: `1.1 ${proxy.app.nodeName}` } });
  assertEquals(looped.status, 508, await looped.text());
});
