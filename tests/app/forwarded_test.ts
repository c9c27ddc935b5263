/**
 * Client addresses behind a balancer that writes one of `Forwarded` and `X-Forwarded-For` and passes the other on
 * as the client sent it (HAProxy's `option forwardfor` and nginx's `$proxy_add_x_forwarded_for`, as shipped in
 * conf/, write X-Forwarded-For and leave a client's `Forwarded` alone).
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { clientAddressOf } from "../../src/app/forwarded.ts";
import { testApp } from "../helpers/test_app.ts";
import type { ServeInfo } from "../../src/http/client_request.ts";

const BALANCER = "127.0.0.1";

Deno.test("clientAddressOf() does not take a Forwarded that the client wrote over the X-Forwarded-For the balancer wrote", () => {
  const client = clientAddressOf([`${BALANCER}/32`]);
  // The client 203.0.113.5 sends `Forwarded: for=192.0.2.8`; HAProxy adds `X-Forwarded-For: 203.0.113.5`.
  const spoofed = client(
    BALANCER,
    new Headers({ forwarded: "for=192.0.2.8", "x-forwarded-for": "203.0.113.5" }),
  );
  // And the other way round, behind a balancer that writes Forwarded.
  const other = client(
    BALANCER,
    new Headers({ forwarded: "for=203.0.113.5", "x-forwarded-for": "192.0.2.8" }),
  );
  for (const found of [spoofed, other]) {
    assertEquals(found.source, "conflicting", JSON.stringify(found));
    assertEquals(found.address, "unknown");
  }
  // A balancer that writes both writes the same client in each (ports and brackets aside).
  assertEquals(
    client(
      BALANCER,
      new Headers({ forwarded: 'for="[2001:db8::5]:4711"', "x-forwarded-for": "2001:DB8::5" }),
    ),
    { source: "forwarded", address: "2001:db8::5", via: BALANCER },
  );
  // Two balancers, the first writing X-Forwarded-For and the second Forwarded: the second names the first only.
  const two = clientAddressOf([`${BALANCER}/32`, "10.0.0.0/8"]);
  assertEquals(
    two(BALANCER, new Headers({ forwarded: "for=10.0.0.2", "x-forwarded-for": "203.0.113.5" })).address,
    "203.0.113.5",
  );
  assertEquals(
    two(BALANCER, new Headers({ forwarded: "for=192.0.2.8, for=10.0.0.2", "x-forwarded-for": "203.0.113.5" }))
      .source,
    "conflicting",
  );
  // One header alone is read as before: from the right, skipping trusted proxies.
  assertEquals(
    client(BALANCER, new Headers({ "x-forwarded-for": "192.0.2.8, 203.0.113.5" })).address,
    "203.0.113.5",
  );
  assertEquals(
    client(BALANCER, new Headers({ forwarded: "for=192.0.2.8, for=203.0.113.5" })).address,
    "203.0.113.5",
  );
});

Deno.test("a client behind the balancer cannot get past allowed_clients with a Forwarded header of its own", async () => {
  const config = { allowed_clients: ["192.0.2.0/24"], trusted_proxies: [`${BALANCER}/32`] };
  const app = await testApp(["http://127.0.0.1:9/"], { config });
  try {
    const info = {
      remoteAddr: { transport: "tcp", hostname: BALANCER, port: 40000 },
      completed: new Promise(() => {}),
    } as ServeInfo;
    const status = async (headers: Record<string, string>) => {
      const response = await app.fetch(new Request("http://flexo.test/status", { headers }), info);
      return { status: response.status, text: await response.text() };
    };
    // What HAProxy in front (conf/haproxy.cfg, option forwardfor) hands on for the client 203.0.113.5.
    const spoofed = await status({ forwarded: "for=192.0.2.8", "x-forwarded-for": "203.0.113.5" });
    assertEquals(spoofed.status, 403, spoofed.text);
    assert(spoofed.text.includes("Forwarded and X-Forwarded-For name different clients"), spoofed.text);
    assertEquals((await status({ "x-forwarded-for": "192.0.2.8" })).status, 200);
  } finally {
    await app.cleanup();
  }
});
