import nodeAssert from "node:assert/strict";
import { assert, assertEquals } from "../helpers/assert.ts";
import { type FakeAnswer, fakeFetch, testBytes } from "../helpers/fake_fetch.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { concatBytes, pumpGated as pumpGatedWith } from "../helpers/pump_gated.ts";
import { withDirectBody } from "../../src/http/direct_body.ts";
import {
  askMirror,
  type BodyOutcome,
  type MirrorAnswer,
  parseContentRange,
  PUMP_BUFFER_BYTES,
  PUMP_BUFFER_MIN_BYTES,
  pumpBody,
  pumpBufferBytes,
  type TransferLimits,
} from "../../src/download/transfer.ts";

const URL_A = "http://mirror-a.test/core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst";

/** pumpBody over a gated body (tests/helpers/pump_gated.ts) with these tests' limits. */
const pumpGated = (limits: Partial<TransferLimits>, canSwitch: boolean) =>
  pumpGatedWith({ ...LIMITS, ...limits }, canSwitch);

const LIMITS: TransferLimits = {
  connectTimeoutMs: 2_000,
  lowSpeedLimit: 1,
  lowSpeedTimeMs: 10_000,
  lastResortStallMs: 10_000,
};

/** A clock that only moves when told to, so that time to first byte is exact. */
function manualClock(): { now: () => number; advance(ms: number): void } {
  let t = 1_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

/** Asks a fake mirror that gives `answer`, with a clock that moves 42 ms while the mirror thinks. */
async function ask(
  answer: FakeAnswer | "refuse",
  options: { method?: "GET" | "HEAD"; limits?: Partial<TransferLimits> } = {},
): Promise<{ answer: MirrorAnswer; abort: AbortController; bodyCancelled: () => boolean }> {
  const clock = manualClock();
  const { fetch: inner } = fakeFetch(() => answer);
  let cancelled = false;
  const fetch: typeof globalThis.fetch = async (input, init) => {
    const response = await inner(input, init);
    clock.advance(42);
    if (response.body === null) return response;
    // Wrap the body to see whether askMirror releases it.
    const reader = response.body.getReader();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel(reason) {
        cancelled = true;
        return reader.cancel(reason);
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  const abort = new AbortController();
  const result = await askMirror(
    URL_A,
    { method: options.method ?? "GET", headers: new Headers(), abort },
    { deps: { fetch, now: clock.now }, limits: { ...LIMITS, ...options.limits } },
  );
  return { answer: result, abort, bodyCancelled: () => cancelled };
}

Deno.test("askMirror() returns a 200 response with its time to first byte", async () => {
  const data = testBytes(1_000);
  const { answer } = await ask({ body: data });
  assert(answer.type === "response", `expected a response, got ${answer.type}`);
  assertEquals(answer.response.status, 200);
  assertEquals(answer.ttfbMs, 42);
  assertEquals(new Uint8Array(await answer.response.arrayBuffer()), data);
});

Deno.test("askMirror() returns a 206 response untouched for the caller to check", async () => {
  const { answer } = await ask({
    status: 206,
    headers: { "content-range": "bytes 10-19/100" },
    body: testBytes(10),
  });
  assert(answer.type === "response", `expected a response, got ${answer.type}`);
  assertEquals(answer.response.status, 206);
  assertEquals(answer.response.headers.get("content-range"), "bytes 10-19/100");
  assertEquals((await answer.response.arrayBuffer()).byteLength, 10);
});

Deno.test("askMirror() sends the method, headers and signal it is given", async () => {
  const { fetch, requests } = fakeFetch(() => ({ body: testBytes(5) }));
  const headers = new Headers({ "Range": "bytes=5-", "If-Range": "Tue, 14 Nov 2023 22:13:20 GMT" });
  const answer = await askMirror(URL_A, { method: "HEAD", headers, abort: new AbortController() }, {
    deps: { fetch, now: Date.now },
    limits: LIMITS,
  });
  assertEquals(answer.type, "response");
  assertEquals(requests.length, 1);
  assertEquals(requests[0].url, URL_A);
  assertEquals(requests[0].method, "HEAD");
  assertEquals(requests[0].headers.get("range"), "bytes=5-");
  assertEquals(requests[0].headers.get("if-range"), "Tue, 14 Nov 2023 22:13:20 GMT");
});

Deno.test("askMirror() reports 404 and 410 as not_found and releases the body", async () => {
  for (const status of [404, 410]) {
    const { answer, bodyCancelled } = await ask({ status, body: new TextEncoder().encode("gone") });
    assertEquals(answer, { type: "not_found", status });
    assert(bodyCancelled(), `the body of the ${status} answer is cancelled`);
  }
});

Deno.test("askMirror() accepts an empty Content-Encoding or identity as no encoding, and refuses a real one", async () => {
  // RFC 9110 section 8.4: `Content-Encoding:` with no coding, and identity, leave the bytes as they are.
  for (const encoding of ["", " ", "identity", "IDENTITY", "identity, "]) {
    const { answer } = await ask({ headers: { "content-encoding": encoding }, body: testBytes(10) });
    assertEquals(answer.type, "response", JSON.stringify(encoding));
  }
  for (const encoding of ["gzip", "zstd", "br", "deflate", "x-unknown", "identity, gzip"]) {
    const { answer, bodyCancelled } = await ask({
      headers: { "content-encoding": encoding },
      body: testBytes(10),
    });
    assert(answer.type === "failed", `${encoding}: ${answer.type}`);
    assert(answer.message.includes(`Content-Encoding: ${encoding}`), answer.message);
    assert(bodyCancelled(), `the body sent with ${encoding} is cancelled`);
  }
});

Deno.test("askMirror() reports 304 as not_modified", async () => {
  const { answer } = await ask({ status: 304 });
  assertEquals(answer, { type: "not_modified" });
});

Deno.test("askMirror() reports 416 as unsatisfiable with the mirror's Content-Range", async () => {
  const withRange = await ask({
    status: 416,
    headers: { "content-range": "bytes */1234" },
    body: testBytes(3),
  });
  assertEquals(withRange.answer, { type: "unsatisfiable", contentRange: "bytes */1234" });
  assert(withRange.bodyCancelled(), "the body of the 416 answer is cancelled");
  const without = await ask({ status: 416 });
  assertEquals(without.answer, { type: "unsatisfiable", contentRange: null });
});

Deno.test("askMirror() reports other statuses, 5xx included, as failed without a timeout", async () => {
  for (const status of [500, 502, 503, 204, 403]) {
    const { answer, bodyCancelled } = await ask({ status, body: testBytes(20) });
    assertEquals(answer, {
      type: "failed",
      message: `answered HTTP ${status}`,
      timeout: false,
      answered: true,
    });
    if (status !== 204) assert(bodyCancelled(), `the body of the ${status} answer is cancelled`);
  }
});

/** A fetch that never answers: it waits until its request is aborted, then fails with the abort's reason. */
function silentMirror(): { fetch: typeof fetch; asked: Promise<void> } {
  const asked = Promise.withResolvers<void>();
  const fetchImpl = (_input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    asked.resolve();
    return new Promise((_, reject) => {
      const signal = init?.signal;
      if (signal?.aborted) reject(signal.reason);
      signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
  };
  return { fetch: fetchImpl as typeof fetch, asked: asked.promise };
}

Deno.test("askMirror() gives up after connect_timeout and aborts the request", async () => {
  const timers = new FakeTimers();
  const { fetch, asked } = silentMirror();
  const abort = new AbortController();
  const pending = askMirror(URL_A, { method: "GET", headers: new Headers(), abort }, {
    deps: { fetch, now: timers.now, timers: timers.deps },
    limits: { ...LIMITS, connectTimeoutMs: 50 },
  });
  await asked;
  assertEquals(timers.pending, [50], "one timer, for connect_timeout");
  timers.advance(49);
  assertEquals(abort.signal.aborted, false, "not before connect_timeout");
  timers.advance(1);
  assert(abort.signal.aborted, "the request is aborted at connect_timeout");
  const answer = await pending;
  assertEquals(answer.type, "failed");
  assert(answer.type === "failed");
  assertEquals(answer.timeout, true);
  assertEquals(answer.answered, false);
  assert(answer.message.includes("connect_timeout"), `the message names the setting: ${answer.message}`);
  assert(answer.message.includes("50 ms"), `the message names the limit: ${answer.message}`);
});

Deno.test("askMirror() hands the request to fetch before it sets its connect timer", async () => {
  const timers = new FakeTimers();
  const { fetch } = fakeFetch(() => ({ body: testBytes(10) }));
  const timersAtFetch: number[][] = [];
  const watched: typeof globalThis.fetch = (input, init) => {
    timersAtFetch.push(timers.pending);
    return fetch(input, init);
  };
  const abort = new AbortController();
  const answer = await askMirror(URL_A, { method: "GET", headers: new Headers(), abort }, {
    deps: { fetch: watched, now: timers.now, timers: timers.deps },
    limits: { ...LIMITS, connectTimeoutMs: 30 },
  });
  assertEquals(timersAtFetch, [[]], "no timer yet when the request is handed to fetch");
  if (answer.type === "response") await answer.response.body?.cancel();
});

Deno.test("askMirror() leaves the transfer alone once the headers have arrived", async () => {
  const timers = new FakeTimers();
  const { fetch } = fakeFetch(() => ({ body: testBytes(10) }));
  const abort = new AbortController();
  const answer = await askMirror(URL_A, { method: "GET", headers: new Headers(), abort }, {
    deps: { fetch, now: timers.now, timers: timers.deps },
    limits: { ...LIMITS, connectTimeoutMs: 30 },
  });
  assertEquals(answer.type, "response");
  assertEquals(timers.pending, [], "the connect timer is cleared");
  timers.advance(10_000);
  assertEquals(abort.signal.aborted, false, "time passing does not abort the transfer");
  if (answer.type === "response") await answer.response.body?.cancel();
});

Deno.test("askMirror() reports a refused connection as failed without a timeout", async () => {
  const { answer } = await ask("refuse");
  assertEquals(answer, {
    type: "failed",
    message: "error sending request: connection refused",
    timeout: false,
    answered: false,
  });
});

Deno.test("askMirror() reports a real refused connection on 127.0.0.1 without repeating the URL", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => new Response("x"));
  const port = server.addr.port;
  await server.shutdown();
  const url = `http://127.0.0.1:${port}/core/os/x86_64/core.db`;
  const answer = await askMirror(
    url,
    { method: "GET", headers: new Headers(), abort: new AbortController() },
    {
      deps: { fetch, now: Date.now },
      limits: LIMITS,
    },
  );
  assert(answer.type === "failed", `expected failed, got ${answer.type}`);
  assertEquals(answer.timeout, false);
  assert(/refused/i.test(answer.message), `the message says why: ${answer.message}`);
  assert(!answer.message.includes(url), `the message does not repeat the URL: ${answer.message}`);
  assert(!answer.message.startsWith("fetch failed"), `no generic prefix: ${answer.message}`);
});

Deno.test("askMirror() reports an abort by the caller as failed without a timeout", async () => {
  const timers = new FakeTimers();
  const { fetch, asked } = silentMirror();
  const abort = new AbortController();
  const pending = askMirror(URL_A, { method: "GET", headers: new Headers(), abort }, {
    deps: { fetch, now: timers.now, timers: timers.deps },
    limits: LIMITS,
  });
  await asked;
  abort.abort(new Error("client went away"));
  assertEquals(await pending, {
    type: "failed",
    message: "client went away",
    timeout: false,
    answered: false,
  });
  assertEquals(timers.pending, [], "the connect timer is cleared");
});

/** Runs pumpBody over a fake mirror's body that needs no time, collecting what reaches the sink. */
async function pump(
  answer: FakeAnswer,
  options: { sink?: (chunk: Uint8Array) => Promise<void> } = {},
): Promise<{ outcome: BodyOutcome; received: Uint8Array; abort: AbortController }> {
  const { fetch } = fakeFetch(() => answer);
  const abort = new AbortController();
  const response = await fetch(URL_A, { signal: abort.signal });
  const parts: Uint8Array[] = [];
  const timers = new FakeTimers();
  const outcome = await pumpBody(
    response.body!,
    options.sink ?? ((chunk) => {
      parts.push(chunk.slice());
      return Promise.resolve();
    }),
    { deps: { fetch, now: timers.now, timers: timers.deps }, limits: LIMITS, abort, canSwitch: () => true },
  );
  return { outcome, received: concatBytes(parts), abort };
}

Deno.test("pumpBody() passes every chunk to the sink and reports the end", async () => {
  const data = testBytes(300_000, 2);
  const { outcome, received, abort } = await pump({ body: data, chunkSize: 50_000 });
  assertEquals(outcome, { type: "ended", bytes: data.byteLength });
  assertEquals(received, data);
  assertEquals(abort.signal.aborted, false);
});

Deno.test("pumpBody() reads a body that has a direct reader through it, into one buffer, and leaves its stream alone", async () => {
  const data = testBytes(100_000, 3);
  let pulls = 0;
  const body = new ReadableStream<Uint8Array>({
    type: "bytes",
    pull: () => void pulls++,
  }, { highWaterMark: 0 });
  let offset = 0;
  let cancels = 0;
  withDirectBody(body, {
    readInto: (view) => {
      if (offset === data.byteLength) return Promise.resolve(null);
      const count = Math.min(view.byteLength, 30_000, data.byteLength - offset);
      view.set(data.subarray(offset, offset + count));
      offset += count;
      return Promise.resolve(count);
    },
    cancel: () => void cancels++,
  });
  const chunks: Uint8Array[] = [];
  const buffers = new Set<ArrayBufferLike>();
  const timers = new FakeTimers();
  const outcome = await pumpBody(body, (chunk) => {
    chunks.push(chunk.slice());
    buffers.add(chunk.buffer);
  }, {
    deps: { fetch: globalThis.fetch, now: timers.now, timers: timers.deps },
    limits: LIMITS,
    abort: new AbortController(),
    canSwitch: () => true,
    expectedBytes: data.byteLength,
  });
  assertEquals(outcome, { type: "ended", bytes: data.byteLength });
  assertEquals(concatBytes(chunks), data);
  assertEquals([pulls, body.locked, buffers.size, cancels], [0, false, 1, 1]);
});

Deno.test("pumpBody() abandons a transfer slow for low_speed_time while another mirror is left", async () => {
  // 100 bytes per 150 ms is far below 100 000 B/s; the watchdog looks every quarter of low_speed_time.
  const p = await pumpGated({ lowSpeedLimit: 100_000, lowSpeedTimeMs: 200 }, true);
  await p.send(testBytes(100, 3));
  p.timers.advance(150);
  assertEquals(p.abort.signal.aborted, false, "not before low_speed_time has passed");
  await p.send(testBytes(100, 3));
  p.timers.advance(50);
  assert(p.abort.signal.aborted, "aborted once the transfer was slow for low_speed_time");
  const outcome = await p.outcome;
  assert(outcome.type === "slow", `expected slow, got ${outcome.type}`);
  assertEquals(outcome.bytes, 200);
  assertEquals(outcome.message, "1000 B/s over 0 s is below low_speed_limit (100000 B/s)");
});

Deno.test("pumpBody() keeps a slow transfer when no other mirror is left", async () => {
  const data = testBytes(1_200, 4);
  const p = await pumpGated({ lowSpeedLimit: 100_000, lowSpeedTimeMs: 100 }, false);
  // 200 bytes every 60 ms, for more than three times low_speed_time.
  for (let at = 0; at < data.byteLength; at += 200) {
    await p.send(data.slice(at, at + 200));
    p.timers.advance(60);
  }
  assertEquals(p.abort.signal.aborted, false);
  p.gate.end();
  assertEquals(await p.outcome, { type: "ended", bytes: data.byteLength });
  assertEquals(p.bytes(), data);
});

Deno.test("pumpBody() abandons even the last mirror when it sends nothing for last_resort_stall", async () => {
  const p = await pumpGated({ lastResortStallMs: 2_000, lowSpeedTimeMs: 200 }, false);
  await p.send(testBytes(3_000, 5));
  p.timers.advance(1_950);
  assertEquals(p.abort.signal.aborted, false, "not before last_resort_stall");
  p.timers.advance(50);
  assert(p.abort.signal.aborted, "the request is aborted after last_resort_stall without a byte");
  const outcome = await p.outcome;
  assert(outcome.type === "slow", `expected slow, got ${outcome.type}`);
  assertEquals(outcome.bytes, 3_000);
  assertEquals(outcome.message, "no data for 2 s");
});

Deno.test("pumpBody() reports a connection error with the bytes before it", async () => {
  const { outcome } = await pump({ body: testBytes(10_000, 6), chunkSize: 1_000, dropAfter: 4_000 });
  assert(outcome.type === "error", `expected error, got ${outcome.type}`);
  assertEquals(outcome.bytes, 4_000);
  assert(outcome.message.includes("connection reset"), outcome.message);
});

Deno.test("pumpBody() stops at a sink error and hands the error back", async () => {
  const failure = new Error("disk on fire");
  let calls = 0;
  const { outcome } = await pump({ body: testBytes(10_000, 7), chunkSize: 1_000 }, {
    sink: () => {
      calls++;
      return calls === 3 ? Promise.reject(failure) : Promise.resolve();
    },
  });
  assert(outcome.type === "sink_error", `expected sink_error, got ${outcome.type}`);
  assertEquals(outcome.bytes, 2_000, "only the chunks the sink took are counted");
  nodeAssert.equal(outcome.error, failure);
  assertEquals(calls, 3);
});

Deno.test("parseContentRange() reads start, end and total, and rejects malformed values", () => {
  const cases: [string | null, ReturnType<typeof parseContentRange>][] = [
    ["bytes 0-99/100", { start: 0, end: 99, total: 100 }],
    ["bytes 100-199/1000", { start: 100, end: 199, total: 1000 }],
    ["bytes 5-9/*", { start: 5, end: 9, total: undefined }],
    ["BYTES 1-1/2", { start: 1, end: 1, total: 2 }],
    ["  bytes  7-8/9  ", { start: 7, end: 8, total: 9 }],
    [null, undefined],
    ["", undefined],
    ["bytes */100", undefined],
    ["bytes 9-5/10", undefined],
    ["bytes 0-9", undefined],
    ["bytes 0-/10", undefined],
    ["bytes -5/10", undefined],
    ["bytes=0-9/10", undefined],
    ["items 0-9/10", undefined],
    ["bytes 0-9/10, bytes 20-29/30", undefined],
    ["bytes 0x0-9/10", undefined],
  ];
  for (const [header, expected] of cases) {
    assertEquals(parseContentRange(header), expected, `parseContentRange(${JSON.stringify(header)})`);
  }
});

Deno.test("pumpBufferBytes() reads a body of known length into a buffer no larger than it and one byte", () => {
  assertEquals(pumpBufferBytes(undefined), PUMP_BUFFER_BYTES);
  assertEquals(pumpBufferBytes(4096), PUMP_BUFFER_MIN_BYTES, "small bodies share one smallest size");
  assertEquals(pumpBufferBytes(100_000), 100_001, "room for one byte more than announced");
  assertEquals(pumpBufferBytes(10 * 1024 * 1024), PUMP_BUFFER_BYTES);
});
