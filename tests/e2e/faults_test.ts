/**
 * Faults: the process killed with SIGKILL in the middle of a download, a full disk, a cache directory that cannot
 * be used, and upstreams that answer garbage, fail TLS, redirect forever, announce an absurd length or send an
 * HTML page. Whatever happens, nothing half-written or wrong is ever served or kept in the cache.
 */

import { configure, type LogRecord, reset } from "@logtape/logtape";
import { dirname, join } from "node:path";
import { createApp } from "../../src/app/app.ts";
import { startServer } from "../../src/server/server.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { type FakeMirror, startFakeMirror } from "../helpers/fake_mirror.ts";
import { fillUp, mountTmpfs, readHead, startRawServer, umount } from "../helpers/fault_tools.ts";
import { runFlexo, startFlexo, writeTestConfig } from "../helpers/flexo_process.ts";
import { startTestProxy, TEST_LIMITS, type TestProxy, withinMs } from "../helpers/proxy_server.ts";
import { testConfig } from "../helpers/test_app.ts";
import { randomBytes, sha256 } from "../helpers/bytes.ts";
import { testDatabase } from "../helpers/test_database.ts";
import { waitFor } from "../helpers/wait.ts";
import { filesBelow } from "../helpers/temp_dir.ts";

const PKG = "/core/os/x86_64/big-1:2.0-1-x86_64.pkg.tar.zst";
const SMALL = "/core/os/x86_64/small-1.0-1-x86_64.pkg.tar.zst";
const DB = "/core/os/x86_64/core.db";
const MIB = 1024 * 1024;
const encoder = new TextEncoder();

/** A directory with `files` (URL path → bytes) laid out as a mirror. */
async function mirrorRoot(files: Record<string, Uint8Array>): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "flexo-faults-mirror-" });
  for (const [path, bytes] of Object.entries(files)) {
    await Deno.mkdir(join(root, dirname(path)), { recursive: true });
    await Deno.writeFile(join(root, path), bytes);
  }
  return root;
}

/** GETs `path`; the body is read to the end, a body that breaks off is reported as `broken`. */
async function get(
  base: string,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; bytes: Uint8Array; text: string; broken?: string }> {
  const response = await fetch(base + path, { ...init, signal: AbortSignal.timeout(20_000) });
  const chunks: Uint8Array[] = [];
  let broken: string | undefined;
  try {
    for await (const chunk of response.body ?? []) chunks.push(chunk);
  } catch (error) {
    broken = error instanceof Error ? error.message : String(error);
  }
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return { status: response.status, bytes, text: new TextDecoder().decode(bytes.subarray(0, 2000)), broken };
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// kill -9

Deno.test("after kill -9 in the middle of a download a restart resumes the partial file and serves it whole", async () => {
  const data = randomBytes(24 * MIB);
  const root = await mirrorRoot({ [PKG]: data });
  const work = await Deno.makeTempDir({ prefix: "flexo-faults-kill-" });
  const cache = join(work, "cache");
  const mirror = await startFakeMirror(root, { bytesPerSecond: 4 * MIB });
  const config = await writeTestConfig(work, { cacheDir: cache, mirror: mirror.url });
  const partial = join(cache, ".partial", PKG);
  const final = join(cache, PKG);
  try {
    const first = await startFlexo(config);
    let killedAt = 0;
    try {
      const abort = new AbortController();
      const client = fetch(first.url + PKG, { signal: abort.signal }).then(async (response) => {
        assertEquals(response.status, 200);
        for await (const _ of response.body!) {
          // reading until the server dies
        }
      }).catch(() => {});
      await waitFor("3 MiB on disk", async () => (await sizeOf(partial)) >= 3 * MIB, 15_000);
      const status = await first.stop("SIGKILL");
      assertEquals(status.signal, "SIGKILL");
      abort.abort();
      await client;
      killedAt = await sizeOf(partial);
    } finally {
      await first.stop("SIGKILL");
    }
    // Nothing half-written is visible as complete; the partial file and its record are kept for resuming.
    assert(killedAt >= 3 * MIB && killedAt < data.length, `partial file of ${killedAt} bytes`);
    assertEquals(await sizeOf(final), 0, "no complete file after the kill");
    const meta = JSON.parse(await Deno.readTextFile(`${partial}.meta.json`));
    assertEquals(meta.total, data.length);

    mirror.faults = {};
    mirror.clearRequests();
    const second = await startFlexo(config);
    try {
      const whole = await get(second.url, PKG);
      assertEquals(whole.status, 200);
      assertEquals(whole.broken, undefined);
      assertEquals(whole.bytes.length, data.length);
      assertEquals(sha256(whole.bytes), sha256(data), "the resumed file is the original, byte for byte");
      const gets = mirror.requests.filter((r) => r.method === "GET");
      assertEquals(gets.length, 1, "one upstream request after the restart");
      assertEquals(gets[0].range, `bytes=${killedAt}-`, "it resumed from the bytes kept on disk");
      await waitFor("the file being committed", async () => (await sizeOf(final)) === data.length, 5_000);
      assertEquals(sha256(await Deno.readFile(final)), sha256(data));
      assertEquals(await sizeOf(partial), 0, "the partial file is gone");
      const hit = await get(second.url, PKG, { headers: { Range: "bytes=-1000" } });
      assertEquals(hit.status, 206);
      assertEquals(hit.bytes, data.subarray(data.length - 1000));
    } finally {
      await second.stop();
    }
  } finally {
    await mirror.close();
    await Deno.remove(root, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// disk full

Deno.test("a full disk fails the download clearly, keeps cached files intact and recovers when space returns", async (t) => {
  const small = randomBytes(500_000);
  const big = randomBytes(3 * MIB);
  const root = await mirrorRoot({ [SMALL]: small, [PKG]: big });
  const work = await Deno.makeTempDir({ prefix: "flexo-faults-disk-" });
  const disk = join(work, "disk");
  await Deno.mkdir(disk);
  if (!(await mountTmpfs(disk, "4m"))) {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(work, { recursive: true });
    await t.step({ name: "skipped: cannot mount a tmpfs here", ignore: true, fn: () => {} });
    return;
  }
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { capture: (record) => records.push(record) },
    loggers: [
      { category: ["flexo"], lowestLevel: "info", sinks: ["capture"] },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
    ],
  });
  const cache = join(disk, "cache");
  const mirror = await startFakeMirror(root);
  const app = createApp(testConfig(cache, [mirror.url]), { limits: TEST_LIMITS });
  const server = startServer(app, { hostnames: ["127.0.0.1"], port: 0 });
  const base = `http://127.0.0.1:${server.addresses[0].port}`;
  const logText = () => records.map((r) => r.message.map(String).join("")).join("\n");
  try {
    const first = await get(base, SMALL);
    assertEquals(first.status, 200);
    assertEquals(sha256(first.bytes), sha256(small));
    // Leave about half a MiB free: less than the big file needs.
    const free = 4 * MIB - 500_000;
    await Deno.writeFile(join(disk, "filler"), new Uint8Array(free - 512 * 1024));

    const full = await get(base, PKG);
    const servedWhole = full.status === 200 && full.broken === undefined && full.bytes.length === big.length;
    if (servedWhole) {
      assertEquals(sha256(full.bytes), sha256(big), "bytes straight from upstream must be right");
    } else {
      assert(
        full.status >= 500 || full.broken !== undefined,
        `a clear error: HTTP ${full.status}, ${full.bytes.length} bytes, ${full.text.slice(0, 200)}`,
      );
      if (full.status >= 500) assert(/disk full/.test(full.text), `the error says why: ${full.text}`);
    }
    await app.downloads.idle();
    assert(logText().includes(`disk full: ${cache}`), `the log says the disk is full:\n${logText()}`);
    assertEquals(await app.store.statComplete(PKG.slice(1).split("/")), undefined, "no complete file");
    assertEquals(await sizeOf(join(cache, ".partial", PKG)), 0, "the partial file was removed");
    assertEquals(sha256(await Deno.readFile(join(cache, SMALL))), sha256(small), "the cached file is intact");
    const hit = await get(base, SMALL);
    assertEquals(hit.status, 200);
    assertEquals(sha256(hit.bytes), sha256(small), "and still served");

    // With no space at all not even the first chunk can be written. The head may have gone out already (it is
    // not held back for a disk write): the client gets a 507, or a response cut short before its first byte.
    await fillUp(join(disk, "filler2"));
    const none = await get(base, PKG);
    if (none.status === 200) {
      assertEquals(none.bytes.length, 0, "nothing unverified from a full disk");
      assert(none.broken !== undefined, "the response is cut short, not complete");
    } else {
      assertEquals(none.status, 507, `HTTP ${none.status}: ${none.text}`);
      assert(none.text.includes(`disk full: no space left in the cache directory ${cache}`), none.text);
    }
    assertEquals(sha256(await Deno.readFile(join(cache, SMALL))), sha256(small), "the cached file is intact");

    await Deno.remove(join(disk, "filler"));
    await Deno.remove(join(disk, "filler2"));
    const again = await get(base, PKG);
    assertEquals(again.status, 200);
    assertEquals(again.broken, undefined);
    assertEquals(sha256(again.bytes), sha256(big), "after space returns the file comes through");
    await app.downloads.idle();
    assertEquals(sha256(await Deno.readFile(join(cache, PKG))), sha256(big), "and is cached");
  } finally {
    await server.shutdown({ graceMs: 2_000 });
    await app.downloads.idle();
    await mirror.close();
    await reset();
    await umount(disk);
    await Deno.remove(root, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// an unusable cache directory at start

/** Runs main.ts with `cache_directory = dir` and checks that it stops at once with a message naming it. */
async function assertRefusesCacheDirectory(work: string, dir: string): Promise<void> {
  const config = await writeTestConfig(work, { cacheDir: dir, mirror: "http://127.0.0.1:9/" });
  const result = await runFlexo(["--config", config]);
  const output = result.stdout + result.stderr;
  assertEquals(result.code, 78, `flexo must stop with EX_CONFIG for cache_directory ${dir}:\n${output}`);
  assert(!output.includes("Listening on"), `it must not listen:\n${output}`);
  assert(output.includes(dir), `the message names the directory ${dir}:\n${output}`);
  assert(
    /choose another directory|create it|write access|chown/.test(output),
    `the message says what to do:\n${output}`,
  );
}

Deno.test("main.ts stops with a clear message when the cache directory is a file or cannot be created", async () => {
  const work = await Deno.makeTempDir({ prefix: "flexo-faults-dir-" });
  try {
    const file = join(work, "a-file");
    await Deno.writeTextFile(file, "in the way\n");
    await assertRefusesCacheDirectory(work, file);
    await assertRefusesCacheDirectory(work, join(file, "cache"));
    assertEquals(await Deno.readTextFile(file), "in the way\n", "the file in the way is left alone");
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("main.ts stops with a clear message when the cache directory is on a read-only file system", async (t) => {
  // Root may write anywhere chmod forbids; a read-only mount stops root too.
  const work = await Deno.makeTempDir({ prefix: "flexo-faults-ro-" });
  const readOnly = join(work, "ro");
  await Deno.mkdir(readOnly);
  try {
    if (!(await mountTmpfs(readOnly, "1m"))) {
      await t.step({ name: "skipped: cannot mount a tmpfs here", ignore: true, fn: () => {} });
      return;
    }
    try {
      await Deno.mkdir(join(readOnly, "cache"));
      const remount = await new Deno.Command("mount", { args: ["-o", "remount,ro", readOnly] }).output();
      assert(remount.success, "remounting read-only");
      await assertRefusesCacheDirectory(work, join(readOnly, "cache"));
      await assertRefusesCacheDirectory(work, join(readOnly, "missing"));
    } finally {
      await umount(readOnly);
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// upstream faults

const GARBAGE = encoder.encode(
  "\x00\xff\xfeSSH-2.0-OpenSSH_9.6\r\n\x16\x03\x01garbage that is not HTTP at all\r\n\r\n",
);

/** How a broken upstream is set up: its base URL and how to stop it. */
interface BrokenUpstream {
  url: string;
  close(): Promise<void>;
}

const BROKEN_UPSTREAMS: { name: string; message: RegExp; start(): Promise<BrokenUpstream> }[] = [
  {
    name: "garbage instead of HTTP",
    message: /invalid|pars/i,
    async start() {
      const server = await startRawServer(async (conn) => {
        await readHead(conn);
        await conn.write(GARBAGE);
      });
      return { url: `http://127.0.0.1:${server.port}/`, close: () => server.close() };
    },
  },
  {
    name: "a TLS failure (plain TCP behind an https:// URL)",
    message: /corrupt message|InvalidContentType|TLS|handshake|certificate/i,
    async start() {
      // What a plain HTTP server answers to a TLS ClientHello: its own error, in clear text.
      const server = await startRawServer(async (conn) => {
        await conn.read(new Uint8Array(65536));
        await conn.write(encoder.encode("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"));
      });
      return { url: `https://127.0.0.1:${server.port}/`, close: () => server.close() };
    },
  },
  {
    name: "a redirect loop",
    message: /redirect/i,
    async start() {
      const empty = await Deno.makeTempDir({ prefix: "flexo-faults-loop-" });
      const mirror: FakeMirror = await startFakeMirror(empty);
      mirror.faults = { redirectTo: mirror.url };
      return {
        url: mirror.url,
        close: async () => {
          await mirror.close();
          await Deno.remove(empty, { recursive: true });
        },
      };
    },
  },
  {
    name: "an enormous Content-Length",
    message: /absurd length/,
    async start() {
      const server = await startRawServer(async (conn) => {
        await readHead(conn);
        await conn.write(
          encoder.encode(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000000000000\r\n\r\n",
          ),
        );
        await conn.write(randomBytes(64 * 1024));
      });
      return { url: `http://127.0.0.1:${server.port}/`, close: () => server.close() };
    },
  },
  {
    name: "a 200 HTML error page",
    message: /HTML/,
    async start() {
      const root = await mirrorRoot({});
      const mirror = await startFakeMirror(root, { htmlErrorPage: true });
      return {
        url: mirror.url,
        close: async () => {
          await mirror.close();
          await Deno.remove(root, { recursive: true });
        },
      };
    },
  },
];

for (const broken of BROKEN_UPSTREAMS) {
  Deno.test(`${broken.name}: fails over to the next mirror, or ends in a clear 5xx, never in a cached file`, async () => {
    const data = randomBytes(300_000);
    const database = testDatabase(7, 40); // a database must parse to be served whole and cached
    const root = await mirrorRoot({ [PKG]: data, [DB]: database });
    const good = await startFakeMirror(root);
    const bad = await broken.start();
    let proxy: TestProxy | undefined;
    try {
      // Alone, the broken mirror gives a clear error and nothing in the cache.
      proxy = await startTestProxy({ mirrors: [bad.url] });
      for (const path of [PKG, DB]) {
        const alone = await withinMs(get(proxy.url, path), 15_000, `${path} hung`);
        assert(alone.status >= 500 && alone.status < 600, `${path}: HTTP ${alone.status} ${alone.text}`);
        assert(alone.text.includes(bad.url), `${path}: the error names the mirror: ${alone.text}`);
        assert(broken.message.test(alone.text), `${path}: the error says what went wrong: ${alone.text}`);
      }
      await proxy.app.downloads.idle();
      assertEquals(await filesBelow(proxy.dir), [], "nothing was cached");
      await proxy.close();

      // First in line, it is skipped and the good mirror's bytes are served and cached.
      proxy = await startTestProxy({ mirrors: [bad.url, good.url] });
      for (const [path, bytes] of [[PKG, data], [DB, database]] as const) {
        const received = await withinMs(get(proxy.url, path), 15_000, `${path} hung`);
        assertEquals(received.status, 200, `${path}: ${received.text}`);
        assertEquals(received.broken, undefined);
        assertEquals(sha256(received.bytes), sha256(bytes), `${path} came from the good mirror`);
      }
      await proxy.app.downloads.idle();
      assertEquals(
        sha256(await Deno.readFile(join(proxy.dir, PKG))),
        sha256(data),
        "the cached file is right",
      );
      assertEquals(sha256(await Deno.readFile(join(proxy.dir, DB))), sha256(database));
      const failures = proxy.app.pool.snapshot().find((m) => m.url === bad.url)?.failures ?? 0;
      assert(failures >= 1, "the broken mirror is blamed");
    } finally {
      await proxy?.close();
      await bad.close();
      await good.close();
      await Deno.remove(root, { recursive: true });
    }
  });
}
