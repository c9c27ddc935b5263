/**
 * The request log: one line per answer with the client a trusted proxy named, on both ways to the output.
 */

import { dirname, join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { testApp } from "../helpers/test_app.ts";
import { parseRequestHead, type RequestHead } from "../../src/server/http1_head.ts";
import { AnswerLog, type AnswerRecord } from "../../src/app/request_log.ts";
import { Stats } from "../../src/status/stats.ts";
import { cheapTextFormatter } from "../../src/log_format.ts";
import type { LogLevel } from "@logtape/logtape";

const ANSWER: AnswerRecord = {
  method: "GET",
  path: "/core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst",
  result: "CACHE HIT",
  status: 200,
  bytes: 1234,
  ms: 3,
  whole: true,
};

/** An output as setupLogging gives it, formatting lines as the log sink does. */
function output() {
  const lines: string[] = [];
  const format = cheapTextFormatter({ timestamps: false });
  return {
    lines,
    enabled: (_level: LogLevel) => true,
    line(category: readonly string[], level: LogLevel, message: readonly unknown[]) {
      lines.push(format({ category, level, message, rawMessage: "", timestamp: 0, properties: {} }));
    },
  };
}

Deno.test("AnswerLog.record() names the client a trusted proxy reported, on the direct way to the output", () => {
  const out = output();
  const log = new AnswerLog(new Stats(), out);
  log.record({ ...ANSWER, forwardedFor: "192.0.2.8" });
  log.record(ANSWER);
  assertEquals(out.lines, [
    "[INF] flexo.request: GET /core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst (for 192.0.2.8) CACHE HIT 200 1234 bytes 3 ms\n",
    "[INF] flexo.request: GET /core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst CACHE HIT 200 1234 bytes 3 ms\n",
  ]);
});

Deno.test("createApp() logs the client a trusted proxy named for a hit on the quick path too", async () => {
  const out = output();
  const log = { ...out, dropped: 0 };
  const app = await testApp(["http://127.0.0.1:9/"], { log, config: { trusted_proxies: ["127.0.0.1/32"] } });
  try {
    const path = join(app.dir, ANSWER.path.slice(1));
    await Deno.mkdir(dirname(path), { recursive: true });
    await Deno.writeFile(path, new Uint8Array(1234));
    // The full path answers the first request and makes the path known to the quick path.
    const first = await app.fetch(
      new Request(`http://flexo.test${ANSWER.path}`, { headers: { "x-forwarded-for": "192.0.2.8" } }),
    );
    await first.body?.cancel();
    const head = parseRequestHead(
      new TextEncoder().encode(
        `GET ${ANSWER.path} HTTP/1.1\r\nHost: flexo.test\r\nX-Forwarded-For: 192.0.2.9\r\n\r\n`,
      ),
    ) as RequestHead;
    const quick = app.quickAnswer(head, { files: true, remote: "127.0.0.1" });
    // From memory (counted at once) or with sendfile (counted when sent).
    assert(
      quick instanceof Uint8Array || (quick !== undefined && "file" in quick),
      "a hit on the quick path",
    );
    if ("file" in quick) quick.done({ bytes: 1234, whole: true });
    const line = out.lines.at(-1)!;
    assert(line.includes(`${ANSWER.path} (for 192.0.2.9) CACHE HIT 200 1234 bytes`), line);
  } finally {
    await app.cleanup();
  }
});

Deno.test("createApp() logs the client a trusted proxy named on the quick path, not one the client wrote in a header line before the proxy's", async () => {
  const out = output();
  const log = { ...out, dropped: 0 };
  const app = await testApp(["http://127.0.0.1:9/"], { log, config: { trusted_proxies: ["127.0.0.1/32"] } });
  try {
    const path = join(app.dir, ANSWER.path.slice(1));
    await Deno.mkdir(dirname(path), { recursive: true });
    await Deno.writeFile(path, new Uint8Array(1234));
    const first = await app.fetch(new Request(`http://flexo.test${ANSWER.path}`));
    await first.body?.cancel();
    // HAProxy's `option forwardfor` adds its own X-Forwarded-For line after the one the client sent.
    const head = parseRequestHead(
      new TextEncoder().encode(
        `GET ${ANSWER.path} HTTP/1.1\r\nHost: flexo.test\r\nX-Forwarded-For: 10.66.0.1\r\n` +
          "X-Forwarded-For: 192.0.2.9\r\n\r\n",
      ),
    ) as RequestHead;
    const quick = app.quickAnswer(head, { files: true, remote: "127.0.0.1" });
    assert(
      quick instanceof Uint8Array || (quick !== undefined && "file" in quick),
      "a hit on the quick path",
    );
    if ("file" in quick) quick.done({ bytes: 1234, whole: true });
    const line = out.lines.at(-1)!;
    assert(line.includes(`${ANSWER.path} (for 192.0.2.9) CACHE HIT 200 1234 bytes`), line);
  } finally {
    await app.cleanup();
  }
});

Deno.test("AnswerLog.record() counts a HEAD answer apart from the hit ratio", () => {
  // A monitoring probe's HEAD of a cached file is a CACHE HIT that fetched nothing: counted among the requests,
  // not among the file requests of the hit ratio.
  const stats = new Stats();
  const log = new AnswerLog(stats, { enabled: () => false, line: () => {} });
  log.record({ ...ANSWER, result: "CACHE MISS" });
  for (let i = 0; i < 3; i++) log.record({ ...ANSWER, method: "HEAD", bytes: 0 });
  assertEquals(stats.requests.get("CACHE HIT"), 3);
  assertEquals(stats.headRequests.get("CACHE HIT"), 3);
  assertEquals(stats.lookups(), { hits: 0, misses: 1 });
  assertEquals(stats.hitRatio(), 0);
  log.record(ANSWER);
  assertEquals(stats.hitRatio(), 0.5);
});
