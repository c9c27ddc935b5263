import { checkAuthority, ClientRequest, rawTargetOf } from "../../src/http/client_request.ts";
import { assert, assertEquals } from "../helpers/assert.ts";

const LOCAL = { hostname: "127.0.0.1", port: 7878 };

Deno.test("checkAuthority() accepts origin-form targets with a valid Host, or none", () => {
  for (const host of [undefined, "127.0.0.1:7878", "proxy", "PROXY:80", "[::1]:7878", "flexo.lan"]) {
    assertEquals(checkAuthority({ target: "/core/os/x86_64/core.db", host }, LOCAL), undefined, `${host}`);
  }
});

Deno.test("checkAuthority() refuses a Host that no URL accepts, the same for every path", () => {
  for (const host of ["x:99999", "999.999.999.999", "bad host/", "", "a@b", "[zz]"]) {
    const problem = checkAuthority({ target: "/core/os/x86_64/core.db", host }, LOCAL);
    assertEquals(problem?.status, 400, host);
  }
});

Deno.test("checkAuthority() accepts an absolute-form target only when it names this listener", () => {
  for (const target of ["http://127.0.0.1:7878/x", "http://localhost:7878/x", "HTTP://LOCALHOST:7878"]) {
    assertEquals(checkAuthority({ target, host: "127.0.0.1:7878" }, LOCAL), undefined, target);
  }
  assertEquals(checkAuthority({ target: "http://[::1]:7878/x" }, { hostname: "::1", port: 7878 }), undefined);
  assertEquals(
    checkAuthority({ target: "http://127.0.0.1/x" }, { hostname: "127.0.0.1", port: 80 }),
    undefined,
  );
  // A forward proxy's request (curl -x): the Host agrees with the target, and it is still not ours.
  for (
    const [target, host] of [
      ["http://evil.example/core/os/x86_64/core.db", "evil.example"],
      ["http://evil.example/x", undefined],
      ["http://127.0.0.1:9999/x", "127.0.0.1:9999"],
    ] as const
  ) {
    const problem = checkAuthority({ target, host }, LOCAL);
    assertEquals(problem?.status, 400, target);
    assert(problem!.message.includes("not a forward proxy"), problem!.message);
  }
});

Deno.test("checkAuthority() checks a connection's repeated Host once", () => {
  const valid: { host?: string } = {};
  assertEquals(checkAuthority({ target: "/x", host: "proxy:7878" }, LOCAL, valid), undefined);
  assertEquals(valid.host, "proxy:7878");
  assertEquals(checkAuthority({ target: "/x", host: "x:99999" }, LOCAL, valid)?.status, 400);
  assertEquals(valid.host, "proxy:7878", "an invalid Host is not remembered");
});

Deno.test("rawTargetOf() is the target as sent for a ClientRequest, and undefined for other requests", () => {
  const request = new ClientRequest("http://a/b", { method: "GET" }, "/x/%2e%2e/b");
  assertEquals(new URL(request.url).pathname, "/b");
  assertEquals(rawTargetOf(request), "/x/%2e%2e/b");
  assertEquals(rawTargetOf(new Request("http://a/x/../b")), undefined);
});
