/**
 * Requests the server refuses before the app sees them (a head it cannot read, a method it does not serve) have
 * no line in the request log: main.ts counts them by status for /status and /metrics, so an operator sees a
 * scanner or a broken client at all.
 */

import { assertEquals } from "../helpers/assert.ts";
import { startFlexo, writeTestConfig } from "../helpers/flexo_process.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

/** Sends `text` on a new connection and reads the answer's status line, until the server closes. */
async function refusedStatus(port: number, text: string): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(text));
    const buffer = new Uint8Array(4096);
    let answer = "";
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      answer += new TextDecoder().decode(buffer.subarray(0, n));
    }
    return Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);
  } finally {
    conn.close();
  }
}

Deno.test("main.ts counts the requests its server refuses, by status, at /status and /metrics", async () => {
  await withTempDir(async (work) => {
    const config = await writeTestConfig(work, { cacheDir: `${work}/cache`, mirror: "http://127.0.0.1:9/" });
    await Deno.writeTextFile(config, "\nshutdown_drain_secs = 0\n", { append: true });
    const flexo = await startFlexo(config);
    try {
      assertEquals(await refusedStatus(flexo.port, "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"), 405);
      assertEquals(await refusedStatus(flexo.port, "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"), 405);
      assertEquals(await refusedStatus(flexo.port, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
      const status = await (await fetch(`${flexo.url}/status`)).json();
      assertEquals(status.refusedRequests, { "400": 1, "405": 2 });
      const metrics = await (await fetch(`${flexo.url}/metrics`)).text();
      const counted = metrics.split("\n").filter((line) => line.startsWith("flexo_refused_requests_total{"));
      assertEquals(counted.sort(), [
        'flexo_refused_requests_total{status="400"} 1',
        'flexo_refused_requests_total{status="405"} 2',
      ]);
    } finally {
      await flexo.stop();
    }
  });
});
