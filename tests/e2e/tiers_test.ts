/**
 * Two tiers as docs/scaling.md describes them: a site flexo whose only mirror is a regional flexo, whose mirror
 * is the origin. The real pacman client through the site tier; each file leaves the origin once; with the origin
 * gone, pacman still works through both tiers from the cached databases. And tiers that point at each other
 * (A -> B -> A) are refused at once instead of waiting on each other's download until a timeout.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { assertToolsAvailable, makeRepo, type PackageSpec } from "../helpers/make_repo.ts";
import { makePacmanRoot, runPacman } from "../helpers/pacman.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";
import { randomBytes } from "../helpers/bytes.ts";

const REPO_DIR = "tiertest/os/x86_64";

Deno.test({
  name:
    "pacman through two tiers: each file leaves the origin once, and with the origin gone pacman still works",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await assertToolsAvailable(["pacman", "repo-add", "bsdtar", "zstd"]);
    const dir = await Deno.makeTempDir({ prefix: "flexo-tiers-" });
    try {
      const packages: PackageSpec[] = Array.from({ length: 6 }, (_, i) => ({
        name: `tier${i}`,
        version: "1.0-1",
        size: 3000 + i * 700,
      }));
      const repo = await makeRepo(join(dir, "mirror"), { repo: "tiertest", packages });
      const origin = await startFakeMirror(join(dir, "mirror"));
      await using regional = await startTestProxy({ mirrors: [origin.url] });
      await using site = await startTestProxy({ mirrors: [`${regional.url}/`] });
      const viaSite = async () => {
        const root = await makePacmanRoot({ serverUrl: `${site.url}/$repo/os/$arch`, repos: ["tiertest"] });
        try {
          return await runPacman(root, ["-Syw", ...packages.map((p) => p.name)]);
        } finally {
          await root.remove();
        }
      };
      try {
        // Two clients one after the other: the second one's files come from the site's cache.
        for (const client of [1, 2]) {
          const result = await viaSite();
          assertEquals(
            result.code,
            0,
            `client ${client}: pacman failed:\n${result.stdout}\n${result.stderr}`,
          );
        }
        for (const pkg of repo.packages) {
          assertEquals(origin.countRequests(`/${pkg.fileName}`, { method: "GET" }), 1, pkg.fileName);
          const cached = join(site.dir, REPO_DIR, pkg.fileName);
          assertEquals((await Deno.stat(cached)).size, pkg.size, `${pkg.fileName} at the site`);
          await Deno.stat(join(regional.dir, REPO_DIR, pkg.fileName));
        }
        // The database is revalidated through both tiers, but its bytes left the origin once.
        const full = origin.requests.filter((r) =>
          r.method === "GET" && r.path.endsWith("/tiertest.db") && !r.headers["if-modified-since"]
        );
        assertEquals(full.length, 1, "the database was fetched whole more than once");
        assert(
          origin.countRequests("/tiertest.db", { method: "GET" }) >= 2,
          "the second -Sy was not revalidated",
        );
        assertEquals(
          origin.requests.map((r) => r.headers["via"]).filter((via) => via !== undefined).every((via) =>
            via === `1.1 ${site.app.nodeName}, 1.1 ${regional.app.nodeName}`
          ),
          true,
          "requests at the origin name both tiers in Via",
        );
      } finally {
        await origin.close();
      }

      // The origin is gone: both tiers answer from their cached databases, and pacman still works.
      const result = await viaSite();
      assertEquals(result.code, 0, `pacman failed with the origin gone:\n${result.stdout}\n${result.stderr}`);
      assert(regional.app.stats.requests.get("STALE")! >= 1, "the regional tier answered a stale database");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const PKG = "/core/os/x86_64/loop-1.0-1-x86_64.pkg.tar.zst";
const DB = "/core/os/x86_64/core.db";
/** A file that is passed through, not cached. */
const PASSED = "/iso/latest/archlinux-x86_64.iso.sig";

Deno.test("tiers that are each other's mirror (A -> B -> A) answer at once naming the loop, not after a timeout", async () => {
  // Long timeouts: before loop protection covered tiers, the answer came only when they ran out.
  const limits = { connectTimeoutMs: 20_000, lastResortStallMs: 20_000 };
  await using a = await startTestProxy({ mirrors: ["http://127.0.0.1:9/"], limits });
  await using b = await startTestProxy({ mirrors: [`${a.url}/`], limits });
  a.app.pool.setMirrors([`${b.url}/`], "predefined");
  for (const path of [PKG, DB, PASSED]) {
    const started = performance.now();
    const response = await fetch(`${a.url}${path}`);
    const text = await response.text();
    const ms = performance.now() - started;
    assert(ms < 10_000, `${path}: answered after ${ms} ms`);
    assertEquals(response.status, 508, `${path}: ${text}`);
    assert(text.includes("Loop detected"), `${path}: ${text}`);
  }
});

Deno.test("a tier loop fails over: a tier whose first mirror leads back to it gets the file from its next mirror", async () => {
  const bytes = randomBytes(100_000);
  const gets: string[] = [];
  const origin = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    if (req.method === "GET") gets.push(new URL(req.url).pathname);
    return new Response(bytes as Uint8Array<ArrayBuffer>, {
      headers: { "content-length": String(bytes.length) },
    });
  });
  try {
    const limits = { connectTimeoutMs: 20_000, lastResortStallMs: 20_000 };
    await using a = await startTestProxy({ mirrors: ["http://127.0.0.1:9/"], limits });
    await using b = await startTestProxy({ mirrors: [`${a.url}/`], limits });
    a.app.pool.setMirrors([`${b.url}/`, `http://127.0.0.1:${origin.addr.port}/`], "predefined");
    const started = performance.now();
    const response = await fetch(`${a.url}${PKG}`);
    assertEquals(response.status, 200);
    assertEquals(new Uint8Array(await response.arrayBuffer()), bytes);
    const ms = performance.now() - started;
    assert(ms < 10_000, `answered after ${ms} ms`);
    await a.app.downloads.idle();
    assertEquals(gets, [PKG], "the origin was asked once, by A's second mirror");
    assertEquals(b.app.store.statComplete(PKG.slice(1).split("/")), undefined, "B cached a looped file");
  } finally {
    await origin.shutdown();
  }
});
