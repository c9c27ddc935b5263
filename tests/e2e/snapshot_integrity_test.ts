/**
 * Databases are verified like packages, and the cache never goes backwards (issue 15): fault-injecting mirrors
 * on 127.0.0.1 with real repositories made by `repo-add`, and the real pacman client.
 */

import { HOLD_WHOLE_MAX_BYTES } from "../../src/download/verification.ts";
import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { addPackages, assertToolsAvailable, makeRepo, sha256File } from "../helpers/make_repo.ts";
import { makePacmanRoot, runPacman } from "../helpers/pacman.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

await assertToolsAvailable(["pacman", "repo-add", "bsdtar", "zstd"]);

const DB = "/flexotest/os/x86_64/flexotest.db";

/** The body of a response, or the error that ended it. */
async function readBody(response: Response): Promise<{ bytes?: Uint8Array; error?: unknown }> {
  try {
    return { bytes: new Uint8Array(await response.arrayBuffer()) };
  } catch (error) {
    return { error };
  }
}

function assertPacmanOk(result: { code: number; stdout: string; stderr: string }): void {
  assertEquals(result.code, 0, `pacman failed:\n${result.stdout}\n${result.stderr}`);
}

Deno.test("a corrupt database is cut off, never committed, blamed on its mirror, and the next request fails over", async () => {
  await withTempDir(async (dir) => {
    let repo = await makeRepo(join(dir, "mirror"), {
      repo: "flexotest",
      packages: [{ name: "tool", version: "0.9-1" }],
    });
    await using a = await startFakeMirror(repo.dir);
    await using b = await startFakeMirror(repo.dir);
    await using proxy = await startTestProxy({ mirrors: [a.url, b.url] });
    const cachedDb = join(proxy.dir, DB);

    const first = await fetch(proxy.url + DB);
    assertEquals(first.status, 200);
    await first.arrayBuffer();
    await proxy.app.downloads.idle();
    const good = await Deno.readFile(cachedDb);

    // A newer snapshot, which mirror A corrupts.
    repo = await addPackages(repo, [{ name: "tool", version: "0.10-1" }]);
    a.faults = { match: ".db", corruptBytes: 8 };
    const corrupt = await fetch(proxy.url + DB);
    assertEquals(corrupt.status, 200, "the database streams while it downloads");
    const length = Number(corrupt.headers.get("content-length"));
    const body = await readBody(corrupt);
    assert(
      body.error !== undefined || body.bytes!.byteLength < length,
      "the client sees a failed transfer, never a complete bad file",
    );
    await proxy.app.downloads.idle();
    assertEquals(await Deno.readFile(cachedDb), good, "the corrupt database is not committed");
    const statsA = proxy.app.pool.snapshot().find((m) => m.url === a.url)!;
    assertEquals(statsA.failures, 1, "the corrupt database counts as a failure of mirror A");

    const next = await fetch(proxy.url + DB);
    assertEquals(next.status, 200);
    const fresh = await Deno.readFile(join(repo.osDir, "flexotest.db"));
    assertEquals(new Uint8Array(await next.arrayBuffer()), fresh, "the next request gets B's valid database");
    await proxy.app.downloads.idle();
    assertEquals(await Deno.readFile(cachedDb), fresh);
    assertEquals(b.countRequests(".db"), 1);
  });
});

Deno.test("when every mirror sends a corrupt database, the cached good one keeps being served", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "mirror"), {
      repo: "flexotest",
      packages: [{ name: "tool", version: "0.9-1" }],
    });
    await using a = await startFakeMirror(repo.dir);
    await using b = await startFakeMirror(repo.dir);
    await using proxy = await startTestProxy({ mirrors: [a.url, b.url] });
    const first = await fetch(proxy.url + DB);
    const good = new Uint8Array(await first.arrayBuffer());
    const lastModified = first.headers.get("last-modified")!;
    await proxy.app.downloads.idle();

    await addPackages(repo, [{ name: "tool", version: "0.10-1" }]);
    a.faults = b.faults = { match: ".db", corruptBytes: 8 };
    for (let i = 0; i < 2; i++) {
      // Each mirror's corrupt copy is cut off once.
      const corrupt = await fetch(proxy.url + DB);
      const body = await readBody(corrupt);
      assert(
        body.error !== undefined || body.bytes!.byteLength < Number(corrupt.headers.get("content-length")),
      );
      await proxy.app.downloads.idle();
    }
    assertEquals(
      a.countRequests(".db") + b.countRequests(".db"),
      3,
      "one good answer and one corrupt per mirror",
    );

    const served = await fetch(proxy.url + DB);
    assertEquals(served.status, 200);
    assertEquals(served.headers.get("flexo-payload-origin"), "Cache");
    assertEquals(new Uint8Array(await served.arrayBuffer()), good, "the cached good database");
    const revalidated = await fetch(proxy.url + DB, { headers: { "if-modified-since": lastModified } });
    assertEquals(revalidated.status, 304);
    await revalidated.body?.cancel();
    assertEquals(await Deno.readFile(join(proxy.dir, DB)), good);
  });
});

Deno.test("a corrupt package is never committed and the next request gets it from another mirror", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "mirror"), {
      repo: "flexotest",
      // Above HOLD_WHOLE_MAX_BYTES: its first bytes go out before it is verified (a smaller one would be
      // fetched again from b within the first request, tests/download/download_small_files_test.ts).
      packages: [{ name: "tool", version: "0.10-1", size: HOLD_WHOLE_MAX_BYTES + 50_000 }],
    });
    await using a = await startFakeMirror(repo.dir);
    await using b = await startFakeMirror(repo.dir);
    await using proxy = await startTestProxy({ mirrors: [a.url, b.url] });
    await (await fetch(proxy.url + DB)).arrayBuffer();
    await proxy.app.downloads.idle();
    const pkg = repo.packages[0];
    const path = `/flexotest/os/x86_64/${pkg.fileName}`;
    a.faults = { match: ".pkg.tar.zst", corruptBytes: 4 };

    const corrupt = await fetch(proxy.url + path);
    const body = await readBody(corrupt);
    assert(body.error !== undefined || body.bytes!.byteLength < pkg.size, "never a complete bad file");
    await proxy.app.downloads.idle();
    assertEquals(await Deno.stat(join(proxy.dir, path)).catch(() => undefined), undefined, "not committed");

    const next = await fetch(proxy.url + path);
    assertEquals(next.status, 200);
    await next.arrayBuffer();
    await proxy.app.downloads.idle();
    assertEquals(await sha256File(join(proxy.dir, path)), pkg.sha256);
    assertEquals(b.countRequests(pkg.fileName), 1);
  });
});

Deno.test("pacman -Syw still gets tool 0.10-1 from the cache when only a mirror with an older snapshot answers", async () => {
  await withTempDir(async (dir) => {
    // Mirror B lags: its snapshot (tool 0.9-1) is an hour older than A's (tool 0.10-1).
    const old = await makeRepo(join(dir, "b"), {
      repo: "flexotest",
      packages: [{ name: "tool", version: "0.9-1" }],
    });
    const current = await makeRepo(join(dir, "a"), {
      repo: "flexotest",
      packages: [{ name: "tool", version: "0.10-1" }],
    });
    const now = Date.now() / 1000;
    for (const [repo, time] of [[old, now - 3600], [current, now - 60]] as const) {
      await Deno.utime(join(repo.osDir, `flexotest.db.${repo.dbExtension}`), time, time);
    }
    const a = await startFakeMirror(current.dir);
    // nginx's default (if_modified_since exact) sends an older file with 200 to an If-Modified-Since.
    await using b = await startFakeMirror(old.dir, { modifiedSinceExact: true });
    await using proxy = await startTestProxy({ mirrors: [a.url, b.url] });
    const serverUrl = `${proxy.url}/$repo/os/$arch`;
    {
      await using root = await makePacmanRoot({ serverUrl, repos: ["flexotest"] });
      assertPacmanOk(await runPacman(root, ["-Syw", "tool"]));
    }
    await proxy.app.downloads.idle();
    const cached = await Deno.readFile(join(proxy.dir, DB));
    const lastModified = (await fetch(proxy.url + DB, { method: "HEAD" })).headers.get("last-modified")!;
    await a.close(); // only the lagging mirror answers from now on

    await using fresh = await makePacmanRoot({ serverUrl, repos: ["flexotest"] });
    assertPacmanOk(await runPacman(fresh, ["-Syw", "tool"]));
    assertEquals(
      await sha256File(join(fresh.cacheDir, current.packages[0].fileName)),
      current.packages[0].sha256,
      "pacman got tool 0.10-1",
    );
    await proxy.app.downloads.idle();
    assertEquals(await Deno.readFile(join(proxy.dir, DB)), cached, "the older database is not committed");
    assertEquals(proxy.app.pool.snapshotMark(b.url).type, "lagging");
    assert(b.countRequests(".db") >= 1, "the lagging mirror was asked");

    const revalidated = await fetch(proxy.url + DB, { headers: { "if-modified-since": lastModified } });
    assertEquals(revalidated.status, 304, "the cached database is the answer");
    await revalidated.body?.cancel();
  });
});
