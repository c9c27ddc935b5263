/**
 * Sending files with sendfile(2) to real connections on 127.0.0.1: the bytes, ranges, refusals before the first
 * byte, clients that stall or leave, the connection kept for what follows, and never writing to a connection that
 * took over a closed one's number.
 */

import { join } from "node:path";
import type { SendOutcome } from "../../src/server/sendfile.ts";
import { type ClientSocket, MISSES_BEFORE_DISABLED } from "../../src/server/socket_finder.ts";
import { settledNow, waitFor } from "../helpers/wait.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { withinMs } from "../helpers/proxy_server.ts";
import { fileSender as sender, pairs, readAll, withConnection } from "../helpers/sockets.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { concat } from "../../src/byte_reader.ts";

async function withFile(bytes: Uint8Array, fn: (path: string) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const path = join(dir, "file.pkg.tar.zst");
    await Deno.writeFile(path, bytes);
    await fn(path);
  });
}

const HEAD = new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");

Deno.test("findSocket() finds the descriptor of each of two connections from the same client", async () => {
  const net = pairs();
  const one = await net.connect();
  const two = await net.connect();
  try {
    const files = sender();
    const a = files.findSocket(one.server);
    const b = files.findSocket(two.server);
    assert(a !== undefined && b !== undefined, "both sockets found");
    assert(a.fd !== b.fd && a.cookie !== b.cookie, `${a.fd}/${a.cookie} vs ${b.fd}/${b.cookie}`);
    assertEquals(files.findSocket(one.server), a, "the same answer again");
  } finally {
    for (const conn of [one.server, one.client, two.server, two.client]) conn.close();
    net.close();
  }
});

Deno.test("send() writes the head and the whole file, and leaves the connection open for what follows", async () => {
  const bytes = randomBytes(8 * 1024 * 1024 + 123);
  const after = new TextEncoder().encode("HTTP/1.1 204 No Content\r\n\r\n");
  await withFile(bytes, async (path) => {
    await withConnection(async ({ server, client }) => {
      const files = sender();
      const socket = files.findSocket(server)!;
      const received = readAll(client);
      const result = await files.send(socket, HEAD, {
        range: { path, start: 0, length: bytes.length, size: bytes.length },
      });
      assertEquals(result, { outcome: "sent" });
      assertEquals(files.active, 0);
      // The next response goes out on the same connection, after the file.
      await server.write(after);
      server.close();
      assertEquals(
        await withinMs(received, 10_000, "the client never saw the end"),
        concat([HEAD, bytes, after]),
      );
    });
  });
});

Deno.test("send() sends one range of the file from its offset", async () => {
  const bytes = randomBytes(3 * 1024 * 1024);
  await withFile(bytes, async (path) => {
    await withConnection(async ({ server, client }) => {
      const files = sender();
      const received = readAll(client);
      const range = { path, start: 1_000_001, length: 1_500_000, size: bytes.length };
      assertEquals(await files.send(files.findSocket(server)!, HEAD, { range }), { outcome: "sent" });
      server.close();
      assertEquals(await received, concat([HEAD, bytes.subarray(1_000_001, 2_500_001)]));
    });
  });
});

Deno.test("send() writes nothing when the file is missing or has another size than the response says", async () => {
  const bytes = randomBytes(2 * 1024 * 1024);
  await withFile(bytes, async (path) => {
    await withConnection(async ({ server, client }) => {
      const files = sender();
      const socket = files.findSocket(server)!;
      const changed = await files.send(socket, HEAD, {
        range: { path, start: 0, length: bytes.length + 1, size: bytes.length + 1 },
      });
      assertEquals(changed.outcome, "not_started");
      const missing = await files.send(socket, HEAD, {
        range: { path: path + ".gone", start: 0, length: 10, size: 10 },
      });
      assertEquals(missing.outcome, "not_started");
      server.close();
      assertEquals((await readAll(client)).length, 0, "the client received nothing");
    });
  });
});

Deno.test("send() never writes to a connection that got the descriptor number of a closed one", async () => {
  const bytes = randomBytes(2 * 1024 * 1024);
  await withFile(bytes, async (path) => {
    const net = pairs();
    const first = await net.connect();
    const files = sender();
    const old: ClientSocket = files.findSocket(first.server)!;
    first.server.close();
    first.client.close();
    const second = await net.connect();
    try {
      const now = files.findSocket(second.server)!;
      assert(now.cookie !== old.cookie, "every socket has its own cookie");
      // The old connection's number, now another socket's (the kernel hands out the lowest free number, so this
      // is what happens when a client goes away and another connects; here it is made certain).
      const reused: ClientSocket = { conn: second.server, fd: now.fd, cookie: old.cookie };
      const result = await files.send(reused, HEAD, {
        range: { path, start: 0, length: bytes.length, size: bytes.length },
      });
      assertEquals(result.outcome, "not_started");
      second.server.close();
      assertEquals((await readAll(second.client)).length, 0, "the new client received nothing");
    } finally {
      second.client.close();
      net.close();
    }
  });
});

Deno.test("send() waits for a full client through the connection's write, and fails when that write fails", async () => {
  const bytes = randomBytes(32 * 1024 * 1024);
  await withFile(bytes, async (path) => {
    await withConnection(async ({ server, client }) => {
      const files = sender();
      let waits = 0;
      // What the connection layer does to a client that takes nothing for its timeout: it closes the connection,
      // which ends the write that waits for the client.
      const write = (piece: Uint8Array) => {
        waits++;
        const written = server.write(piece);
        server.close();
        return written;
      };
      const result = await withinMs(
        files.send(files.findSocket(server)!, HEAD, {
          range: { path, start: 0, length: bytes.length, size: bytes.length },
          write,
        }),
        10_000,
        "send() did not give up",
      );
      assertEquals(result.outcome, "failed");
      assertEquals(waits, 1, "the client read nothing, so the first wait never ended");
      const received = await readAll(client);
      assert(received.length < HEAD.length + bytes.length, "the client sees a cut-short response");
    });
  });
});

Deno.test("send() goes on with sendfile after each wait for a slow client", async () => {
  const bytes = randomBytes(16 * 1024 * 1024);
  await withFile(bytes, async (path) => {
    await withConnection(async ({ server, client }) => {
      const files = sender();
      let waits = 0;
      const write = (piece: Uint8Array) => {
        waits++;
        return server.write(piece);
      };
      const sending = files.send(files.findSocket(server)!, HEAD, {
        range: { path, start: 0, length: bytes.length, size: bytes.length },
        write,
      });
      // A client that reads in small bites with pauses fills the socket again and again.
      const parts: Uint8Array[] = [];
      const buffer = new Uint8Array(256 * 1024);
      let total = 0;
      while (total < HEAD.length + bytes.length) {
        const n = await client.read(buffer);
        if (n === null) break;
        parts.push(buffer.slice(0, n));
        total += n;
        if (parts.length % 16 === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      }
      assertEquals(await sending, { outcome: "sent" });
      assert(waits > 0, "the socket was full at least once");
      assertEquals(concat(parts), concat([HEAD, bytes]));
    });
  });
});

Deno.test("send() reports a client that goes away in the middle as failed, without throwing", async () => {
  const bytes = randomBytes(32 * 1024 * 1024);
  await withFile(bytes, async (path) => {
    await withConnection(async ({ server, client }) => {
      const files = sender();
      const sending = files.send(files.findSocket(server)!, HEAD, {
        range: { path, start: 0, length: bytes.length, size: bytes.length },
      });
      const buffer = new Uint8Array(64 * 1024);
      await client.read(buffer);
      client.close();
      const result = await withinMs(sending, 10_000, "send() never noticed");
      assertEquals(result.outcome, "failed");
      assertEquals(files.active, 0);
    });
  });
});

Deno.test("active counts the sends running", async () => {
  const bytes = randomBytes(16 * 1024 * 1024);
  await withFile(bytes, async (path) => {
    await withConnection(async ({ server, client }) => {
      const files = sender();
      assertEquals(files.active, 0);
      const sending = files.send(files.findSocket(server)!, HEAD, {
        range: { path, start: 0, length: bytes.length, size: bytes.length },
      });
      assertEquals(files.active, 1);
      const received = readAll(client);
      assertEquals((await sending).outcome, "sent");
      assertEquals(files.active, 0);
      server.close();
      assertEquals((await received).length, HEAD.length + bytes.length);
    });
  });
});

Deno.test("findSocket() gives up for good after MISSES_BEFORE_DISABLED connections in a row are not found", async () => {
  await withConnection(({ server }) => {
    const files = sender();
    // A connection object whose addresses match no socket of this process.
    const stranger = {
      remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
      localAddr: { transport: "tcp", hostname: "127.0.0.1", port: 2 },
    } as unknown as Deno.Conn;
    for (let i = 1; i < MISSES_BEFORE_DISABLED; i++) {
      assertEquals(files.findSocket(stranger), undefined);
      assert(!files.disabled, `still on after ${i} misses`);
    }
    assert(files.findSocket(server) !== undefined, "a hit resets the count");
    for (let i = 0; i < MISSES_BEFORE_DISABLED; i++) files.findSocket(stranger);
    assert(files.disabled, "off after the misses in a row");
    return Promise.resolve();
  });
});

/** A file that grows on command, as a download writes it, for send() to follow. */
function growingFile(path: string) {
  let released = 0;
  let state: "running" | "complete" | { failed: string } = "running";
  let wake = Promise.withResolvers<void>();
  const notify = () => {
    const old = wake;
    wake = Promise.withResolvers<void>();
    old.resolve();
  };
  let counted = 0;
  return {
    growing: {
      alternatives: [],
      releasable: () => released,
      changed: () => wake.promise,
      outcome: () => state,
      onBytes: (n: number) => counted += n,
    },
    /** Writes `bytes` at the end of the file; the download releases them, all but `holdBack` of the file. */
    async append(bytes: Uint8Array, options: { holdBack?: number } = {}) {
      await Deno.writeFile(path, bytes, { append: true });
      released = (await Deno.stat(path)).size - (options.holdBack ?? 0);
      notify();
    },
    /** Releases every byte on disk and ends the download. */
    async end(outcome: "complete" | { failed: string }) {
      if (outcome === "complete") released = (await Deno.stat(path)).size;
      state = outcome;
      notify();
    },
    counted: () => counted,
  };
}

/**
 * Starts send() of a file that `file` makes grow, `bytes.length` long once complete, to a client reading all it
 * gets; runs `fn` with both promises while the connection is open.
 */
async function withGrowingSend(
  bytes: Uint8Array,
  fn: (
    file: ReturnType<typeof growingFile>,
    sending: Promise<SendOutcome>,
    received: Promise<Uint8Array>,
  ) => Promise<void>,
): Promise<void> {
  await withTempDir(async (dir) => {
    const path = join(dir, "partial");
    await Deno.writeFile(path, new Uint8Array(0));
    const file = growingFile(path);
    await withConnection(async ({ server, client }) => {
      const files = sender();
      // The connection stays open after a whole send: it is closed here so that the client sees the end.
      const sending = files.send(files.findSocket(server)!, HEAD, {
        range: { path, start: 0, length: bytes.length, size: bytes.length, growing: file.growing },
      }).finally(() => server.close());
      await fn(file, sending, readAll(client));
    });
  });
}

Deno.test("send() follows a file as a download writes it, and sends only the bytes the download releases", async () => {
  const bytes = randomBytes(5 * 1024 * 1024 + 11);
  await withGrowingSend(bytes, async (file, sending, received) => {
    for (let offset = 0; offset < bytes.length; offset += 1024 * 1024) {
      // As a download does: everything on disk but the file's last byte until it is verified.
      await file.append(bytes.subarray(offset, Math.min(bytes.length, offset + 1024 * 1024)), {
        holdBack: 1,
      });
    }
    // The sender goes on by itself: every released byte goes out, and the held-back one does not.
    await waitFor("every released byte to go out", () => file.counted() >= bytes.length - 1);
    assertEquals(file.counted(), bytes.length - 1, "every byte on disk but the last, before completion");
    await file.end("complete");
    assertEquals(await withinMs(sending, 10_000, "send() did not finish"), { outcome: "sent" });
    assertEquals(await received, concat([HEAD, bytes]));
    assertEquals(file.counted(), bytes.length);
  });
});

Deno.test("send() of a download that fails after writing everything leaves the client one byte short", async () => {
  const bytes = randomBytes(2 * 1024 * 1024);
  await withGrowingSend(bytes, async (file, sending, received) => {
    await file.append(bytes, { holdBack: 1 });
    await waitFor("every released byte to go out", () => file.counted() >= bytes.length - 1);
    await file.end({ failed: "the checksum does not match the repository database" });
    assertEquals(await withinMs(sending, 10_000, "send() did not finish"), {
      outcome: "failed",
      reason: "the checksum does not match the repository database",
      bytes: bytes.length - 1,
    });
    assertEquals(await received, concat([HEAD, bytes.subarray(0, bytes.length - 1)]));
  });
});

Deno.test("send() holds a download's head until its first bytes, and sends both in one go", async () => {
  const bytes = randomBytes(32 * 1024);
  await withTempDir(async (dir) => {
    const path = join(dir, "partial");
    await Deno.writeFile(path, new Uint8Array(0));
    const file = growingFile(path);
    let waits = 0;
    const growing = { ...file.growing, changed: () => (waits++, file.growing.changed()) };
    await withConnection(async ({ server, client }) => {
      const files = sender();
      const sending = files.send(files.findSocket(server)!, HEAD, {
        range: { path, start: 0, length: bytes.length, size: bytes.length, growing },
      });
      await waitFor("send() to wait for the download", () => waits > 0);
      const buffer = new Uint8Array(HEAD.length + bytes.length);
      const first = client.read(buffer);
      assert(!await settledNow(first), "nothing is sent while the download has no bytes");
      await file.append(bytes);
      const read = await withinMs(first, 10_000, "no bytes came");
      assert(read !== null && read > HEAD.length, `the head came with body bytes (${read} bytes)`);
      assertEquals(buffer.subarray(0, read), concat([HEAD, bytes]).subarray(0, read));
      await file.end("complete");
      assertEquals(await withinMs(sending, 10_000, "send() did not finish"), { outcome: "sent" });
    });
  });
});

Deno.test("send() of a download that fails before its first byte sends the head alone and reports the failure", async () => {
  await withGrowingSend(randomBytes(1024), async (file, sending, received) => {
    await file.end({ failed: "the mirror went away" });
    assertEquals(await withinMs(sending, 10_000, "send() did not finish"), {
      outcome: "failed",
      reason: "the mirror went away",
      bytes: 0,
    });
    assertEquals(await received, HEAD);
  });
});

Deno.test("Deno ignores SIGPIPE, so sendfile to a client that went away is an error code, never a signal", () => {
  const status = Deno.readTextFileSync("/proc/self/status");
  const ignored = BigInt("0x" + /^SigIgn:\s+([0-9a-f]+)$/m.exec(status)![1]);
  assert(((ignored >> 12n) & 1n) === 1n, "SIGPIPE (13) is not ignored: see the comment in sendfile.ts");
});
