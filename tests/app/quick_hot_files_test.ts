/**
 * Which small cached files the quick path serves from memory: a small file that a download has just completed
 * is known (its `stat` is remembered) but not in memory; its first quick hit must load it, so that every later
 * hit is one write from memory instead of a sendfile per request (BENCHMARKS.md, "Session six": a process whose
 * first hits found the file known served it with sendfile for its whole life, at four times the CPU).
 */

import { HOT_FILE_MAX_SIZE } from "../../src/cache/cache_store.ts";
import { isHeadProblem, parseRequestHead, type RequestHead } from "../../src/server/http1_head.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { fakeFetch, serveBytes, testBytes } from "../helpers/fake_fetch.ts";
import { testApp } from "../helpers/test_app.ts";

const SMALL = "/core/os/x86_64/small-1-1-x86_64.pkg.tar.zst";
const LARGE = "/core/os/x86_64/large-1-1-x86_64.pkg.tar.zst";

function get(path: string): RequestHead {
  const parsed = parseRequestHead(
    new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: flexo.test\r\n\r\n`),
  );
  if (isHeadProblem(parsed)) throw new Error(`refused: ${parsed.message}`);
  return parsed;
}

Deno.test("quickAnswer() sends a small known file that is not in memory with sendfile once and loads it: the next hits come from memory", async () => {
  const files: Record<string, Uint8Array> = {
    [SMALL]: testBytes(4096, 7),
    [LARGE]: testBytes(HOT_FILE_MAX_SIZE + 1, 8),
  };
  const { fetch } = fakeFetch((url, req) =>
    serveBytes(files[new URL(url).pathname.replace(/^\/a/, "")], req)
  );
  const app = await testApp(["http://a.test/a/"], { fetch });
  try {
    for (const path of [SMALL, LARGE]) {
      // A cold miss: downloaded, and known to the store (not in memory) once complete.
      assertEquals(new Uint8Array(await (await app.get(path)).arrayBuffer()), files[path]);
    }
    await app.downloads.idle();
    // Reads into memory, seen as they start.
    const loads: Promise<unknown>[] = [];
    const loadHot = app.store.loadHot.bind(app.store);
    app.store.loadHot = (segments) => {
      const loading = loadHot(segments);
      loads.push(loading);
      return loading;
    };
    const large = app.quickAnswer(get(LARGE), { files: true });
    assert(
      large !== undefined && !(large instanceof Uint8Array) && "file" in large,
      "a larger known file goes out with sendfile",
    );
    large.done(undefined);
    assertEquals(loads.length, 0, "and is not read into memory");
    const first = app.quickAnswer(get(SMALL), { files: true });
    assert(
      first !== undefined && !(first instanceof Uint8Array) && "file" in first,
      "the first hit goes out with sendfile",
    );
    first.done({ whole: true, bytes: files[SMALL].length });
    assertEquals(loads.length, 1, "while the file is read into memory");
    await Promise.all(loads);
    const next = app.quickAnswer(get(SMALL), { files: true });
    assert(next instanceof Uint8Array, "the next hit is the whole answer from memory");
    assertEquals(next.subarray(next.length - files[SMALL].length), files[SMALL]);
    assertEquals(loads.length, 1);
    assertEquals(app.stats.requests.get("CACHE HIT"), 2);
  } finally {
    await app.cleanup();
  }
});
