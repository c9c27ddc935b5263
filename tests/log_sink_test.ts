/**
 * The log's bounded output: an output that never drains keeps memory bounded and counts the dropped lines; once
 * it drains again, a line says how many were dropped; batches are written whole; a failed output stops writing.
 */

import type { LogRecord } from "@logtape/logtape";
import { assert, assertEquals } from "./helpers/assert.ts";
import { BoundedLogSink, FIRST_LOG_BUFFER_BYTES } from "../src/log_sink.ts";
import { cheapTextFormatter } from "../src/log_format.ts";
import { closeLogging, setupLogging } from "../src/logging.ts";
import { AnswerLog } from "../src/app/request_log.ts";
import { Stats } from "../src/status/stats.ts";
import { createApp } from "../src/app/app.ts";
import { testConfig } from "./helpers/test_app.ts";

function record(text: string, at = 0): LogRecord {
  return {
    category: ["flexo", "request"],
    level: "info",
    message: [text],
    rawMessage: text,
    timestamp: at,
    properties: {},
  };
}

/** An output whose writes wait until the test lets them go; it keeps what it was given. */
function stuckOutput() {
  const written: string[] = [];
  const waiting: (() => void)[] = [];
  const decoder = new TextDecoder();
  let open = false;
  const write = (bytes: Uint8Array): Promise<number> => {
    written.push(decoder.decode(bytes));
    if (open) return Promise.resolve(bytes.length);
    return new Promise((resolve) => waiting.push(() => resolve(bytes.length)));
  };
  /** From now on, writes end at once; the ones waiting end now. */
  const release = () => {
    open = true;
    for (const done of waiting.splice(0)) done();
  };
  return { write, written, waiting, release, text: () => written.join("") };
}

const format = cheapTextFormatter({ timestamps: false });

Deno.test("BoundedLogSink: an output that never drains keeps the queue bounded and counts dropped lines", async () => {
  const out = stuckOutput();
  const sink = new BoundedLogSink({ write: out.write, format, bufferBytes: 4096 });
  for (let i = 0; i < 100_000; i++) sink.sink(record(`GET /core/os/x86_64/p-${i}.pkg.tar.zst CACHE HIT 200`));
  await Promise.resolve();
  await Promise.resolve();
  assert(sink.pendingBytes <= 2 * 4096, `${sink.pendingBytes} bytes pending`);
  assertEquals(out.waiting.length, 1, "one write under way, never more");
  assert(sink.dropped > 99_000, `${sink.dropped} lines dropped`);
  const kept = 100_000 - sink.dropped;
  assert(kept > 0 && kept < 200, `${kept} lines kept in two 4 KiB buffers`);
});

Deno.test("BoundedLogSink holds no buffer until a line comes, then grows its buffers only as lines need room", async () => {
  const out = stuckOutput();
  const sink = new BoundedLogSink({ write: out.write, format, bufferBytes: 64 * 1024, flushMs: 0 });
  assertEquals(sink.heldBytes, 0, "nothing logged: nothing held");
  sink.sink(record("GET /core/os/x86_64/core.db CACHE HIT 200"));
  assertEquals(sink.heldBytes, FIRST_LOG_BUFFER_BYTES, "one line: one small buffer");
  for (let i = 0; i < 100_000; i++) sink.sink(record(`GET /core/os/x86_64/p-${i}.pkg.tar.zst CACHE HIT 200`));
  await Promise.resolve();
  assertEquals(sink.heldBytes, 2 * 64 * 1024, "a flood: both buffers at their full size, never more");
  out.release();
  await sink[Symbol.asyncDispose]();
  assert(out.text().includes("GET /core/os/x86_64/core.db CACHE HIT 200\n"), out.text().slice(0, 80));
});

Deno.test("BoundedLogSink: once the output drains, a line says how many were dropped, after the lines kept", async () => {
  const out = stuckOutput();
  const sink = new BoundedLogSink({ write: out.write, format, bufferBytes: 1024 });
  for (let i = 0; i < 1000; i++) sink.sink(record(`line ${i}`));
  await Promise.resolve();
  await Promise.resolve();
  const dropped = sink.dropped;
  assert(dropped > 800, `${dropped} dropped`);
  out.release();
  await sink[Symbol.asyncDispose]();
  const lines = out.text().split("\n").filter((line) => line !== "");
  assertEquals(
    lines.at(-1),
    `[WRN] flexo.logging: ${dropped} log lines dropped: the log output could not keep up`,
  );
  assertEquals(lines.length, 1000 - dropped + 1, "every line kept is written, plus the report");
  // The lines written are the first ones, in order: the drops came after them.
  assertEquals(lines.slice(0, 3), [
    "[INF] flexo.request: line 0",
    "[INF] flexo.request: line 1",
    "[INF] flexo.request: line 2",
  ]);
  // Nothing more is reported when nothing more is dropped.
  sink.sink(record("later"));
  out.release();
  await sink[Symbol.asyncDispose]();
  assertEquals(out.text().split("\n").filter((line) => line !== "").at(-1), "[INF] flexo.request: later");
});

Deno.test("BoundedLogSink: lines go out in few large writes: together while one is under way, and at half full", async () => {
  const out = stuckOutput();
  const sink = new BoundedLogSink({ write: out.write, format, bufferBytes: 64 * 1024 });
  for (let i = 0; i < 100; i++) sink.sink(record(`line ${i}`));
  assertEquals(out.written.length, 0, "a few lines wait for more");
  // Half a buffer is written at once.
  while (out.written.length === 0) sink.sink(record("x".repeat(1000)));
  assertEquals(out.written.length, 1);
  for (let i = 0; i < 500; i++) sink.sink(record(`more ${i}`));
  out.release();
  await sink[Symbol.asyncDispose]();
  assertEquals(out.written.length, 2, "the lines logged during the first write went out in one more");
  assertEquals(sink.dropped, 0);
});

Deno.test("BoundedLogSink: an output that fails stops being written to, and what is lost is counted", async () => {
  let calls = 0;
  const sink = new BoundedLogSink({
    write: () => {
      calls++;
      return Promise.reject(new Error("stderr is closed"));
    },
    format,
  });
  sink.sink(record("one"));
  await sink[Symbol.asyncDispose]();
  sink.sink(record("two"));
  await sink[Symbol.asyncDispose]();
  assertEquals(calls, 1);
  assertEquals(sink.dropped, 2);
});

Deno.test("BoundedLogSink counts as dropped the lines logged while the write that fails was under way", async () => {
  let fail: ((error: Error) => void) | undefined;
  const sink = new BoundedLogSink({
    write: () => new Promise((_, reject) => fail = reject),
    format,
    bufferBytes: 4096,
    flushMs: 0,
  });
  sink.sink(record("one"));
  // The write of "one" starts once the flush is due; the lines after it wait in the other buffer.
  while (fail === undefined) await new Promise((resolve) => setTimeout(resolve, 0));
  sink.sink(record("two"));
  sink.sink(record("three"));
  fail(new Error("stderr is closed"));
  await sink[Symbol.asyncDispose]();
  assertEquals(sink.dropped, 3, "lines waiting behind the failed write were lost without being counted");
});

Deno.test("cheapTextFormatter() writes logtape's text lines, escapes control characters, and stamps each second once", () => {
  const stamped = cheapTextFormatter({ timestamps: true });
  const at = Date.UTC(2026, 11, 4, 22, 48, 38, 7);
  assertEquals(
    stamped({
      ...record(""),
      message: ["GET ", "/a\n[ERR] forged\x1b[31m", " ", 200, " ", { a: 1 }, ""],
      timestamp: at,
    }),
    "2026-12-04 22:48:38.007 +00 [INF] flexo.request: GET /a\\n[ERR] forged\\x1b[31m 200 { a: 1 }\n",
  );
  assertEquals(
    stamped(record("x", at + 993)),
    "2026-12-04 22:48:38.1000 +00 [INF] flexo.request: x\n".replace("38.1000", "39.000"),
  );
});

Deno.test("cheapTextFormatter() escapes C1 control characters too, which terminals also read as escape sequences", () => {
  const line = cheapTextFormatter({ timestamps: false });
  // U+009B is CSI (ESC [) and U+009D is OSC (ESC ]): a header value may hold them (bytes 0x80-0xFF are allowed).
  assertEquals(
    line({ ...record(""), message: ["GET ", "/a", " 508 Via: 1.1 x\u009b2J\u009d0;owned\u0007 \u00e9", ""] }),
    "[INF] flexo.request: GET /a 508 Via: 1.1 x\\x9b2J\\x9d0;owned\\x07 \u00e9\n",
  );
});

Deno.test("a 508 for a client's Via shows its C1 control characters escaped in the log", async () => {
  let log = "";
  const decoder = new TextDecoder();
  await setupLogging({
    level: "info",
    journal: true,
    stream: new WritableStream({ write: (chunk) => void (log += decoder.decode(chunk, { stream: true })) }),
  });
  const app = createApp(testConfig("/nonexistent-flexo-cache", ["http://127.0.0.1:9/"]), {
    nodeName: "node-a",
  });
  try {
    const response = await app.fetch(
      new Request("http://flexo.test/core/os/x86_64/core.db", {
        headers: { via: "1.1 node-a, 1.1 \u009b2J" },
      }),
    );
    assertEquals(response.status, 508);
    await response.body?.cancel();
  } finally {
    await closeLogging();
  }
  assert(log.includes("Via: 1.1 node-a, 1.1 \\x9b2J"), log);
  assert(!log.includes("\u009b"), "a raw CSI reached the log");
});

Deno.test("setupLogging()'s output: request lines written directly look like logtape's, and drops are counted", async () => {
  const out = stuckOutput();
  const stream = new WritableStream<Uint8Array>({ write: async (chunk) => void await out.write(chunk) });
  const output = await setupLogging({ level: "info", stream, journal: true, bufferBytes: 1024 });
  try {
    const answers = new AnswerLog(new Stats(), output);
    for (let i = 0; i < 100; i++) {
      answers.record({
        method: "GET",
        path: `/core/os/x86_64/p-${i}.pkg.tar.zst`,
        result: "CACHE HIT",
        status: 200,
        bytes: 4096,
        ms: 1,
        whole: i !== 0,
      });
    }
    await Promise.resolve();
    assert(output.dropped > 50, `${output.dropped} dropped`);
    output.line(["flexo", "request"], "debug", ["not written at level info"]);
    out.release();
  } finally {
    await closeLogging();
  }
  const lines = out.text().split("\n");
  assertEquals(
    lines[0],
    "<6>[INF] flexo.request: GET /core/os/x86_64/p-0.pkg.tar.zst CACHE HIT 200 4096 bytes 1 ms " +
      "(broken off by the client or upstream)",
  );
  assertEquals(
    lines[1],
    "<6>[INF] flexo.request: GET /core/os/x86_64/p-1.pkg.tar.zst CACHE HIT 200 4096 bytes 1 ms",
  );
  assert(out.text().includes(`[WRN] flexo.logging: ${output.dropped} log lines dropped`), out.text());
  assert(!out.text().includes("not written"));
});
