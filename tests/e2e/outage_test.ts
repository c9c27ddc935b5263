/**
 * A total outage must look like one: with every mirror refusing connections, each failed attempt counts as a
 * failure of its mirror on /status and /metrics, with its last error, although no mirror is penalised in the
 * ranking (when every mirror fails, our own network is the likelier cause).
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";

const PKG = "/core/os/x86_64/gone-1-1-x86_64.pkg.tar.zst";

/** A loopback URL on which nothing listens: connections to it are refused. */
function refusingMirror(): string {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return `http://127.0.0.1:${port}/`;
}

Deno.test("every mirror refusing connections shows as failures with their errors on /status and /metrics", async () => {
  const mirrors = [refusingMirror(), refusingMirror()];
  await using proxy = await startTestProxy({ mirrors });
  const response = await fetch(proxy.url + PKG);
  await response.body?.cancel();
  assertEquals(response.status, 502);

  const status = await (await fetch(proxy.url + "/status", { headers: { Accept: "application/json" } }))
    .json();
  const ranking = status.mirrors.ranking as {
    url: string;
    failures: number;
    lastError?: { message: string };
  }[];
  assertEquals(ranking.map((m) => m.url), mirrors);
  for (const mirror of ranking) {
    assertEquals(mirror.failures, 1, `${mirror.url} failed once`);
    assert(
      mirror.lastError !== undefined && mirror.lastError.message.length > 0,
      `${mirror.url}: last error`,
    );
  }
  // The ranking rule stays: nobody is penalised for an outage of everyone.
  assertEquals(proxy.app.pool.plan("package"), mirrors);

  const metrics = await (await fetch(proxy.url + "/metrics")).text();
  for (const mirror of mirrors) {
    const line = metrics.split("\n").find((l) =>
      l.startsWith("flexo_upstream_errors_total{") && l.includes(`mirror="${mirror}"`)
    );
    assert(line !== undefined && line.endsWith(" 1"), `flexo_upstream_errors_total for ${mirror}: ${line}`);
  }
});
