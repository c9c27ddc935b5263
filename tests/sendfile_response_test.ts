/**
 * Which responses go out with sendfile, the head written for them, and the fallback to Deno.
 */

import { join } from "node:path";
import { readFileRange } from "../src/live_reader.ts";
import { fileRangeOf, markFileResponse, SENDFILE_MIN_BYTES } from "../src/sendfile.ts";
import { responseHead, sendBelowServer, shouldSendfile } from "../src/sendfile_response.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { fileSender as sender, withConnection } from "./helpers/sockets.ts";
import { withTempDir } from "./helpers/temp_dir.ts";

function marked(length: number, init: ResponseInit = {}): Response {
  const response = new Response(new ReadableStream<Uint8Array>(), {
    ...init,
    headers: { "content-length": String(length), ...init.headers },
  });
  return markFileResponse(response, { path: "/x", start: 0, length, size: length });
}

const get = (init: RequestInit = {}) =>
  new Request("http://127.0.0.1:7878/core/os/x86_64/a.pkg.tar.zst", {
    headers: { host: "127.0.0.1" },
    ...init,
  });

Deno.test("responseHead() writes the status, the response's headers, the length, connection: close and a date", () => {
  const response = new Response(null, {
    status: 206,
    headers: {
      "ETag": '"1-2"',
      "Connection": "keep-alive",
      "Content-Length": "99",
      "Transfer-Encoding": "x",
    },
  });
  const head = new TextDecoder().decode(
    responseHead(response, { length: 10, now: new Date("2026-11-24T01:00:00Z") }),
  );
  assertEquals(
    head,
    'HTTP/1.1 206 Partial Content\r\netag: "1-2"\r\ncontent-length: 10\r\nconnection: close\r\n' +
      "date: Tue, 24 Nov 2026 01:00:00 GMT\r\n\r\n",
  );
  const dated = new Response(null, { headers: { date: "Mon, 23 Nov 2026 00:00:00 GMT" } });
  const text = new TextDecoder().decode(responseHead(dated, { length: 0 }));
  assert(text.startsWith("HTTP/1.1 200 OK\r\n") && text.split("date:").length === 2, text);
});

Deno.test("markFileResponse() marks one response; fileRangeOf() finds the mark on it alone", () => {
  const response = markFileResponse(new Response("x"), { path: "/p", start: 1, length: 2, size: 3 });
  assertEquals(fileRangeOf(response), { path: "/p", start: 1, length: 2, size: 3 });
  assertEquals(fileRangeOf(response.clone()), undefined);
  assertEquals(fileRangeOf(new Response("text")), undefined);
});

Deno.test("shouldSendfile() takes large marked GET answers over HTTP/1.x while the sender has room", () => {
  const files = sender();
  assert(shouldSendfile(get(), marked(SENDFILE_MIN_BYTES), files));
  assert(shouldSendfile(get(), marked(SENDFILE_MIN_BYTES, { status: 206 }), files));
  assert(!shouldSendfile(get(), marked(SENDFILE_MIN_BYTES - 1), files), "small files keep the connection");
  assert(!shouldSendfile(get({ method: "HEAD" }), marked(SENDFILE_MIN_BYTES), files), "HEAD has no body");
  assert(!shouldSendfile(get(), marked(SENDFILE_MIN_BYTES, { status: 500 }), files));
  const noHost = new Request("http://127.0.0.1:7878/x");
  assert(!shouldSendfile(noHost, marked(SENDFILE_MIN_BYTES), files), "HTTP/2 requests carry no Host");
  const unmarked = new Response(new ReadableStream(), {
    headers: { "content-length": String(SENDFILE_MIN_BYTES) },
  });
  assert(!shouldSendfile(get(), unmarked, files), "only marked file bodies");
  const bytes = new Response(new Uint8Array(SENDFILE_MIN_BYTES));
  assert(!shouldSendfile(get(), bytes, files));
});

Deno.test("shouldSendfile() says no while the sender is full", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "f");
    await Deno.writeFile(path, new Uint8Array(SENDFILE_MIN_BYTES * 16));
    const files = sender({ maxActive: 1 });
    await withConnection(async ({ server }) => {
      const range = { path, start: 0, length: SENDFILE_MIN_BYTES * 16, size: SENDFILE_MIN_BYTES * 16 };
      // The client reads nothing, so the send waits on a full socket.
      const sending = files.send(files.findSocket(server)!, new Uint8Array(0), { range, stallMs: 200 });
      assert(!shouldSendfile(get(), marked(SENDFILE_MIN_BYTES), files));
      assertEquals((await sending).outcome, "failed");
      assert(shouldSendfile(get(), marked(SENDFILE_MIN_BYTES), files));
    });
  });
});

Deno.test("sendBelowServer() returns the app's response untouched when the socket is unknown or the file changed", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "f");
    await Deno.writeFile(path, new Uint8Array(10));
    const files = sender();
    const response = markFileResponse(
      new Response(await readFileRange(path, { start: 0, end: 9, size: 10 })),
      {
        path,
        start: 0,
        length: 10,
        size: 10,
      },
    );
    assertEquals(
      await sendBelowServer(response, { sender: files, socket: () => undefined, stallMs: 1_000 }),
      response,
    );
    await withConnection(async ({ server }) => {
      // Replaced as the cache replaces files: a new file renamed over the old one.
      await Deno.writeFile(path + ".new", new Uint8Array(11));
      await Deno.rename(path + ".new", path);
      const socket = files.findSocket(server);
      const answer = await sendBelowServer(response, { sender: files, socket: () => socket, stallMs: 1_000 });
      assertEquals(answer, response, "the file has another size now: Deno sends the app's response");
      assertEquals((await answer.arrayBuffer()).byteLength, 10, "from the handle the app opened");
    });
  });
});
