/**
 * flexo's own HTTP/1.1 layer under attack: random bytes in random TCP pieces, smuggling, head limits, failing and
 * empty body pieces, pipelined floods. Slow clients are in http1_slow_clients_test.ts, hostile targets and Hosts
 * in http1_hostile_targets_test.ts.
 */

import fc from "fast-check";
import { latin1, MAX_HEAD_BYTES } from "../../src/server/http1_head.ts";
import { rawTargetOf } from "../../src/http/client_request.ts";
import { encodeLatin1 } from "../../src/server/http1_response.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { readAll } from "../helpers/sockets.ts";
import { waitFor } from "../helpers/wait.ts";
import {
  delay,
  echo,
  exchange,
  get,
  quickAnswer,
  REFUSALS,
  withListener,
  withServed,
  writeInPieces,
} from "../helpers/http1_adversary.ts";

const FRAGMENTS = [
  ..."GET /a HTTP/1.1|HEAD /h HTTP/1.1|GET /z HTTP/1.0|POST /p HTTP/1.1|get /l HTTP/1.1|GET http://a/abs HTTP/1.1"
    .split("|"),
  ..."GET /v HTTP/2.0|CONNECT a:1 HTTP/1.1|Host: a|Host: a@b|Content-Length: 3|Content-Length: 0".split("|"),
  ..."Content-Length: 1, 2|Transfer-Encoding: chunked|Connection: close|Connection: keep-alive|X: t\xe9xt"
    .split("|"),
  ..." folded|0|abc|:|".split("|"),
].map((line) => `${line}\r\n`).concat(["\r", "\n", "\0", " ", "\t", `X: ${"a".repeat(9_000)}\r\n`])
  .concat([get("/a"), get("/quick")]);

Deno.test("ClientConnection.serve() answers any bytes, in any TCP pieces, only with well-formed HTTP/1.1 responses and keeps serving", async () => {
  const seen: string[] = [];
  const handler = (req: Request) => (seen.push(`${req.method} ${rawTargetOf(req)}`), echo(req));
  await withListener({ timeoutMs: 2_000, handler, quickAnswer }, async (listener) => {
    const bytes = fc.uint8Array({ maxLength: 24 }).map((b) => latin1(b));
    const piece = fc.oneof(fc.constantFrom(...FRAGMENTS), bytes);
    const input = fc.array(piece, { maxLength: 16 }).map((parts) => parts.join(""));
    const cuts = fc.array(fc.integer({ min: 1, max: 48 }), { maxLength: 8 });
    let refusals = 0;
    await fc.assert(
      fc.asyncProperty(input, cuts, async (text, cuts) => {
        seen.length = 0;
        const answers = await exchange(listener.addr.port, text, cuts);
        // Every request the app saw was answered once, in order, and no answer was made up.
        assertEquals(
          answers.filter((a) => a.headers.has("x-echo")).map((a) => a.headers.get("x-echo")),
          seen,
        );
        for (const [i, answer] of answers.entries()) {
          assert(answer.headers.has("content-length"), "every answer here has a length");
          if (!REFUSALS.has(answer.status)) continue;
          refusals++;
          assertEquals(answer.headers.get("connection"), "close", "a refusal closes the connection");
          assertEquals(i, answers.length - 1, "nothing is answered after a refusal");
        }
      }),
      { numRuns: 150 },
    );
    // The refusals' rules above were checked, not skipped: random bytes are refused most of the time.
    assert(refusals > 10, `only ${refusals} refusals in 150 runs`);
    const [after] = await exchange(listener.addr.port, get("/after", "Connection: close\r\n"));
    assertEquals(after?.body, "GET /after");
    await waitFor("every connection to end", () => listener.connections === 0, 2_000);
  });
});

const HOW: Record<string, [string, string, boolean]> = {
  "keep": ["1.1", "", false],
  "1.0": ["1.0", "", true],
  "1.0 keep-alive": ["1.0", "Connection: keep-alive\r\n", false],
  "close": ["1.1", "Connection: close\r\n", true],
  "length 0": ["1.1", "Content-Length: 0\r\n", false],
  "body": ["1.1", "Content-Length: 5\r\n", true],
};

Deno.test("ClientConnection.serve() answers valid pipelined requests split anywhere exactly once each, in order, up to the first that ends the connection", async () => {
  const request = fc.record({
    method: fc.constantFrom("GET", "HEAD"),
    target: fc.constantFrom(
      ..."/ /a /core/os/x86_64/x-1-1-any.pkg.tar.zst /a?b=c /%41/../b /a//b".split(" "),
    ),
    how: fc.constantFrom("keep", "keep", ...Object.keys(HOW)),
    blank: fc.boolean(),
  });
  await withListener({ timeoutMs: 2_000 }, async (listener) => {
    const property = fc.asyncProperty(
      fc.array(request, { minLength: 1, maxLength: 8 }),
      fc.array(fc.nat(60)),
      async (list, cuts) => {
        let text = "";
        let ended = false;
        const expected: typeof list = [];
        for (const request of list) {
          const [version, more, closes] = HOW[request.how];
          text += `${request.blank ? "\r\n" : ""}${request.method} ${request.target} HTTP/${version}\r\n` +
            `Host: a\r\n${more}\r\n${request.how === "body" ? "GET /" : ""}`;
          if (!ended) expected.push(request);
          ended ||= closes;
        }
        const answers = await exchange(listener.addr.port, text, cuts.map((cut) => cut + 1));
        assertEquals(
          answers.map((a) => a.headers.get("x-echo")),
          expected.map((r) => `${r.method} ${r.target}`),
        );
        for (const [i, { method, target, how }] of expected.entries()) {
          assertEquals(answers[i].body, method === "GET" ? `GET ${target}` : "");
          if (how === "1.0 keep-alive") assertEquals(answers[i].headers.get("connection"), "keep-alive");
        }
      },
    );
    await fc.assert(property, { numRuns: 120 });
  });
});

Deno.test("ClientConnection.serve() reads a head split into two TCP writes at every byte boundary", async () => {
  await withServed({}, async (client, reader) => {
    const bytes = encodeLatin1("\r\n\r\nGET /split?x=1 HTTP/1.1\r\nHost: a\r\nX-E:\r\nX-Tab:\tv\t\r\n\r\n");
    for (let cut = 1; cut < bytes.length; cut++) {
      await client.write(bytes.subarray(0, cut));
      await delay(1);
      await client.write(bytes.subarray(cut));
      assertEquals((await reader.next()).body, "GET /split?x=1", `split at ${cut}`);
    }
  });
});

Deno.test("ClientConnection.serve() never lets a pipelined request hide behind a refused head or a request body", async () => {
  const seen: string[] = [];
  const handler = (req: Request) => (seen.push(rawTargetOf(req)!), echo(req));
  const smuggled = get("/smuggled");
  const cases: Record<string, [string, number]> = {
    "Content-Length and Transfer-Encoding": ["Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", 400],
    "two different lengths": ["Content-Length: 4\r\nContent-Length: 40\r\n", 400],
    "a signed length": ["Content-Length: +4\r\n", 400],
    "space before the colon": ["Content-Length : 4\r\n", 400],
    "an obs-folded line": ["X: a\r\n b\r\n", 400],
    "a bare CR": ["X: a\rb\r\n", 400],
    "a bare LF": ["X: a\nContent-Length: 4\r\n", 400],
    "a NUL byte": ["X: a\0b\r\n", 400],
    "a vertical tab": ["Content-Length:\x0b4\r\n", 400],
    "two Host headers": ["Host: b\r\n", 400],
    "a chunked body": ["Transfer-Encoding: chunked\r\n", 200],
    "a gzip, chunked body": ["Transfer-Encoding: gzip, chunked\r\n", 200],
    "a length": ["Content-Length: 4\r\n", 200],
    "a length list": ["Content-Length: 4, 4\r\n", 200],
  };
  await withListener({ timeoutMs: 2_000, handler }, async (listener) => {
    for (const [name, [more, status]] of Object.entries(cases)) {
      seen.length = 0;
      // Read as a body, "4\r\nabcd\r\n0\r\n\r\n" is 4 bytes or one chunk: the smuggled request follows either way.
      const text =
        `POST /first HTTP/1.1\r\nHost: a\r\n${more}\r\n4\r\nabcd\r\n0\r\n\r\n${smuggled}${smuggled}`;
      const answers = await exchange(listener.addr.port, text);
      assertEquals(answers.map((a) => [a.status, a.headers.get("connection")]), [[status, "close"]], name);
      assert(!seen.includes("/smuggled"), `${name}: the app saw ${seen}`);
    }
    const refused = await exchange(listener.addr.port, `GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n${smuggled}`);
    assertEquals(refused.map((a) => a.status), [400]);
  });
});

Deno.test("ClientConnection.serve() enforces the head limits at their exact sizes, whatever the TCP pieces", async () => {
  await withListener({ timeoutMs: 2_000 }, async (listener) => {
    const answered = async (text: string) =>
      (await exchange(listener.addr.port, text, [1, 4095, 1, 4096, 3, 5000])).map((a) =>
        a.headers.get("x-echo") ?? a.status
      );
    const headOf = (size: number) => get("/limit", `X: ${"v".repeat(size - get("/limit").length - 5)}\r\n`);
    assertEquals(headOf(MAX_HEAD_BYTES).length, MAX_HEAD_BYTES);
    assertEquals(await answered(headOf(MAX_HEAD_BYTES)), ["GET /limit"]);
    assertEquals(await answered(headOf(MAX_HEAD_BYTES + 1)), [431]);
    assertEquals(await answered(`GET /${"l".repeat(8_200)} HTTP/1.1\r\nHost: a\r\n\r\n`), [414]);
    assertEquals(await answered(get("/many", "X: 1\r\n".repeat(100))), [431]);
    assertEquals(await answered("\r\n".repeat(20_000) + get("/after-blank-lines")), [
      "GET /after-blank-lines",
    ]);
  });
});

Deno.test("ClientConnection.serve() answers 414 to a request line longer than MAX_HEAD_BYTES, as to one of 8 KiB", async () => {
  await withListener({ timeoutMs: 2_000 }, async (listener) => {
    // RFC 9112 section 3: a target longer than the server parses is answered 414, however long it is; the head
    // limit (431) is for header lines. Unfinished or finished within the read buffer, the line is the same.
    for (const size of [MAX_HEAD_BYTES, MAX_HEAD_BYTES * 2]) {
      const text = `GET /${"l".repeat(size)} HTTP/1.1\r\nHost: a\r\n\r\n`;
      assertEquals(
        (await exchange(listener.addr.port, text, [4096, 8192])).map((a) => a.status),
        [414],
        `${size}`,
      );
    }
    assertEquals(
      (await exchange(listener.addr.port, get("/", `X: ${"v".repeat(MAX_HEAD_BYTES)}\r\n`))).map((a) =>
        a.status
      ),
      [431],
    );
  });
});

/** A body that gives each piece in turn after a timer (so it is never in memory), then `end()`s. */
function slowBody(pieces: string[], end = (c: ReadableStreamDefaultController) => c.close()) {
  let next = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      await delay(5);
      if (next < pieces.length) controller.enqueue(encodeLatin1(pieces[next++]));
      else end(controller);
    },
  }, { highWaterMark: 0 });
}

Deno.test("ClientConnection.serve() closes instead of answering the next request when a body fails midway", async () => {
  const fail = (controller: ReadableStreamDefaultController) =>
    controller.error(new Error("upstream failed"));
  for (const headers of [{}, { "content-length": "100" }] as Record<string, string>[]) {
    await withServed(
      { handler: () => new Response(slowBody(["part"], fail), { headers }) },
      async (client, reader) => {
        await writeInPieces(client, encodeLatin1(get("/fails") + get("/next")));
        const error = await reader.next().then(() => undefined, String);
        assert(error?.includes("ended within a response"), `the failed body looked complete: ${error}`);
      },
    );
  }
});

Deno.test("ClientConnection.serve() answers thousands of tiny pipelined requests from one write in order", async () => {
  await withServed({ quickAnswer }, async (client, reader) => {
    const count = 3_000;
    const target = (i: number) => i % 3 === 0 ? "/quick" : `/${i}`;
    const text = Array.from({ length: count }, (_, i) => get(target(i))).join("");
    const writing = writeInPieces(client, encodeLatin1(text));
    for (let i = 0; i < count; i++) {
      assertEquals((await reader.next()).body, i % 3 === 0 ? "quick" : `GET /${i}`);
    }
    await writing;
  });
});

Deno.test("ClientConnection.serve() never rejects, whatever the handler, onError or a body throws", async () => {
  const fails = () => {
    throw new Error("handler failed");
  };
  await withServed({ handler: fails, onError: fails }, async (client, reader) => {
    await writeInPieces(client, encodeLatin1(get("/") + get("/")));
    assertEquals(await reader.all(), []);
  });
  // A body that fails with a reason String() cannot convert: the catch in serve() throws while logging it.
  const body = () => new ReadableStream({ pull: (controller) => controller.error(Object.create(null)) });
  await withServed({ handler: () => new Response(body()) }, async (client, reader) => {
    await writeInPieces(client, encodeLatin1(get("/")));
    assertEquals(await reader.all(), []);
  });
});

Deno.test("ClientConnection.serve() does not end a chunked body early when the app's stream gives an empty chunk", async () => {
  const handler = (req: Request) =>
    rawTargetOf(req) === "/next" ? echo(req) : new Response(slowBody(["abc", "", "def"]));
  await withServed({ handler }, async (client, reader) => {
    await writeInPieces(client, encodeLatin1(get("/streamed") + get("/next")));
    // chunked() of an empty piece is "0\r\n\r\n", the last chunk: the body looks complete after "abc", and
    // "3\r\ndef\r\n0\r\n\r\n" comes where the answer to /next belongs.
    assertEquals((await reader.next()).body, "abcdef");
    assertEquals((await reader.next()).body, "GET /next");
  });
});

Deno.test("ClientConnection.serve() raises no unhandled rejection when a body of unknown length fails while its first piece is written", async () => {
  const rejections: unknown[] = [];
  const onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    rejections.push(event.reason);
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  try {
    let pulls = 0;
    const failed = Promise.withResolvers<void>();
    // Like followDownload() of a download of unknown length: a first piece above COLLECT_LIMIT, then the
    // download fails while the (slow) client has not taken that piece yet.
    const body = () =>
      new ReadableStream<Uint8Array>({
        type: "bytes",
        pull(controller) {
          if (pulls++ === 0) return controller.enqueue(new Uint8Array(32 * 1024 * 1024));
          controller.error(new Error("download failed"));
          failed.resolve();
        },
      });
    await withServed({ handler: () => new Response(body()) }, async (client) => {
      await client.write(encodeLatin1(get("/")));
      // The client reads nothing until the body has failed: 32 MiB do not fit in the sockets' buffers.
      await failed.promise;
      await readAll(client);
    });
    // flexo has no such listener: Deno ends the whole process at this rejection.
    assertEquals(rejections.map(String), []);
  } finally {
    globalThis.removeEventListener("unhandledrejection", onRejection);
  }
});
