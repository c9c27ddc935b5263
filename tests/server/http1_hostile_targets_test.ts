/**
 * flexo's server against hostile targets and Hosts: paths after a `://`, traversal forms of a cached file's path,
 * bad Host headers and absolute-form targets naming another host, on the full and the quick path.
 */

import { dirname, join } from "node:path";
import { pathOf } from "../../src/app/app.ts";
import { isHeadProblem, parseRequestHead } from "../../src/server/http1_head.ts";
import { requestFromHead } from "../../src/server/http1_request.ts";
import { encodeLatin1 } from "../../src/server/http1_response.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";
import { exchange, get } from "../helpers/http1_adversary.ts";

const PKG = "/core/os/x86_64/tiny-1-1-x86_64.pkg.tar.zst";

/** The proxy (its only mirror refuses connections) with PKG in its cache. */
async function proxyWithPackage() {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  closed.close();
  const proxy = await startTestProxy({
    mirrors: [`http://127.0.0.1:${(closed.addr as Deno.NetAddr).port}/`],
  });
  await Deno.mkdir(dirname(join(proxy.dir, PKG)), { recursive: true });
  await Deno.writeFile(join(proxy.dir, PKG), encodeLatin1("PACKAGE-BYTES"));
  return proxy;
}

const closing = (target: string, host = "127.0.0.1") =>
  `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;

Deno.test("startServer() serves the path the client sent, not one found after a :// in its target", async () => {
  const head = parseRequestHead(encodeLatin1(get(`/nothing?u=http://h${PKG}`)));
  const req = isHeadProblem(head) ? head : requestFromHead(head, { localHost: "127.0.0.1:1" });
  assert(!isHeadProblem(req));
  await using proxy = await proxyWithPackage();
  const served: string[] = [];
  for (const target of [`/nothing?u=http://h${PKG}`, `/x://h${PKG}`]) {
    if ((await exchange(proxy.port, closing(target)))[0]?.body === "PACKAGE-BYTES") served.push(target);
  }
  // pathOf() reads an origin-form target as a path, not as a URL: a "://" in its query starts no path.
  assertEquals({ pathOf: pathOf(req), served }, { pathOf: "/nothing", served: [] });
});

Deno.test("startServer() refuses traversal forms of a cached file's path also once the file is in memory", async () => {
  await using proxy = await proxyWithPackage();
  const forms = [
    "/core/os/x86_64/../x86_64/tiny-1-1-x86_64.pkg.tar.zst",
    "/core/os/x86_64/%2e%2e/x86_64/tiny-1-1-x86_64.pkg.tar.zst",
    "/core\\os\\x86_64\\tiny-1-1-x86_64.pkg.tar.zst",
    `http://127.0.0.1/a/..${PKG}`,
  ];
  const statuses = async () => {
    const found: number[] = [];
    for (const form of forms) found.push((await exchange(proxy.port, closing(form)))[0].status);
    return found;
  };
  assertEquals(await statuses(), [400, 400, 400, 400]);
  assertEquals((await exchange(proxy.port, closing(PKG)))[0].body, "PACKAGE-BYTES");
  // A hit in memory now: the quick path sees the same raw target, and the same checks run before it.
  assertEquals(await statuses(), [400, 400, 400, 400]);
});

Deno.test("startServer() refuses bad Host headers and absolute-form targets naming another host, also for a hit", async () => {
  await using proxy = await proxyWithPackage();
  assertEquals((await exchange(proxy.port, closing(PKG)))[0].body, "PACKAGE-BYTES");
  const hosts = ["evil@127.0.0.1", "127.0.0.1/x", "127.0.0.1\\x", "", "127.0.0.1\r\nHost: 127.0.0.1"];
  const targets = ["http://evil.example", "http://127.0.0.1@evil.example", "http://evil.example#@127.0.0.1"];
  const bad = [...hosts.map((host) => closing(PKG, host)), ...targets.map((origin) => closing(origin + PKG))];
  for (const text of bad) {
    assertEquals((await exchange(proxy.port, text)).map((a) => a.status), [400], JSON.stringify(text));
  }
  assertEquals((await exchange(proxy.port, closing(PKG)))[0].body, "PACKAGE-BYTES");
});
