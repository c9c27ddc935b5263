/**
 * A job on one mirror as typed outcomes (attempt.ts), and what the failover makes of them (failover.ts): no
 * decision depends on the text of a message.
 */
import nodeAssert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { assert, assertEquals } from "../helpers/assert.ts";

import { Attempt, type AttemptHead } from "../../src/download/attempt.ts";
import { afterRefusal, FailureTally } from "../../src/download/failover.ts";
import { HttpError } from "../../src/http/http_error.ts";
import { MirrorPool } from "../../src/mirrors/mirrors.ts";

const A = "http://mirror-a.test/";
const PATH = "core/os/x86_64/a-1-1-any.pkg.tar.zst";
const LIMITS = {
  connectTimeoutMs: 5_000,
  lowSpeedLimit: 1,
  lowSpeedTimeMs: 60_000,
  lastResortStallMs: 60_000,
};
const ACCEPT = { meta: {}, resumeAcrossMirrors: false };

/** An attempt on mirror A whose fetch answers `answer`. */
function attemptAnswering(answer: () => Response): Attempt {
  const pool = new MirrorPool();
  pool.setMirrors([A], "test");
  const fetch = (() => Promise.resolve(answer())) as typeof globalThis.fetch;
  return new Attempt(A, {
    upstreamPath: PATH,
    mirrors: pool,
    deps: { fetch, now: Date.now },
    limits: LIMITS,
  });
}

async function ask(answer: () => Response, progress = { written: 0 }): Promise<AttemptHead> {
  const attempt = attemptAnswering(answer);
  try {
    const head = await attempt.ask(new Headers(), progress, ACCEPT);
    if (head.type === "accepted") await head.response.body?.cancel();
    return head.type === "accepted" ? { ...head, response: new Response() } : head;
  } finally {
    attempt.close();
  }
}

Deno.test("Attempt.ask() tells every kind of answer apart by type", async () => {
  assertEquals(await ask(() => new Response(null, { status: 304 })), { type: "not_modified" });
  assertEquals(await ask(() => new Response(null, { status: 404 })), { type: "not_found", status: 404 });
  assertEquals(await ask(() => new Response(null, { status: 416 }), { written: 10 }), {
    type: "unsatisfiable",
    reason: "answered 416 to bytes=10-",
  });
  assertEquals(await ask(() => new Response(null, { status: 500 })), {
    type: "failed",
    reason: "answered HTTP 500",
    timeout: false,
    answered: true,
  });
  assertEquals(await ask(() => new Response("<html>", { headers: { "content-type": "text/html" } })), {
    type: "unusable",
    reason: "sent an HTML page instead of the file",
  });
  assertEquals(
    await ask(() => new Response("whole", { headers: { "content-length": "5" } }), { written: 3 }),
    { type: "changed_upstream", reason: `${PATH} changed upstream during the transfer; retry the request` },
    "a 200 to a resume that must come from the same file",
  );
  const accepted = await ask(() =>
    new Response("hello", {
      headers: { "content-length": "5", "last-modified": "Tue, 14 Nov 2023 22:13:20 GMT" },
    })
  );
  assertEquals(accepted.type === "accepted" && [accepted.skip, accepted.total, accepted.lastModified], [
    0,
    5,
    Date.UTC(2023, 10, 14, 22, 13, 20),
  ]);
});

Deno.test("Attempt.ask() logs a refused resume, naming the mirror, and not an honoured one", async () => {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { capture: (record) => records.push(record) },
    loggers: [
      { category: ["flexo"], lowestLevel: "info", sinks: ["capture"] },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
    ],
  });
  const resumeAnywhere = { meta: {}, resumeAcrossMirrors: true };
  const askResume = async (answer: () => Response) => {
    const attempt = attemptAnswering(answer);
    try {
      const head = await attempt.ask(new Headers({ range: "bytes=3-" }), { written: 3 }, resumeAnywhere);
      if (head.type === "accepted") await head.response.body?.cancel();
      return head.type === "accepted" ? head.skip : head.type;
    } finally {
      attempt.close();
    }
  };
  const text = () => records.map((r) => r.message.map(String).join("")).join("\n");
  try {
    const honoured = await askResume(() =>
      new Response("lo", { status: 206, headers: { "content-range": "bytes 3-4/5", "content-length": "2" } })
    );
    assertEquals(honoured, 0);
    assertEquals(text(), "", "a 206 is an ordinary resume");
    const refused = await askResume(() => new Response("hello", { headers: { "content-length": "5" } }));
    assertEquals(refused, 3, "the 200 is accepted, its first 3 bytes dropped");
    assertEquals(records.length, 1, text());
    assertEquals(records[0].level, "warning");
    assertEquals(
      text(),
      `${A} refused to resume ${PATH} from byte 3: it ignored the Range request and sends the whole file ` +
        "again (the first 3 bytes are downloaded twice and dropped)",
    );
  } finally {
    await reset();
  }
});

/** Asks and pumps one answer into memory; `write` may fail. */
async function pump(
  body: BodyInit,
  headers: Record<string, string>,
  write: (chunk: Uint8Array) => Promise<void> = () => Promise.resolve(),
) {
  const attempt = attemptAnswering(() => new Response(body, { headers }));
  try {
    const head = await attempt.ask(new Headers(), { written: 0 }, ACCEPT);
    if (head.type !== "accepted") throw new Error(`not accepted: ${head.type}`);
    return await attempt.pump(head, { from: 0, write, canSwitch: () => true });
  } finally {
    attempt.close();
  }
}

Deno.test("Attempt.pump() ends complete, cut short, too long, or with a failed write", async () => {
  const five = new TextEncoder().encode("hello");
  assertEquals((await pump(five, { "content-length": "5" })).type, "complete");
  assertEquals((await pump(five, {})).type, "complete", "no length: a clean end is the end");
  const short = await pump(five, { "content-length": "9" });
  assertEquals(short.type === "cut_short" && short.reason, "closed the connection after 5 of 9 bytes");
  const long = await pump(five, { "content-length": "3" });
  assertEquals(long.type === "too_long" && long.reason, "sent more than the 3 bytes it announced");
  // A disk error whose message happens to read like a mirror's fault is still the disk's.
  const diskError = new Error("sent more than the disk could take");
  const failed = await pump(five, { "content-length": "5" }, () => Promise.reject(diskError));
  assertEquals(failed.type === "write_failed" && failed.error, diskError);
});

Deno.test("afterRefusal() goes on, gives up or stops the order, and FailureTally gives the final answer", () => {
  const context = (notFoundIsFinal: boolean, tally = new FailureTally()) => ({
    mirror: A,
    upstreamPath: PATH,
    notFoundIsFinal,
    tally,
  });
  assertEquals(afterRefusal({ type: "not_found", status: 404 }, context(false)), "next_mirror");
  assertEquals(afterRefusal({ type: "not_found", status: 404 }, context(true)), "give_up");
  assertEquals(afterRefusal({ type: "unusable", reason: "x" }, context(false)), "next_mirror");
  nodeAssert.throws(
    () => afterRefusal({ type: "changed_upstream", reason: "changed" }, context(false)),
    (error: unknown) => error instanceof HttpError && error.status === 502,
  );

  const notFound = new FailureTally();
  notFound.notFound(A);
  assertEquals(notFound.finalError(PATH).status, 404);
  // A mirror that refuses or is silent beside one that says 404: the 404 is the answer, naming both.
  const refusedAndMissing = new FailureTally();
  refusedAndMissing.notFound(A);
  refusedAndMissing.failed("http://b.test/", "connection refused", { unreachable: true });
  const answer = refusedAndMissing.finalError(PATH);
  assertEquals(answer.status, 404);
  assertEquals(
    answer.message,
    `${PATH} was not found upstream: ${A} does not have it (404); http://b.test/ connection refused`,
  );
  const timeouts = new FailureTally();
  timeouts.failed(A, "no response", { timeout: true });
  assertEquals(timeouts.finalError(PATH).status, 504);
  const mixed = new FailureTally();
  mixed.notFound("http://b.test/");
  mixed.failed(A, "answered HTTP 500");
  assertEquals(mixed.finalError(PATH).status, 502);
  assertEquals(
    mixed.finalError(PATH).message,
    `every mirror failed for ${PATH}: http://b.test/ does not have it (404); ${A} answered HTTP 500`,
  );
  // Every mirror sent the request back along a loop: the loop is the answer, so the tier below learns it too.
  const loops = new FailureTally();
  loops.failed(A, "answered HTTP 508", { loop: true });
  loops.failed("http://b.test/", "answered HTTP 508", { loop: true });
  assertEquals(loops.finalError(PATH).status, 508);
  assert(loops.finalError(PATH).message.startsWith("Loop detected"), loops.finalError(PATH).message);
  // One mirror in a loop and another failing otherwise: a plain failure.
  const loopAndDown = new FailureTally();
  loopAndDown.failed(A, "answered HTTP 508", { loop: true });
  loopAndDown.failed("http://b.test/", "connection refused", { unreachable: true });
  assertEquals(loopAndDown.finalError(PATH).status, 502);
});
