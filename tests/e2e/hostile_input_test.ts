/**
 * Hostile input, generated: request paths built from traversal pieces, encodings, separators, control characters
 * and real repository names, with Range headers valid and not, sent through `app.fetch` and as raw bytes over TCP
 * to the real server. Whatever is generated, the proxy never reads or writes outside its cache directory, never
 * asks a host that is not configured, and never fails with an internal error or stops serving. Also the size
 * limits of the request line and headers (Deno.serve's, and the proxy's own path limit).
 */

import fc from "fast-check";
import { dirname, join } from "node:path";
import { createApp, type FlexoApp } from "../../src/app/app.ts";
import { MAX_PATH_BYTES } from "../../src/repo/request_path.ts";
import { type RunningServer, startServer } from "../../src/server/server.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { type FakeMirror, startFakeMirror } from "../helpers/fake_mirror.ts";
import { TEST_LIMITS, withinMs } from "../helpers/proxy_server.ts";
import { testConfig } from "../helpers/test_app.ts";
import { sha256 } from "../helpers/bytes.ts";
import { concat } from "../../src/byte_reader.ts";
import { writeAll } from "../../src/write_all.ts";

const PKG = "/core/os/x86_64/ok-1.0-1-x86_64.pkg.tar.zst";
const CUSTOM_FILE = "/custom/x86_64/own-1-1-any.pkg.tar.zst";
/** Text that exists only outside the cache directory: no response may ever contain it. */
const SECRET = "SECRET-OUTSIDE-THE-CACHE-7f3a";
const encoder = new TextEncoder();

/** Every file below `dir` (relative path → SHA-256 of its content). */
async function snapshot(dir: string, prefix = ""): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for await (const entry of Deno.readDir(join(dir, prefix))) {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory) {
      for (const [path, hash] of await snapshot(dir, relative)) found.set(path, hash);
    } else {
      found.set(relative, entry.isSymlink ? "symlink" : sha256(await Deno.readFile(join(dir, relative))));
    }
  }
  return found;
}

interface Setup {
  /** Holds `cache/` (the cache directory) and bait files beside it. */
  parent: string;
  cache: string;
  mirror: FakeMirror;
  mirrorRoot: string;
  app: FlexoApp;
  server: RunningServer;
  port: number;
  /** Every URL the proxy fetched upstream. */
  upstream: string[];
}

/**
 * A mirror with a package and a custom repo file, bait files beside the cache directory (and one level up) whose
 * names look like packages, and the proxy with a fetch that records every upstream URL.
 */
async function withSetup(fn: (setup: Setup) => Promise<void>): Promise<void> {
  const parent = await Deno.makeTempDir({ prefix: "flexo-hostile-" });
  const cache = join(parent, "cache");
  const mirrorRoot = join(parent, "mirror");
  await Deno.mkdir(cache);
  for (const [path, text] of [[PKG, "the real package\n"], [CUSTOM_FILE, "the custom package\n"]]) {
    await Deno.mkdir(join(mirrorRoot, dirname(path)), { recursive: true });
    await Deno.writeTextFile(join(mirrorRoot, path), text.repeat(500));
  }
  for (const bait of ["bait.pkg.tar.zst", "core.db", "etc/passwd", "core/os/x86_64/bait.pkg.tar.zst"]) {
    await Deno.mkdir(join(parent, dirname(bait)), { recursive: true });
    await Deno.writeTextFile(join(parent, bait), `${SECRET}\n`);
  }
  const mirror = await startFakeMirror(mirrorRoot);
  const upstream: string[] = [];
  const recordingFetch: typeof fetch = (input, init) => {
    upstream.push(input instanceof Request ? input.url : String(input));
    return fetch(input, init);
  };
  const config = testConfig(cache, [mirror.url], {
    custom_repo: [{ name: "own", url: `${mirror.url}custom` }],
  });
  const app = createApp(config, { fetch: recordingFetch, limits: TEST_LIMITS });
  const server = startServer(app, { hostnames: ["127.0.0.1"], port: 0 });
  try {
    await fn({ parent, cache, mirror, mirrorRoot, app, server, port: server.addresses[0].port, upstream });
  } finally {
    await server.shutdown({ graceMs: 2_000 });
    await app.downloads.idle();
    await mirror.close();
    await Deno.remove(parent, { recursive: true });
  }
}

/** Pieces that hostile paths are made of. */
const PIECE = fc.oneof(
  fc.constantFrom(
    "..",
    ".",
    "%2e%2e",
    "%2E%2e",
    ".%2e",
    "%2e.",
    "%2f",
    "%2F",
    "%5c",
    "%00",
    "%0a",
    "%0d%0a",
    "%c0%ae%c0%ae",
    "%252e%252e",
    "%",
    "%zz",
    "%e2%80%ae",
    "\\",
    "..\\..",
    "/",
    "//",
    "..;",
    "~",
    ".hidden",
    "core",
    "os",
    "x86_64",
    "custom_repo",
    "own",
    "x86_64",
    "etc",
    "passwd",
    "bait.pkg.tar.zst",
    "core.db",
    "core.db.sig",
    "ok-1.0-1-x86_64.pkg.tar.zst",
    "own-1-1-any.pkg.tar.zst",
    "file:",
    "http:",
    "@127.0.0.2",
    "127.0.0.2:80",
    "a".repeat(300),
  ),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: "binary", maxLength: 6 }),
);

/** A request path: a leading `/` (mostly), pieces joined by separators. */
const HOSTILE_PATH = fc.tuple(
  fc.constantFrom(
    "/",
    "/",
    "/",
    "",
    "//",
    "/core/os/x86_64/",
    "/custom_repo/own/",
    "/custom_repo/own/x86_64/",
  ),
  fc.array(fc.tuple(PIECE, fc.constantFrom("/", "/", "/", "", "//", "\\", "%2f")), { maxLength: 8 }),
).map(([start, pieces]) => start + pieces.map(([piece, separator]) => piece + separator).join(""));

/** The real files (URL path → path below the mirror root). */
const REAL_FILES: Record<string, string> = {
  [PKG]: PKG,
  "/custom_repo/own/x86_64/own-1-1-any.pkg.tar.zst": CUSTOM_FILE,
};

/** Mostly hostile paths, sometimes a real file (so that Range headers meet real bytes). */
const PATH = fc.oneof(
  { arbitrary: HOSTILE_PATH, weight: 3 },
  { arbitrary: fc.constantFrom(...Object.keys(REAL_FILES)), weight: 1 },
);

/** A Range header (or none): valid forms with extreme numbers, several ranges, and junk. */
const RANGE = fc.option(
  fc.oneof(
    fc.tuple(fc.nat(), fc.nat()).map(([a, b]) => `bytes=${a}-${b}`),
    fc.nat().map((a) => `bytes=${a}-`),
    fc.nat().map((n) => `bytes=-${n}`),
    fc.constantFrom(
      "bytes=0-0",
      "bytes=-0",
      "bytes=0-",
      "bytes=99999999999999999999-",
      "bytes=-99999999999999999999",
      "bytes=9007199254740993-9007199254740999",
      "bytes=0-1,5-6",
      "bytes=5-1",
      "bytes= 0 - 1 ",
      "bytes=-",
      "bytes=--1",
      "bytes=1e3-",
      "bytes=0x10-",
      "items=0-1",
      "bytes=0-1\u0000",
      "",
    ),
    fc.string({ maxLength: 30 }),
  ),
  { nil: undefined },
);

/**
 * Checks one answer: no internal error, nothing from outside the cache, and for a real file (`file`, its bytes)
 * a body that is the file or, for 206, exactly the part its Content-Range names.
 */
function checkAnswer(
  answer: { status: number; head: string; body: Uint8Array },
  what: string,
  file?: Uint8Array,
): void {
  const { status, head, body } = answer;
  assert(status !== 500, `${what} caused an internal error: ${head}`);
  assert(!new TextDecoder().decode(body).includes(SECRET), `${what} got a file from outside the cache`);
  if (status === 206) {
    const range = /content-range: bytes (\d+)-(\d+)\/(\d+)/i.exec(head);
    assert(range, `${what}: 206 without Content-Range: ${head}`);
    const [start, end] = [Number(range[1]), Number(range[2])];
    assert(body.length === 0 || body.length === end - start + 1, `${what}: 206 body of ${body.length}`);
    if (file && body.length > 0) {
      assertEquals(Number(range[3]), file.length, `${what}: the total in ${range[0]}`);
      assertEquals(body, file.subarray(start, end + 1), `${what}: the bytes of ${range[0]}`);
    }
  }
  if (status === 200 && file && body.length > 0) assertEquals(body, file, `${what}: the whole file`);
}

/** After a run: no host but the mirror was asked, nothing outside the cache changed, the cache holds only truth. */
async function checkAfterwards(setup: Setup, outsideBefore: Map<string, string>): Promise<void> {
  await setup.app.downloads.idle();
  for (const url of setup.upstream) {
    assert(url.startsWith(setup.mirror.url), `an upstream request went to ${url}`);
    assertEquals(new URL(url).host, new URL(setup.mirror.url).host, `an upstream request went to ${url}`);
  }
  const outsideAfter = await snapshot(setup.parent);
  for (const path of [...outsideAfter.keys()]) {
    if (path.startsWith("cache/") || path.startsWith("mirror/")) outsideAfter.delete(path);
  }
  assertEquals(outsideAfter, outsideBefore, "nothing outside the cache directory was written");
  const legitimate = new Map([
    [PKG.slice(1), sha256(await Deno.readFile(join(setup.mirrorRoot, PKG)))],
    [
      `custom_repo/own/${CUSTOM_FILE.slice("/custom/".length)}`,
      sha256(await Deno.readFile(join(setup.mirrorRoot, CUSTOM_FILE))),
    ],
  ]);
  for (const [path, hash] of await snapshot(setup.cache)) {
    if (path.startsWith(".partial/")) continue;
    assertEquals(hash, legitimate.get(path), `the cache holds ${path}, which is not a mirror file`);
  }
}

/** The generated requests must have reached every part of the proxy, or the run proved little. */
function assertMix(statuses: Map<number, number>, setup: Setup): void {
  const mix = JSON.stringify([...statuses].sort());
  for (const status of [200, 206, 400, 404, 416]) {
    assert((statuses.get(status) ?? 0) > 0, `no answer with status ${status} among ${mix}`);
  }
  assert(setup.upstream.length > 10, `only ${setup.upstream.length} upstream requests`);
}

/** The bytes of the real files, by request path. */
async function realFiles(setup: Setup): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  for (const [path, mirrorPath] of Object.entries(REAL_FILES)) {
    files.set(path, await Deno.readFile(join(setup.mirrorRoot, mirrorPath)));
  }
  return files;
}

async function outsideSnapshot(parent: string): Promise<Map<string, string>> {
  const before = await snapshot(parent);
  for (const path of [...before.keys()]) {
    if (path.startsWith("cache/") || path.startsWith("mirror/")) before.delete(path);
  }
  return before;
}

/** Sends raw bytes over a new connection and reads the answer to the end (or until `ms`). */
async function rawExchange(port: number, request: Uint8Array, ms = 5_000): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const chunks: Uint8Array[] = [];
  try {
    const reading = (async () => {
      const buffer = new Uint8Array(64 * 1024);
      while (true) {
        const n = await conn.read(buffer).catch(() => null);
        if (n === null) return;
        chunks.push(buffer.slice(0, n));
      }
    })();
    try {
      await writeAll(conn, request);
    } catch {
      // The server may close (with a 4xx) before the whole request was sent.
    }
    await withinMs(reading, ms, `no end of the answer within ${ms} ms`);
  } finally {
    conn.close();
  }
  return concat(chunks);
}

function splitAnswer(raw: Uint8Array): { status: number; head: string; body: Uint8Array } {
  let end = -1;
  for (let i = 0; i + 3 < raw.length; i++) {
    if (raw[i] === 13 && raw[i + 1] === 10 && raw[i + 2] === 13 && raw[i + 3] === 10) {
      end = i;
      break;
    }
  }
  const head = new TextDecoder().decode(end < 0 ? raw : raw.subarray(0, end));
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
  return { status, head, body: end < 0 ? new Uint8Array() : raw.subarray(end + 4) };
}

/** A good request still gets the real package: the server is up. */
async function assertStillServing(setup: Setup): Promise<void> {
  const answer = splitAnswer(
    await rawExchange(
      setup.port,
      encoder.encode(`GET ${PKG} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
    ),
  );
  assertEquals(answer.status, 200, `a good request: ${answer.head}`);
  assertEquals(
    sha256(answer.body),
    sha256(await Deno.readFile(join(setup.mirrorRoot, PKG))),
    "the good request got the package",
  );
}

Deno.test("app.fetch() with generated paths and Range headers stays inside the cache and the mirrors", async () => {
  await withSetup(async (setup) => {
    const before = await outsideSnapshot(setup.parent);
    const statuses = new Map<number, number>();
    const files = await realFiles(setup);
    await fc.assert(
      fc.asyncProperty(PATH, RANGE, fc.constantFrom("GET", "HEAD"), async (path, range, method) => {
        let request: Request;
        try {
          request = new Request(`http://flexo.test${path.startsWith("/") ? "" : "/"}${path}`, {
            method,
            headers: range === undefined ? {} : { Range: range },
          });
        } catch {
          return; // not a URL or header a client could send through fetch; the raw test covers such bytes
        }
        const response = await withinMs(
          Promise.resolve(setup.app.fetch(request)),
          10_000,
          `${method} ${path} hung`,
        );
        const body = new Uint8Array(await response.arrayBuffer());
        const head = [...response.headers].map(([k, v]) => `${k}: ${v}`).join("\r\n");
        checkAnswer(
          { status: response.status, head, body },
          `${method} ${JSON.stringify(path)} Range ${range}`,
          files.get(path),
        );
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      }),
      { numRuns: 1000, interruptAfterTimeLimit: 25_000 },
    );
    assertMix(statuses, setup);
    await checkAfterwards(setup, before);
    await assertStillServing(setup);
  });
});

Deno.test("raw requests with generated targets and Range headers never crash the server or leave the cache", async () => {
  await withSetup(async (setup) => {
    const before = await outsideSnapshot(setup.parent);
    const statuses = new Map<number, number>();
    const files = await realFiles(setup);
    await fc.assert(
      fc.asyncProperty(PATH, RANGE, async (path, range) => {
        const text = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
          (range === undefined ? "" : `Range: ${range}\r\n`) + "Connection: close\r\n\r\n";
        const raw = await rawExchange(setup.port, encoder.encode(text));
        const answer = splitAnswer(raw);
        // Closing without an answer is as good as a 400 for a request the parser cannot read.
        if (raw.length > 0) {
          assert(answer.status >= 100, `not HTTP: ${JSON.stringify(answer.head.slice(0, 200))}`);
        }
        checkAnswer(answer, `GET ${JSON.stringify(path)} Range ${range}`, files.get(path));
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      }),
      { numRuns: 600, interruptAfterTimeLimit: 25_000 },
    );
    assertMix(statuses, setup);
    await checkAfterwards(setup, before);
    await assertStillServing(setup);
  });
});

Deno.test("request line and header size limits are enforced and the server stays up", async () => {
  await withSetup(async (setup) => {
    const exchange = async (text: string) => splitAnswer(await rawExchange(setup.port, encoder.encode(text)));
    // The proxy's own limit: paths longer than MAX_PATH_BYTES get 414 before anything else happens.
    const long = await exchange(
      `GET /core/os/x86_64/${"a".repeat(MAX_PATH_BYTES)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    assertEquals(long.status, 414, long.head);
    // Deno.serve's limits: a 100 KB request line, 1 MB of headers, 500 headers: 400, or the connection closed.
    const cases = {
      "a 100 KB request line": `GET /${"a".repeat(100_000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      "1 MB of headers": `GET ${PKG} HTTP/1.1\r\nHost: x\r\n` +
        `X-Big: ${"b".repeat(1_000_000)}\r\nConnection: close\r\n\r\n`,
      "500 headers": `GET ${PKG} HTTP/1.1\r\nHost: x\r\n` +
        Array.from({ length: 500 }, (_, i) => `X-H${i}: v\r\n`).join("") + "Connection: close\r\n\r\n",
    };
    for (const [name, text] of Object.entries(cases)) {
      const answer = await exchange(text);
      assert(answer.status === 0 || (answer.status >= 400 && answer.status < 500), `${name}: ${answer.head}`);
      await assertStillServing(setup);
    }
    assertEquals(setup.mirror.countRequests(PKG, { method: "GET" }), 1, "none of them reached the mirror");
  });
});

Deno.test({
  name: "HEAD with an unsatisfiable Range for an uncached file answers 200, as without the Range",
  // Range is ignored on HEAD (RFC 9110 section 14.2): passThrough() does not forward it.
  fn: async () => {
    await withSetup(async (setup) => {
      const response = await setup.app.fetch(
        new Request(`http://flexo.test${PKG}`, { method: "HEAD", headers: { Range: "bytes=999999999-" } }),
      );
      await response.body?.cancel();
      assertEquals(response.status, 200);
      assertEquals(response.headers.get("content-range"), null);
    });
  },
});
