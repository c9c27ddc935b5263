/**
 * Cache misses answered from the parsed head (quick_misses.ts): the same requests sent to two proxies in front of
 * one mirror, one with the quick paths and one with every request on the full path, give the same status,
 * headers, body, request log line and counters; the plain GET of a missing package never reaches the full path,
 * and every exception does.
 */

import { dirname, join } from "node:path";
import { createApp, type FlexoApp } from "../../src/app/app.ts";
import type { LogOutput } from "../../src/logging.ts";
import { startServer } from "../../src/server/server.ts";
import { assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { type FakeMirror, startFakeMirror } from "../helpers/fake_mirror.ts";
import { TEST_LIMITS } from "../helpers/proxy_server.ts";
import { testConfig } from "../helpers/test_app.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { waitFor } from "../helpers/wait.ts";

const DIR = "core/os/x86_64";

/** One proxy: its URL, its app, how many requests reached the full path, and its request log lines. */
interface Side {
  url: string;
  app: FlexoApp;
  fullPath: number;
  lines: unknown[][];
}

/** What a client and the operator see of one answer. */
interface Observed {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
  line: unknown[] | undefined;
  counters: unknown;
  fullPath: number;
}

/** The counters an answer changes (the request log's and the status page's). */
function counters(app: FlexoApp): unknown {
  const { stats } = app;
  return {
    requests: Object.fromEntries(stats.requests),
    fromCache: stats.bytesFromCache,
    fromUpstream: stats.bytesFromUpstream,
    errors: stats.recentErrors.map((error) => error.message),
  };
}

function answered(app: FlexoApp): number {
  return [...app.stats.requests.values()].reduce((sum, count) => sum + count, 0);
}

/** Sends one request to `side`; what came back once it was counted. */
async function ask(side: Side, path: string, init: RequestInit = {}): Promise<Observed> {
  const before = { answered: answered(side.app), fullPath: side.fullPath, lines: side.lines.length };
  const response = await fetch(`${side.url}${path}`, init);
  const body = await response.bytes();
  await waitFor("the answer is counted", () => answered(side.app) > before.answered);
  // The log line without its milliseconds.
  const line = side.lines[before.lines]?.filter((_, index) => index !== 11);
  return {
    status: response.status,
    headers: [...response.headers].filter(([name]) => name !== "date"),
    body,
    line,
    counters: counters(side.app),
    fullPath: side.fullPath - before.fullPath,
  };
}

/** Starts a proxy in front of `mirror`; `quick`: with the quick paths, else every request takes the full path. */
function startSide(
  dir: string,
  mirror: FakeMirror,
  config: Record<string, unknown>,
  quick: boolean,
): Side & { close(): Promise<void> } {
  const lines: unknown[][] = [];
  const log: LogOutput = {
    dropped: 0,
    line: (_category, _level, message) => lines.push([...message]),
    enabled: () => true,
  };
  const app = createApp(testConfig(dir, [mirror.url], { node_name: "twin", ...config }), {
    limits: TEST_LIMITS,
    log,
  });
  const side = { url: "", app, fullPath: 0, lines };
  const server = startServer({
    ...app,
    fetch: (req, info) => (side.fullPath++, app.fetch(req, info)),
    quickAnswer: quick ? app.quickAnswer : () => undefined,
  }, { hostnames: ["127.0.0.1"], port: 0 });
  side.url = `http://127.0.0.1:${server.addresses[0].port}`;
  return {
    ...side,
    get fullPath() {
      return side.fullPath;
    },
    close: async () => {
      await server.shutdown({ graceMs: 1_000 });
      await app.downloads.idle();
    },
  };
}

/** Two proxies (quick paths on and off) with `config`, in front of a mirror with `count` small packages. */
async function withTwins(
  config: Record<string, unknown>,
  fn: (quick: Side, full: Side, packages: string[]) => Promise<void>,
): Promise<void> {
  await withTempDir(async (root) => {
    const packages: string[] = [];
    await Deno.mkdir(join(root, "mirror", DIR), { recursive: true });
    for (let i = 0; i < 12; i++) {
      const name = `p${i}-1.0-1-x86_64.pkg.tar.zst`;
      await Deno.writeFile(join(root, "mirror", DIR, name), randomBytes(4096 + i));
      await Deno.writeFile(join(root, "mirror", DIR, `${name}.sig`), randomBytes(119));
      packages.push(`/${DIR}/${name}`);
    }
    await using mirror = await startFakeMirror(join(root, "mirror"));
    await Deno.mkdir(join(root, "quick"));
    await Deno.mkdir(join(root, "full"));
    const quick = startSide(join(root, "quick"), mirror, config, true);
    const full = startSide(join(root, "full"), mirror, config, false);
    try {
      await fn(quick, full, packages);
    } finally {
      await quick.close();
      await full.close();
    }
  });
}

/** Asks both sides the same; asserts the same answer, and whether the quick side took the full path. */
async function assertSame(
  quick: Side,
  full: Side,
  path: string,
  init: RequestInit,
  expect: { status: number; fullPath: boolean },
): Promise<void> {
  const fromQuick = await ask(quick, path, init);
  const fromFull = await ask(full, path, init);
  assertEquals(fromFull.fullPath, 1);
  assertEquals({ ...fromQuick, fullPath: fromQuick.fullPath === 1 }, {
    ...fromFull,
    fullPath: expect.fullPath,
  });
  assertEquals(fromQuick.status, expect.status);
}

Deno.test("QuickMisses.forHead() answers a plain GET of a missing package or signature as the full path does, without it", async () => {
  await withTwins({}, async (quick, full, packages) => {
    await assertSame(quick, full, packages[0], {}, { status: 200, fullPath: false });
    await assertSame(quick, full, `${packages[0]}.sig`, {}, { status: 200, fullPath: false });
    // Now cached (once both downloads have committed): the quick path of hits answers it (the miss remembered its
    // path for it, as the full path does).
    await Promise.all([quick.app.downloads.idle(), full.app.downloads.idle()]);
    await assertSame(quick, full, packages[0], {}, { status: 200, fullPath: false });
    // The mirror lacks it: the error answer, counted as the full path counts it.
    await assertSame(quick, full, `/${DIR}/gone-1-1-x86_64.pkg.tar.zst`, {}, {
      status: 404,
      fullPath: false,
    });
  });
});

Deno.test("QuickMisses.forHead() has the quick path of hits answer the first GET of a file cached before, as the full path does", async () => {
  await withTwins({}, async (quick, full, packages) => {
    // In the cache before the start (a restart, flexo import): no request has resolved their paths yet.
    for (const side of [quick, full]) {
      for (const [index, path] of [packages[0], `${packages[1]}.sig`, packages[2]].entries()) {
        const file = side.app.store.finalPath(path.slice(1).split("/"));
        await Deno.mkdir(dirname(file), { recursive: true });
        await Deno.writeFile(file, new Uint8Array(index === 2 ? 0 : 5000 + index).fill(7 + index));
        // The same time on both sides, for the same Last-Modified and ETag.
        await Deno.utime(file, 1_700_000_000, 1_700_000_000);
      }
    }
    await assertSame(quick, full, packages[0], {}, { status: 200, fullPath: false });
    await assertSame(quick, full, packages[0], {}, { status: 200, fullPath: false });
    await assertSame(quick, full, `${packages[1]}.sig`, {}, { status: 200, fullPath: false });
    // An empty file is left to the full path, as the quick path of hits leaves it.
    await assertSame(quick, full, packages[2], {}, { status: 200, fullPath: true });
  });
});

Deno.test("QuickMisses.forHead() leaves ranges, conditionals, Via, only-if-cached, HEAD and Connection: close to the full path", async () => {
  await withTwins({}, async (quick, full, packages) => {
    const cases: [RequestInit, number][] = [
      [{ headers: { Range: "bytes=10-99" } }, 206],
      [{ headers: { "If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT" } }, 200],
      [{ headers: { "If-None-Match": '"x"' } }, 200],
      [{ headers: { Via: "1.1 other" } }, 200],
      [{ headers: { Via: "1.1 twin" } }, 508],
      [{ headers: { "Cache-Control": "only-if-cached" } }, 504],
      [{ headers: { "Cache-Control": "no-cache, ONLY-IF-CACHED" } }, 504],
      [{ method: "HEAD" }, 200],
      [{ headers: { Connection: "close" } }, 200],
    ];
    for (const [index, [init, status]] of cases.entries()) {
      await assertSame(quick, full, packages[index + 1], init, { status, fullPath: true });
    }
    // Not a package: the full path.
    await assertSame(quick, full, `/${DIR}/core.files.tar.gz`, {}, { status: 404, fullPath: true });
  });
});

Deno.test("QuickMisses.forHead() is off where requests are judged one by one, and refused clients never reach it", async () => {
  for (const config of [{ trusted_proxies: ["127.0.0.1"] }, { offline: true }]) {
    await withTwins(config, async (quick, full, packages) => {
      const status = "offline" in config ? 503 : 200;
      await assertSame(quick, full, packages[0], {}, { status, fullPath: true });
    });
  }
  await withTwins({ allowed_clients: ["10.0.0.0/8"] }, async (quick, full, packages) => {
    for (const side of [quick, full]) {
      const response = await fetch(`${side.url}${packages[0]}`);
      assertEquals([response.status, side.fullPath], [403, 0]);
      await response.body?.cancel();
    }
  });
});
