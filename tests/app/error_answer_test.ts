/**
 * Error answers as caches in front see them: flexo's errors are transient (a package not yet on the mirrors, a
 * mirror outage, a refused range), so no cache may keep one; a 404 or 405 is cacheable by default (RFC 9111
 * section 4.2.2), and caches such as Varnish, or nginx with `proxy_cache_valid any`, keep them unless told not to.
 */

import { errorAnswer } from "../../src/app/error_answer.ts";
import { HttpError } from "../../src/http/http_error.ts";
import { Stats } from "../../src/status/stats.ts";
import { assertEquals } from "../helpers/assert.ts";
import { fakeFetch } from "../helpers/fake_fetch.ts";
import { testApp } from "../helpers/test_app.ts";

Deno.test("errorAnswer() tells every cache not to store an error answer, an HttpError or an internal error", () => {
  const answer = errorAnswer(new Stats({ now: () => 0 }), () => 0);
  const request = { method: "GET", path: "/core/os/x86_64/a-1-1-x86_64.pkg.tar.zst" };
  const errors = [
    new HttpError(404, "not found upstream"),
    new HttpError(405, "Only GET and HEAD are supported", { headers: { Allow: "GET, HEAD" } }),
    new HttpError(416, "outside the file", { headers: { "Content-Range": "bytes */10" } }),
    new HttpError(502, "every mirror failed"),
    new HttpError(504, "only-if-cached"),
    new Error("a bug"),
  ];
  for (const error of errors) {
    const response = answer(error, request);
    assertEquals(response.headers.get("cache-control"), "no-store", `${response.status}`);
  }
});

Deno.test("createApp() answers a package the mirrors lack with a 404 that no cache may store", async () => {
  const { fetch } = fakeFetch(() => ({ status: 404 }));
  const app = await testApp(["http://a.test/"], { fetch });
  try {
    for (const method of ["GET", "HEAD", "POST"]) {
      const response = await app.get("/core/os/x86_64/new-1-1-x86_64.pkg.tar.zst", { method });
      await response.body?.cancel();
      assertEquals(
        [response.status, response.headers.get("cache-control")],
        [method === "POST" ? 405 : 404, "no-store"],
        method,
      );
    }
  } finally {
    await app.cleanup();
  }
});
