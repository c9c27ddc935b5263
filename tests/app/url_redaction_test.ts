/**
 * Passwords in mirror and custom repository URLs (`http://user:password@host/`) are never shown: not on the
 * status page, in `/status`, in `/metrics` labels, in error answers or in log lines. And every request to a
 * mirror names flexo as its `User-Agent`.
 */

import { captureLog } from "../helpers/log_capture.ts";
import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { redactUrl, redactUrls } from "../../src/redact_url.ts";
import { USER_AGENT, VERSION } from "../../src/version.ts";

const SECRET = "s3cr3t-Pa55";
const PKG = "core/os/x86_64/tiny-1.0-1-x86_64.pkg.tar.zst";
const CUSTOM = "x86_64/own-1.0-1-x86_64.pkg.tar.zst";

Deno.test("redactUrl() hides the password of a URL's userinfo and leaves everything else", () => {
  assertEquals(redactUrl(`http://user:${SECRET}@host.test/repo/`), "http://user:***@host.test/repo/");
  assertEquals(redactUrl("https://host.test:8443/a:b@c"), "https://host.test:8443/a:b@c");
  // A name alone is often a token: all of it is hidden, with nothing else.
  assertEquals(redactUrl(`https://${SECRET}@host.test/repo/`), "https://***@host.test/repo/");
  assertEquals(redactUrl(`https://${SECRET}@host.test:8443`), "https://***@host.test:8443");
  assertEquals(redactUrls(`at https://${SECRET}@host.test failed`), "at https://***@host.test failed");
  assertEquals(
    redactUrls(`http://a:${SECRET}@one.test/ failed; https://b:${SECRET}@two.test/x too`),
    "http://a:***@one.test/ failed; https://b:***@two.test/x too",
  );
});

Deno.test("redactUrl() hides all of a password or user name that holds an '@', as URLs read them", () => {
  // A URL's userinfo ends at the last '@' before its path: new URL() takes these and fetches with them.
  const atInPassword = `http://flexo:${SECRET}@x@host.test/arch/`;
  assertEquals(new URL(atInPassword).host, "host.test");
  assertEquals(redactUrl(atInPassword), "http://flexo:***@host.test/arch/");
  const atInUser = `http://me@home:${SECRET}@host.test/`;
  assertEquals(new URL(atInUser).host, "host.test");
  assertEquals(redactUrl(atInUser), "http://me@home:***@host.test/");
  assertEquals(
    redactUrls(`http://a:${SECRET}@x@one.test/ failed; https://b@c:${SECRET}@two.test/x too`),
    "http://a:***@one.test/ failed; https://b@c:***@two.test/x too",
  );
  // A name alone, with '@' in it or in the path: the whole userinfo hidden, the path left.
  assertEquals(redactUrl("http://me@host.test:8080/a@b"), "http://***@host.test:8080/a@b");
  assertEquals(redactUrl(`http://me@${SECRET}@host.test/`), "http://***@host.test/");
  // No userinfo: a port or a path with '@' is not taken for one.
  assertEquals(redactUrl("https://host.test:8443/a:b@c"), "https://host.test:8443/a:b@c");
  assertEquals(redactUrl("http://host.test:8080?a@b"), "http://host.test:8080?a@b");
});

Deno.test("mirror and custom repository passwords appear nowhere: /status, /metrics, the page, errors, the log", async () => {
  await withTempDir(async (root) => {
    await Deno.mkdir(join(root, "core/os/x86_64"), { recursive: true });
    await Deno.mkdir(join(root, "custom/x86_64"), { recursive: true });
    await Deno.writeFile(join(root, PKG), new Uint8Array(1000).fill(7));
    await Deno.writeFile(join(root, "custom", CUSTOM), new Uint8Array(500).fill(8));
    await using mirror = await startFakeMirror(root);
    const withSecret = (url: string) => url.replace("http://", `http://flexo:${SECRET}@`);
    // A mirror that does not answer at all: its failure is logged and reported with its URL.
    const dead = withSecret("http://127.0.0.1:9/");
    const captured = await captureLog();
    try {
      await using proxy = await startTestProxy({
        mirrors: [dead, withSecret(mirror.url)],
        config: {
          custom_repo: [
            { name: "own", url: [withSecret(`${mirror.url}custom`)] },
            { name: "gone", url: withSecret("http://127.0.0.1:9/gone") },
          ],
        },
      });
      const get = async (path: string) => {
        const response = await fetch(`${proxy.url}${path}`);
        return { status: response.status, text: await response.text() };
      };
      assertEquals((await get(`/${PKG}`)).status, 200);
      assertEquals((await get(`/custom_repo/own/${CUSTOM}`)).status, 200);
      const failed = await get(`/custom_repo/gone/${CUSTOM}`);
      assert(failed.status >= 500, `the dead custom repository fails: ${failed.status}`);
      assert(failed.text.includes("flexo:***@127.0.0.1:9"), `the error names the mirror: ${failed.text}`);
      await proxy.app.downloads.idle();
      const shown = {
        status: (await get("/status")).text,
        metrics: (await get("/metrics")).text,
        page: (await get("/")).text,
        error: failed.text,
      };
      for (const [where, text] of Object.entries(shown)) {
        assert(!text.includes(SECRET), `${where} shows the password:\n${text}`);
      }
      assert(shown.status.includes("flexo:***@127.0.0.1"), "/status shows the mirrors, redacted");
      assert(shown.metrics.includes(`mirror="${redactUrl(withSecret(mirror.url))}"`), shown.metrics);
      assert(
        shown.metrics.includes(`mirror="${redactUrl(withSecret(mirror.url))}custom/"`),
        "custom repo label",
      );
      // Every request to the mirror named flexo.
      assert(mirror.requests.length >= 2);
      for (const request of mirror.requests) assertEquals(request.headers["user-agent"], `flexo/${VERSION}`);
    } finally {
      await captured.close();
    }
    const log = captured.text();
    assert(log.includes("flexo:***@127.0.0.1:9"), `the log names the failed mirror:\n${log}`);
    assert(!log.includes(SECRET), `the log shows the password:\n${log}`);
    assertEquals(USER_AGENT, `flexo/${VERSION}`);
  });
});
