/**
 * Cache hits answered without routing: which requests are answered (remembered package paths, plain GETs) and
 * which are left to the full path, the bytes of an answer from memory, a known file offered for sendfile and
 * its read mark, and the statistics.
 */

import { dirname } from "node:path";
import { type CachedFile, CacheStore, HOT_FILE_MAX_SIZE } from "../../src/cache/cache_store.ts";
import type { QuickFile } from "../../src/server/quick_answer.ts";
import { isHeadProblem, latin1, parseRequestHead, type RequestHead } from "../../src/server/http1_head.ts";
import { httpDate } from "../../src/server/http1_response.ts";
import { QuickAnswers } from "../../src/app/quick_answers.ts";
import { AnswerLog } from "../../src/app/request_log.ts";
import { parseRequestPath, type RequestTarget } from "../../src/repo/request_path.ts";
import { IMMUTABLE, serveCachedFile } from "../../src/app/responses.ts";
import { Stats } from "../../src/status/stats.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { VERSION } from "../../src/version.ts";

const encoder = new TextEncoder();
const PACKAGE = "/core/os/x86_64/tiny-1-1-x86_64.pkg.tar.zst";
const SIGNATURE = `${PACKAGE}.sig`;
const DATABASE = "/core/os/x86_64/core.db";

interface Setup {
  store: CacheStore;
  stats: Stats;
  quick: QuickAnswers;
}

async function withQuick(fn: (setup: Setup) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const store = new CacheStore(dir);
    const stats = new Stats();
    await fn({ store, stats, quick: new QuickAnswers(store, new AnswerLog(stats)) });
  });
}

/** Writes `bytes` where the cache keeps `rawPath` (under core/os/x86_64/); its target. */
async function put(store: CacheStore, rawPath: string, bytes: Uint8Array): Promise<RequestTarget> {
  const target = parseRequestPath(rawPath, { customRepoNames: [] });
  const path = store.finalPath(target.cacheSegments);
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeFile(path, bytes);
  return target;
}

function headOf(text: string): RequestHead {
  const parsed = parseRequestHead(encoder.encode(text));
  if (isHeadProblem(parsed)) throw new Error(`refused: ${parsed.message}`);
  return parsed;
}

function get(path: string, more = ""): RequestHead {
  return headOf(`GET ${path} HTTP/1.1\r\nHost: flexo.test\r\n${more}\r\n`);
}

/** Cache hits counted, and the bytes counted with them. */
function hits(stats: Stats): [number, number] {
  return [stats.requests.get("CACHE HIT") ?? 0, stats.bytesFromCache];
}

/** The status line and header lines (names in lower case) of a response head, and the bytes after it. */
function split(bytes: Uint8Array): { statusLine: string; headers: [string, string][]; body: Uint8Array } {
  const text = latin1(bytes);
  const end = text.indexOf("\r\n\r\n");
  assert(end > 0, "a complete head");
  const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
  const headers = lines.map((line): [string, string] => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
  });
  return { statusLine, headers, body: bytes.subarray(end + 4) };
}

/** The headers serveCachedFile() sends for all of `file` (names in lower case, sorted, as Headers gives them). */
async function servedHeaders(file: CachedFile, contentType: string): Promise<[string, string][]> {
  // The quick path answers packages and their signatures only: those are immutable.
  const options = { origin: "Cache", contentType, cacheControl: IMMUTABLE } as const;
  const served = await serveCachedFile(new Request("http://flexo.test/"), file, options);
  await served.response.body?.cancel();
  return [...served.response.headers];
}

/** Fails unless `headers` are those serveCachedFile() sends for all of `file`, in its order, and a current Date. */
async function assertWholeFileHeaders(
  headers: [string, string][],
  file: CachedFile,
  contentType: string,
): Promise<void> {
  const names =
    "accept-ranges last-modified etag flexo-payload-origin cache-control content-type content-length date server";
  assertEquals(headers.map(([name]) => name), names.split(" "));
  const expected = new Map(await servedHeaders(file, contentType));
  for (const [name, value] of headers.slice(0, -2)) assertEquals(value, expected.get(name), name);
  assertEquals(expected.get("flexo-payload-origin"), "Cache");
  assertEquals(expected.get("content-length"), String(file.size));
  assertEquals(headers[headers.length - 1][1], `flexo/${VERSION}`);
  const date = headers[headers.length - 2][1];
  assert(/ GMT$/.test(date) && Math.abs(Date.parse(date) - Date.now()) < 2_000, date);
}

Deno.test("QuickAnswers.forHead() answers nothing for a path not remembered, or for a database", async () => {
  await withQuick(async ({ store, stats, quick }) => {
    const target = await put(store, PACKAGE, new Uint8Array(100));
    const database = await put(store, DATABASE, new Uint8Array(100));
    assertEquals(database.kind, "database");
    quick.remember(DATABASE, database);
    for (const segments of [target.cacheSegments, database.cacheSegments]) {
      assert(await store.loadHot(segments));
      assert(await store.statComplete(segments));
    }
    assertEquals(quick.forHead(get(PACKAGE), { files: true }), undefined, "not remembered");
    assertEquals(quick.forHead(get(DATABASE), { files: true }), undefined, "databases are not remembered");
    assertEquals(hits(stats), [0, 0]);
    quick.remember(PACKAGE, target);
    assert(quick.forHead(get(PACKAGE), { files: true }) instanceof Uint8Array, "answered once remembered");
  });
});

Deno.test("QuickAnswers.forHead() answers a small file in memory with the complete response as bytes", async () => {
  await withQuick(async ({ store, stats, quick }) => {
    const files = [[PACKAGE, "application/octet-stream"], [SIGNATURE, "application/pgp-signature"]];
    for (const [rawPath, contentType] of files) {
      const bytes = randomBytes(1000);
      const target = await put(store, rawPath, bytes);
      quick.remember(rawPath, target);
      assertEquals(quick.forHead(get(rawPath), { files: false }), undefined, "not in memory yet");
      const hot = (await store.loadHot(target.cacheSegments))!;
      const answer = quick.forHead(get(rawPath), { files: false });
      assert(answer instanceof Uint8Array, rawPath);
      const { statusLine, headers, body } = split(answer);
      assertEquals(statusLine, "HTTP/1.1 200 OK");
      await assertWholeFileHeaders(headers, hot, contentType);
      assertEquals(body, bytes);
    }
    assertEquals(hits(stats), [2, 2000]);
  });
});

Deno.test("QuickAnswers.forHead() gives the same bytes for a hot file within one second, also with a query", async () => {
  await withQuick(async ({ store, stats, quick }) => {
    const target = await put(store, PACKAGE, randomBytes(500));
    quick.remember(PACKAGE, target);
    await store.loadHot(target.cacheSegments);
    for (let attempt = 0;; attempt++) {
      const second = httpDate();
      const one = quick.forHead(get(PACKAGE), { files: false });
      const two = quick.forHead(get(`${PACKAGE}?again=1`), { files: false });
      if (httpDate() !== second && attempt < 3) continue;
      assert(one instanceof Uint8Array && one === two, "the same bytes object");
      break;
    }
    assert(hits(stats)[0] >= 2 && hits(stats)[1] === hits(stats)[0] * 500, String(hits(stats)));
  });
});

Deno.test("QuickAnswers.forHead() leaves HEAD, conditional and range requests, absolute targets and odd Hosts to the full path", async () => {
  await withQuick(async ({ store, stats, quick }) => {
    const LARGE = "/core/os/x86_64/large-1-1-x86_64.pkg.tar.zst";
    const small = await put(store, PACKAGE, new Uint8Array(100));
    const large = await put(store, LARGE, new Uint8Array(HOT_FILE_MAX_SIZE + 1));
    quick.remember(PACKAGE, small);
    quick.remember(LARGE, large);
    await store.loadHot(small.cacheSegments);
    await store.statComplete(large.cacheSegments);
    const answer = (head: RequestHead) => quick.forHead(head, { files: true });
    // A small file in memory, and a larger one that would be sent with sendfile.
    for (const rawPath of [PACKAGE, LARGE]) {
      const refused = [
        headOf(`HEAD ${rawPath} HTTP/1.1\r\nHost: flexo.test\r\n\r\n`),
        headOf(`POST ${rawPath} HTTP/1.1\r\nHost: flexo.test\r\n\r\n`),
        get(rawPath, 'If-None-Match: "x"\r\n'),
        get(rawPath, "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n"),
        get(rawPath, "Range: bytes=0-9\r\n"),
        headOf(`GET http://flexo.test${rawPath} HTTP/1.1\r\nHost: flexo.test\r\n\r\n`),
        headOf(`GET ${rawPath} HTTP/1.0\r\n\r\n`),
        ...["a/b", "a@b", "a b", "", "a:b:c", "[zz]"].map((host) =>
          headOf(`GET ${rawPath} HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
        ),
      ];
      for (const head of refused) {
        assertEquals(answer(head), undefined, `${head.method} ${head.target} ${head.host}`);
      }
      assert(answer(get(rawPath)) !== undefined, `a plain GET of ${rawPath} is answered`);
    }
    assertEquals(hits(stats)[0], 1, "only the hot answer counts at once");
    assert(!store.isBeingRead(store.finalPath(small.cacheSegments)));
  });
});

Deno.test("QuickAnswers.forHead() offers a larger known file for sendfile only with files: true", async () => {
  await withQuick(async ({ store, stats, quick }) => {
    const size = 100 * 1024;
    const target = await put(store, PACKAGE, randomBytes(size));
    const path = store.finalPath(target.cacheSegments);
    quick.remember(PACKAGE, target);
    assertEquals(quick.forHead(get(PACKAGE), { files: true }), undefined, "not known before statComplete()");
    const file = (await store.statComplete(target.cacheSegments))!;
    assertEquals(await store.loadHot(target.cacheSegments), undefined, "too large for memory");
    assertEquals(quick.forHead(get(PACKAGE), { files: false }), undefined);
    const answer = quick.forHead(get(PACKAGE), { files: true }) as QuickFile;
    assert(answer !== undefined && !(answer instanceof Uint8Array));
    assertEquals(answer.file, { path, start: 0, length: size, size });
    const { statusLine, headers, body } = split(answer.head);
    assertEquals(statusLine, "HTTP/1.1 200 OK");
    await assertWholeFileHeaders(headers, file, "application/octet-stream");
    assertEquals(body.length, 0, "the head alone");
    assert(store.isBeingRead(path), "in use until sent");
    assertEquals(hits(stats), [0, 0], "nothing counted before it went out");
    answer.done({ whole: true, bytes: size });
    assert(!store.isBeingRead(path), "released once sent");
    assertEquals(hits(stats), [1, size]);
  });
});

Deno.test("QuickAnswers.forHead() counts a known file's answer unless it was not started, and releases it always", async () => {
  await withQuick(async ({ store, stats, quick }) => {
    const size = HOT_FILE_MAX_SIZE + 1;
    const target = await put(store, PACKAGE, new Uint8Array(size));
    const path = store.finalPath(target.cacheSegments);
    quick.remember(PACKAGE, target);
    await store.statComplete(target.cacheSegments);
    const first = quick.forHead(get(PACKAGE), { files: true }) as QuickFile;
    const second = quick.forHead(get(PACKAGE), { files: true }) as QuickFile;
    first.done(undefined);
    assert(store.isBeingRead(path), "the second answer still reads the file");
    assertEquals(hits(stats), [0, 0], "an answer not started is not counted (the full path answers)");
    second.done({ whole: false, bytes: 1000 });
    assert(!store.isBeingRead(path));
    assertEquals(
      hits(stats),
      [1, 1000],
      "a send that broke off after its head counts, with the bytes it gave",
    );
  });
});
