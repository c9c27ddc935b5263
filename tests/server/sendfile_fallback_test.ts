/**
 * When sendfile falls back to streaming: clients that reset their connection or whose connection is already
 * closed never count against it, a fallback expires, and the search for a socket finds it wherever it is.
 */

import { FileSender } from "../../src/server/sendfile.ts";
import { MISSES_BEFORE_DISABLED, SENDFILE_RETRY_MS } from "../../src/server/socket_finder.ts";
import { LIBC_PATHS, openLibc } from "../../src/server/libc.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { fileSender as sender, pairs } from "../helpers/sockets.ts";

/** setsockopt(2), which flexo itself never needs: for SO_LINGER 0, which makes close() send a reset. */
function resetter(): { reset(fd: number): void; close(): void } {
  const path = LIBC_PATHS.find((candidate) => {
    try {
      Deno.statSync(candidate);
      return true;
    } catch {
      return false;
    }
  });
  assert(path !== undefined, "no libc.so.6");
  const lib = Deno.dlopen(path, {
    setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  });
  return {
    reset(fd) {
      // struct linger { int l_onoff = 1; int l_linger = 0; }; SOL_SOCKET = 1, SO_LINGER = 13.
      const linger = new Int32Array([1, 0]);
      assertEquals(lib.symbols.setsockopt(fd, 1, 13, new Uint8Array(linger.buffer), 8), 0, "SO_LINGER set");
    },
    close: () => lib.close(),
  };
}

/** A connection object whose addresses match no socket of this process, and that is still open. */
const STRANGER = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
  localAddr: { transport: "tcp", hostname: "127.0.0.1", port: 2 },
} as unknown as Deno.Conn;

Deno.test("findSocket(): clients that reset their connection never switch sendfile off", async () => {
  const net = pairs();
  const libc = resetter();
  const files = sender();
  // The client's socket is in this process too: the same search finds it (with a sender of its own, whose
  // hits do not reset the count of the one under test).
  const finder = sender();
  try {
    for (let i = 0; i < 2 * MISSES_BEFORE_DISABLED; i++) {
      const { server, client } = await net.connect();
      const clientSocket = finder.findSocket(client);
      assert(clientSocket !== undefined, "the client's socket is found");
      libc.reset(clientSocket.fd);
      client.close();
      // The reset has arrived once the server's read ends.
      await server.read(new Uint8Array(16)).catch(() => null);
      assertEquals(files.findSocket(server), undefined, "a reset connection has no socket to find");
      assert(!files.disabled, `sendfile still on after ${i + 1} resets`);
      server.close();
    }
    const { server, client } = await net.connect();
    assert(files.findSocket(server) !== undefined, "the next client's socket is found");
    assert(!files.disabled);
    server.close();
    client.close();
  } finally {
    libc.close();
    net.close();
  }
});

Deno.test("findSocket(): connections closed here before their answer never switch sendfile off", async () => {
  const net = pairs();
  const files = sender();
  try {
    for (let i = 0; i < 2 * MISSES_BEFORE_DISABLED; i++) {
      const { server, client } = await net.connect();
      server.close();
      assertEquals(files.findSocket(server), undefined);
      assert(!files.disabled, `sendfile still on after ${i + 1} closed connections`);
      client.close();
    }
  } finally {
    net.close();
  }
});

Deno.test("findSocket(): sendfile switched off by misses is on again after SENDFILE_RETRY_MS", async () => {
  const net = pairs();
  const { server, client } = await net.connect();
  try {
    const loaded = openLibc(LIBC_PATHS);
    assert(loaded.ok);
    const clock = new FakeTimers();
    const files = new FileSender(loaded.libc, { now: clock.now });
    for (let i = 0; i < MISSES_BEFORE_DISABLED; i++) assertEquals(files.findSocket(STRANGER), undefined);
    assert(files.disabled, "off after the misses in a row");
    clock.advance(SENDFILE_RETRY_MS - 1);
    assert(files.disabled, "still off just before the retry");
    clock.advance(1);
    assert(!files.disabled, "on again");
    assert(files.findSocket(server) !== undefined);
    assertEquals(files.findSocket(STRANGER), undefined);
    assert(!files.disabled, "one miss after the retry is not enough to switch it off again");
  } finally {
    server.close();
    client.close();
    net.close();
  }
});

Deno.test("findSocket() finds a socket far below the last one found (the search wraps around)", async () => {
  const net = pairs();
  const first = await net.connect();
  const more = [];
  try {
    for (let i = 0; i < 80; i++) more.push(await net.connect());
    const files = sender();
    const last = files.findSocket(more.at(-1)!.server);
    const low = files.findSocket(first.server);
    assert(last !== undefined && low !== undefined, "both found");
    assert(low.fd < last.fd - 64, `${low.fd} is below where the search starts (${last.fd} - 64)`);
  } finally {
    for (const { server, client } of [first, ...more]) {
      server.close();
      client.close();
    }
    net.close();
  }
});
