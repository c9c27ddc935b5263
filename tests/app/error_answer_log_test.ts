/**
 * The log lines of failed requests: a node behind a balancer names the client the balancer reported, as the
 * request log's other lines do.
 */

import { captureLog } from "../helpers/log_capture.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { fakeFetch } from "../helpers/fake_fetch.ts";
import { testApp } from "../helpers/test_app.ts";
import type { ServeInfo } from "../../src/http/client_request.ts";

/** What the server would pass for a connection from `hostname`. */
function from(hostname: string): ServeInfo {
  return {
    remoteAddr: { transport: "tcp", hostname, port: 40000 },
    completed: new Promise(() => {}),
  } as ServeInfo;
}

Deno.test("errorAnswer() logs the client a trusted proxy named for a refused request and for a 404", async () => {
  const captured = await captureLog();
  try {
    const { fetch } = fakeFetch(() => ({ status: 404 }));
    const config = { allowed_clients: ["192.0.2.0/24"], trusted_proxies: ["127.0.0.1/32"] };
    const app = await testApp(["http://a.test/"], { fetch, config });
    try {
      const get = async (path: string, client: string) => {
        const request = new Request(`http://flexo.test${path}`, { headers: { "x-forwarded-for": client } });
        const response = await app.fetch(request, from("127.0.0.1"));
        await response.body?.cancel();
        return response.status;
      };
      assertEquals(await get("/iso/latest/a.iso", "203.0.113.5"), 403);
      assertEquals(await get("/iso/latest/b.iso", "192.0.2.8"), 404);
    } finally {
      await app.cleanup();
    }
  } finally {
    await captured.close();
  }
  const log = captured.text();
  const lines = log.split("\n");
  const refused = lines.find((line) => line.includes("/iso/latest/a.iso"));
  const missing = lines.find((line) => line.includes("/iso/latest/b.iso"));
  assert(refused?.includes("GET /iso/latest/a.iso (for 203.0.113.5) 403"), `the refused client:\n${log}`);
  assert(missing?.includes("GET /iso/latest/b.iso (for 192.0.2.8) 404"), `the client of the 404:\n${log}`);
});
