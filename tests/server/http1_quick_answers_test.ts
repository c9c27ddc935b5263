/**
 * flexo's own HTTP/1.1 connection layer: quick answers (bytes, and files with sendfile) and file responses sent
 * whole with sendfile.
 */

import { join } from "node:path";
import type { QuickAnswer } from "../../src/server/quick_answer.ts";
import { readFileRange } from "../../src/download/live_reader.ts";
import { FileResponse } from "../../src/http/file_body.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { fileSender } from "../helpers/sockets.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { assertEnds, decoder, echo, encoder, get, withServed } from "../helpers/http1_client.ts";

Deno.test("ClientConnection.serve() writes quickAnswer's bytes as they are, and asks only for requests it may answer so", async () => {
  const quick = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-quick: 1\r\n\r\nquick";
  const asked: [string, boolean][] = [];
  const quickAnswer = (head: { target: string }, options: { files: boolean }) => {
    asked.push([head.target, options.files]);
    return head.target === "/quick" ? encoder.encode(quick) : undefined;
  };
  let calls = 0;
  const handler = (req: Request) => (calls++, echo(req));
  await withServed({ quickAnswer, handler }, async ({ client }) => {
    await client.send(get("/quick") + get("/other") + get("/quick", "Connection: close\r\n"));
    const first = await client.response();
    assertEquals(`${first.head}\r\n\r\n${decoder.decode(first.body)}`, quick);
    assertEquals(decoder.decode((await client.response()).body), "GET /other");
    const last = await client.response();
    assertEquals([decoder.decode(last.body), last.headers.get("connection")], ["GET /quick", "close"]);
    await assertEnds(client);
    assertEquals(asked, [["/quick", false], ["/other", false]], "no sender: no files; close: not asked");
    assertEquals(calls, 2);
  });
});

Deno.test("ClientConnection.serve() answers through the handler when quickAnswer throws", async () => {
  const quickAnswer = () => {
    throw new Error("a bug in the shortcut");
  };
  await withServed({ quickAnswer }, async ({ client }) => {
    await client.send(get("/x") + get("/y"));
    assertEquals(decoder.decode((await client.response()).body), "GET /x");
    assertEquals(decoder.decode((await client.response()).body), "GET /y", "and the connection goes on");
  });
});

Deno.test("ClientConnection.serve() sends a quick file answer with sendfile, or answers through the handler when it cannot", async () => {
  const bytes = randomBytes(300 * 1024 + 5);
  const size = bytes.length;
  await withTempDir(async (dir) => {
    const path = join(dir, "file.pkg.tar.zst");
    await Deno.writeFile(path, bytes);
    const outcomes: string[] = [];
    const offered: boolean[] = [];
    const quickAnswer = (head: { target: string }, options: { files: boolean }): QuickAnswer | undefined => {
      offered.push(options.files);
      if (head.target === "/after") return undefined;
      return {
        head: encoder.encode(`HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\nx-quick: file\r\n\r\n`),
        file: { path: head.target === "/file" ? path : join(dir, "missing"), start: 0, length: size, size },
        done: (sent) => outcomes.push(sent === undefined ? "not_started" : sent.whole ? "sent" : "failed"),
      };
    };
    const sender = fileSender();
    await withServed({ quickAnswer, sender }, async ({ client }) => {
      await client.send(get("/file"));
      const reply = await client.response();
      assertEquals(reply.headers.get("x-quick"), "file");
      assertEquals(reply.body, bytes);
      assertEquals([outcomes, sender.sent], [["sent"], 1]);
      await client.send(get("/missing"));
      const fallback = await client.response();
      assert(!fallback.headers.has("x-quick"), fallback.head);
      assertEquals(decoder.decode(fallback.body), "GET /missing");
      assertEquals(outcomes, ["sent", "not_started"]);
      await client.send(get("/after"));
      assertEquals(decoder.decode((await client.response()).body), "GET /after");
      assertEquals(offered, [true, true, true]);
    });
  });
});

Deno.test("ClientConnection.serve() sends a marked file response whole with sendfile and keeps the connection", async () => {
  const bytes = randomBytes(1024 * 1024 + 3);
  await withTempDir(async (dir) => {
    const path = join(dir, "large.pkg.tar.zst");
    await Deno.writeFile(path, bytes);
    const range = { path, start: 0, length: bytes.length, size: bytes.length };
    const handler = async (req: Request) => {
      if (!req.url.endsWith("/large")) return echo(req);
      const body = await readFileRange(path, { start: 0, end: bytes.length - 1, size: bytes.length });
      const headers = { "content-length": String(bytes.length), "x-kind": "package" };
      return new FileResponse(body, { headers }, range);
    };
    const sender = fileSender();
    await withServed({ handler, sender }, async ({ client }) => {
      await client.send(get("/large"));
      const reply = await client.response();
      assert(reply.head.startsWith("HTTP/1.1 200 OK\r\n") && reply.headers.get("x-kind") === "package");
      assertEquals(reply.body, bytes);
      assertEquals(sender.sent, 1, "sent with sendfile");
      await client.send(get("/after"));
      assertEquals(decoder.decode((await client.response()).body), "GET /after");
    });
  });
});

Deno.test("ClientConnection.serve() sends a later quick answer's file with sendfile, or writes its response when it cannot", async () => {
  const bytes = randomBytes(200 * 1024 + 7);
  const size = bytes.length;
  await withTempDir(async (dir) => {
    const path = join(dir, "file.pkg.tar.zst");
    await Deno.writeFile(path, bytes);
    const told: [string, number, boolean][] = [];
    let handled = 0;
    const quickAnswer = (head: { target: string }): QuickAnswer | undefined => ({
      later: Promise.resolve({
        head: encoder.encode(`HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\nx-quick: later\r\n\r\n`),
        file: { path: head.target === "/file" ? path : join(dir, "missing"), start: 0, length: size, size },
        response: () => new Response("from the response", { headers: { "x-quick": "response" } }),
        done: (sent) => told.push([head.target, sent.bytes, sent.whole]),
      }),
    });
    const handler = (req: Request) => (handled++, echo(req));
    const sender = fileSender();
    await withServed({ quickAnswer, sender, handler }, async ({ client }) => {
      await client.send(get("/file"));
      const reply = await client.response();
      assertEquals([reply.headers.get("x-quick"), reply.body], ["later", bytes]);
      assertEquals(sender.sent, 1, "sent with sendfile");
      await client.send(get("/missing"));
      const fallback = await client.response();
      assertEquals([fallback.headers.get("x-quick"), decoder.decode(fallback.body)], [
        "response",
        "from the response",
      ]);
      assertEquals(told, [["/file", size, true], ["/missing", 17, true]]);
      assertEquals(handled, 0, "the handler is never asked");
    });
    // A connection without sendfile is not offered files, but a later answer given anyway writes its response.
    told.length = 0;
    await withServed({ quickAnswer }, async ({ client }) => {
      await client.send(get("/file"));
      assertEquals(decoder.decode((await client.response()).body), "from the response");
      assertEquals(told, [["/file", 17, true]]);
    });
  });
});
