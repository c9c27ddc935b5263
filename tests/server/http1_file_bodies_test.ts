/** File bodies of one connection: sendfile, the copy through JavaScript, and the cases left to the caller. */

import { join } from "node:path";
import { FileBodies } from "../../src/server/http1_file_bodies.ts";
import { FileResponse } from "../../src/http/file_body.ts";
import type { ResponseSent } from "../../src/http/client_request.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { fileSender, readAll, withConnection } from "../helpers/sockets.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { writeAll } from "../../src/write_all.ts";

const decoder = new TextDecoder();

/** A FileBodies for the server end of a connection, writing as the connection layer does. */
function bodiesFor(server: Deno.Conn, options: { sendfile: boolean }): FileBodies {
  const write = async (bytes: Uint8Array) => {
    await writeAll(server, bytes);
    return true;
  };
  return new FileBodies(server, {
    sender: options.sendfile ? fileSender() : undefined,
    write,
    writeSome: (bytes) => server.write(bytes),
  });
}

/** A 200 answer whose body is marked as all of the file at `path`; `onCancel` hears when its body is let go. */
function marked(
  path: string,
  size: number,
  options: { status?: number; onCancel?: () => void } = {},
): Response {
  const body = new ReadableStream<Uint8Array>({ cancel: options.onCancel });
  const init = { status: options.status ?? 200, headers: { "content-length": String(size) } };
  return new FileResponse(body, init, { path, start: 0, length: size, size });
}

/** The client's bytes as the head (text) and the body after it. */
function split(received: Uint8Array): { head: string; body: Uint8Array } {
  const text = decoder.decode(received.subarray(0, 4096));
  const end = text.indexOf("\r\n\r\n") + 4;
  return { head: text.slice(0, end), body: received.subarray(end) };
}

for (const sendfile of [true, false]) {
  const how = sendfile ? "send()" : "copy()";
  Deno.test(`FileBodies.${how} writes the head and the marked file, and the app's body is let go`, async () => {
    await withTempDir(async (dir) => {
      const bytes = randomBytes(700_000);
      const path = join(dir, "f.pkg.tar.zst");
      await Deno.writeFile(path, bytes);
      await withConnection(async ({ server, client }) => {
        const files = bodiesFor(server, { sendfile });
        let cancelled = false;
        const response = marked(path, bytes.length, { onCancel: () => void (cancelled = true) });
        const received = readAll(client);
        const framing = { length: bytes.length, close: false };
        const sent = sendfile ? await files.send(response, framing) : await files.copy(response, framing);
        assertEquals(sent, { whole: true, bytes: bytes.length });
        await new Promise((resolve) => setTimeout(resolve, 0));
        assert(cancelled, "the app's body (its open file) was cancelled");
        server.close();
        const { head, body } = split(await received);
        assert(
          head.startsWith("HTTP/1.1 200 OK\r\n") && head.includes(`content-length: ${bytes.length}\r\n`),
          head,
        );
        assertEquals(body, bytes);
      });
    });
  });
}

Deno.test("FileBodies.send() and copy() leave unmarked bodies, other statuses and other lengths to the caller", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "f");
    await Deno.writeFile(path, randomBytes(1000));
    await withConnection(async ({ server, client }) => {
      const files = bodiesFor(server, { sendfile: true });
      const framing = { length: 1000, close: false };
      const unmarked = new Response(new Uint8Array(1000), { headers: { "content-length": "1000" } });
      for (const files_ of [files, bodiesFor(server, { sendfile: false })]) {
        assertEquals(await files_.send(unmarked, framing), undefined);
        assertEquals(await files_.copy(unmarked, framing), undefined);
        assertEquals(await files_.send(marked(path, 1000, { status: 500 }), framing), undefined);
        assertEquals(await files_.copy(marked(path, 1000), { length: 999, close: false }), undefined);
      }
      assertEquals(await bodiesFor(server, { sendfile: false }).send(marked(path, 1000), framing), undefined);
      server.close();
      assertEquals((await readAll(client)).length, 0, "nothing was written");
    });
  });
});

Deno.test("FileBodies.sendQuick() tells the answer how it went: sent, or not started for a missing file", async () => {
  await withTempDir(async (dir) => {
    const bytes = randomBytes(200_000);
    const path = join(dir, "f");
    await Deno.writeFile(path, bytes);
    await withConnection(async ({ server, client }) => {
      const files = bodiesFor(server, { sendfile: true });
      const outcomes: string[] = [];
      const head = new TextEncoder().encode(`HTTP/1.1 200 OK\r\ncontent-length: ${bytes.length}\r\n\r\n`);
      const answer = (file: string) => ({
        head,
        file: { path: file, start: 0, length: bytes.length, size: bytes.length },
        done: (sent: ResponseSent | undefined) =>
          void outcomes.push(sent === undefined ? "not_started" : sent.whole ? "sent" : "failed"),
      });
      const received = readAll(client);
      assertEquals(await files.sendQuick(answer(join(dir, "gone"))), undefined);
      assertEquals(await files.sendQuick(answer(path)), { whole: true, bytes: bytes.length });
      assertEquals(outcomes, ["not_started", "sent"]);
      assert(files.canSend());
      server.close();
      assertEquals(split(await received).body, bytes);
    });
  });
});

Deno.test("FileBodies.socketToFind is true until findSocket() has looked the socket up, and never without sendfile", async () => {
  await withConnection(({ server }) => {
    const files = bodiesFor(server, { sendfile: true });
    assert(files.socketToFind, "a new connection's socket is still to find");
    files.findSocket();
    assertEquals(files.socketToFind, false, "found once: no timer for it at the connection's next miss");
    assertEquals(bodiesFor(server, { sendfile: false }).socketToFind, false);
    return Promise.resolve();
  });
});
