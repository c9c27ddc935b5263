/**
 * Draining on stop: after SIGTERM the real `flexo` process answers `/healthz` with 503 for `shutdown_drain_secs`
 * while it still serves requests, so a balancer moves clients away before the listener closes; then it exits.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { startFlexo, writeTestConfig } from "../helpers/flexo_process.ts";
import { waitFor } from "../helpers/wait.ts";

const PKG = "/core/os/x86_64/drain-1-1-any.pkg.tar.zst";

Deno.test("after SIGTERM /healthz is 503 for shutdown_drain_secs while requests are still served, then flexo exits", async () => {
  const work = await Deno.makeTempDir({ prefix: "flexo-drain-" });
  const bytes = new Uint8Array(1000).fill(7);
  const mirror = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(bytes, { headers: { "content-length": String(bytes.length) } }),
  );
  try {
    const configPath = await writeTestConfig(work, {
      cacheDir: `${work}/cache`,
      mirror: `http://127.0.0.1:${mirror.addr.port}/`,
    });
    await Deno.writeTextFile(configPath, "\nshutdown_drain_secs = 3\n", { append: true });
    const flexo = await startFlexo(configPath);
    const healthz = async () => {
      const response = await fetch(`${flexo.url}/healthz`);
      return { status: response.status, text: await response.text() };
    };
    assertEquals(await healthz(), { status: 200, text: "ok\n" });

    const stopping = flexo.stop("SIGTERM");
    await waitFor("/healthz to answer 503", async () => (await healthz()).status === 503, 2_500);
    const during = await fetch(`${flexo.url}${PKG}`);
    assertEquals(during.status, 200, "requests are still served while draining");
    assertEquals(new Uint8Array(await during.arrayBuffer()), bytes);
    assertEquals((await healthz()).text, "draining\n");

    const status = await stopping;
    assertEquals(status.code, 0, flexo.output());
    const refused = await fetch(`${flexo.url}/healthz`).then(() => false, () => true);
    assert(refused, "the listener is closed after the drain");
  } finally {
    await mirror.shutdown();
    await Deno.remove(work, { recursive: true });
  }
});
