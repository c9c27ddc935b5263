/**
 * flexo bundled into one module as `deno compile` (scripts/compile.ts, BUNDLE) embeds it in the executable: the
 * bundle is made here by `buildBundle()`, `deno bundle` with the same esbuild settings (the executable itself
 * needs a runtime base from dl.deno.land, which these machines cannot reach), and run with the executable's
 * permissions and V8 flags. It must do what main.ts does: download, verify and cache a package, serve it again
 * from the cache, refuse a corrupt one, and answer /status and /metrics (prom-client loads at the first scrape).
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { startFlexo, writeTestConfig } from "../helpers/flexo_process.ts";
import { makeRepo } from "../helpers/make_repo.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { waitFor } from "../helpers/wait.ts";
import { buildBundle, PERMISSIONS, V8_FLAGS_ARG } from "../../scripts/compile.ts";

Deno.test("main.ts bundled into one module serves, caches, verifies and reports as main.ts does", async () => {
  await withTempDir(async (work) => {
    const bundle = join(work, "flexo.js");
    await buildBundle(bundle);
    const text = await Deno.readTextFile(bundle);
    assert(
      !text.includes("sourceMappingURL"),
      "the bundle has no source map, whose text would stay in memory",
    );
    assert(
      !/^import .* from "(npm:|jsr:|\.{0,2}\/|file:)/m.test(text),
      "one module: flexo's files and the npm packages are all inside it (only node: built-ins are imported)",
    );

    const repo = await makeRepo(join(work, "mirror"), {
      repo: "flexotest",
      packages: [{ name: "alpha", version: "1.0-1", size: 60_000 }, { name: "beta", version: "1.0-1" }],
    });
    const [alpha, beta] = repo.packages;
    // The mirror's copy of beta is corrupt (same size, other bytes): the database's SHA-256 must catch it.
    const corrupt = await Deno.readFile(beta.path);
    corrupt[corrupt.length - 1] ^= 0xff;
    await Deno.writeFile(beta.path, corrupt);
    await using mirror = await startFakeMirror(repo.dir);
    const cacheDir = join(work, "cache");
    const config = await writeTestConfig(work, { cacheDir, mirror: mirror.url });
    const flexo = await startFlexo(config, { main: bundle, denoFlags: [...PERMISSIONS, V8_FLAGS_ARG] });
    try {
      const folder = `${flexo.url}/flexotest/os/x86_64`;
      const db = await fetch(`${folder}/flexotest.db`);
      assertEquals(db.status, 200);
      await db.arrayBuffer();

      const first = await fetch(`${folder}/${alpha.fileName}`);
      assertEquals(first.status, 200);
      assertEquals(new Uint8Array(await first.arrayBuffer()), await Deno.readFile(alpha.path));
      // The last byte goes out before the download's commit (sync and rename) ends: a request meanwhile would
      // join the download, not read the cache. A HEAD says where a GET would be answered from.
      await waitFor("the package's commit", async () => {
        const head = await fetch(`${folder}/${alpha.fileName}`, { method: "HEAD" });
        await head.body?.cancel();
        return head.headers.get("flexo-payload-origin") === "Cache";
      });
      const again = await fetch(`${folder}/${alpha.fileName}`);
      assertEquals(again.headers.get("flexo-payload-origin"), "Cache");
      assertEquals(new Uint8Array(await again.arrayBuffer()), await Deno.readFile(alpha.path));
      assertEquals(
        mirror.countRequests(alpha.fileName, { method: "GET" }),
        1,
        "fetched from the mirror once",
      );

      const bad = await fetch(`${folder}/${beta.fileName}`);
      await bad.body?.cancel();
      // The download goes on after the client has gone; its verification ends it, counted at /metrics.
      let body = "";
      await waitFor("the corrupt package's rejection at /metrics", async () => {
        const metrics = await fetch(`${flexo.url}/metrics`);
        assertEquals(metrics.status, 200);
        body = await metrics.text();
        return /^flexo_integrity_rejections_total [1-9]/m.test(body);
      });
      assert(/^flexo_requests_total\{result="cache_hit"\} [1-9]/m.test(body), body.slice(0, 2000));
      const cached = await Deno.stat(join(cacheDir, "flexotest/os/x86_64", beta.fileName)).then(
        () => true,
        () => false,
      );
      assert(!cached, "a package whose SHA-256 is not the database's is never cached");

      const status = await (await fetch(`${flexo.url}/status`)).json();
      assertEquals(status.cache.complete, true);
    } finally {
      await flexo.stop();
    }
  });
});
