/**
 * The system calls and buffers of one large send, with a fake client socket (the libc's `send`, `sendfile`,
 * `getsockopt` and `errno` replaced; the file, `pread` and `mincore` real): a socket that takes a fixed amount
 * and then is full until the client reads. What each wake of a full socket costs is what separates flexo's CPU
 * per GiB from nginx's (BENCHMARKS.md, "Session six").
 */

import { join } from "node:path";
import { FileSender, WAIT_WRITE_BYTES } from "../../src/server/sendfile.ts";
import { LIBC_PATHS, type LibcSymbols, LINUX, openLibc } from "../../src/server/libc.ts";
import {
  type FileReads,
  RecentResidency,
  type Residency,
  RESIDENCY_TRUST_MS,
  RESIDENCY_WINDOW_BYTES,
  ThreadReads,
} from "../../src/server/page_cache.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const MiB = 1024 * 1024;
const HEAD = new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
const COOKIE = 77n;

/** The C library for reads on a thread. */
function threadLibc(): LibcSymbols {
  const loaded = openLibc(LIBC_PATHS);
  if (!loaded.ok) throw new Error(loaded.reason);
  return loaded.libc;
}

/** What the fake socket saw. */
interface Seen {
  sendfiles: number;
  /** sendfile calls that found the socket full (EAGAIN). */
  full: number;
  sendfileBytes: number;
  /** The pieces written through the connection's write (the waits). */
  pieces: Uint8Array[];
  /** The next file offset expected (sendfile and the waits must go on where the last left off). */
  next: number;
  /** lseek calls. */
  seeks: number;
}

/**
 * A sender on a libc whose socket takes `room` bytes after each write through the connection (the client
 * read), then is full; `Infinity`: never full.
 */
function fakeSocketSender(
  room: number,
  options: { residency?: Residency; reads?: () => FileReads; now?: () => number } = {},
) {
  const loaded = openLibc(LIBC_PATHS);
  if (!loaded.ok) throw new Error(loaded.reason);
  const real = loaded.libc;
  const seen: Seen = { sendfiles: 0, full: 0, sendfileBytes: 0, pieces: [], next: 0, seeks: 0 };
  let free = room;
  let lastErrno = 0;
  const fake: Partial<LibcSymbols> = {
    send: ((_fd: number, _bytes: Uint8Array, length: bigint) => {
      // A head: a send of the file from its start follows.
      seen.next = 0;
      const took = Math.min(Number(length), free);
      free -= took;
      return took;
    }) as unknown as LibcSymbols["send"],
    sendfile: ((_out: number, _in: number, offsetBytes: Uint8Array, count: bigint) => {
      seen.sendfiles++;
      const offset = new BigInt64Array(offsetBytes.buffer, offsetBytes.byteOffset, 1);
      assertEquals(Number(offset[0]), seen.next, "sendfile goes on where the last write left off");
      if (free <= 0) {
        seen.full++;
        lastErrno = LINUX.EAGAIN;
        return -1;
      }
      const took = Math.min(Number(count), free);
      free -= took;
      offset[0] += BigInt(took);
      seen.next += took;
      seen.sendfileBytes += took;
      return took;
    }) as unknown as LibcSymbols["sendfile"],
    getsockopt: ((_fd: number, _level: number, _name: number, value: Uint8Array) => {
      new DataView(value.buffer, value.byteOffset).setBigUint64(0, COOKIE, true);
      return 0;
    }) as unknown as LibcSymbols["getsockopt"],
    memcpy: ((into: Uint8Array) => {
      new DataView(into.buffer, into.byteOffset).setInt32(0, lastErrno, true);
      return null;
    }) as unknown as LibcSymbols["memcpy"],
    shutdown: (() => 0) as unknown as LibcSymbols["shutdown"],
    lseek: ((fd: number, offset: bigint, whence: number) => {
      seen.seeks++;
      return real.lseek(fd, offset, whence);
    }) as unknown as LibcSymbols["lseek"],
  };
  const sender = new FileSender({ ...real, ...fake } as LibcSymbols, options);
  const write = (piece: Uint8Array): Promise<number> => {
    // The client took bytes: the piece goes in, and the socket has room again.
    seen.pieces.push(piece);
    seen.next += piece.length;
    free = room - piece.length;
    return Promise.resolve(piece.length);
  };
  const socket = { conn: {} as Deno.Conn, fd: 1000, cookie: COOKIE };
  return { sender, seen, write, socket };
}

async function withFile(size: number, fn: (path: string) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const path = join(dir, "file.pkg.tar.zst");
    await Deno.writeFile(path, randomBytes(size));
    await fn(path);
  });
}

Deno.test("FileSender.send() of a 50 MiB file calls sendfile about once per wait, never again on a socket it found full", async () => {
  const size = 50 * MiB;
  const room = 2.5 * MiB;
  await withFile(size, async (path) => {
    const { sender, seen, write, socket } = fakeSocketSender(room);
    const outcome = await sender.send(socket, HEAD, { range: { path, start: 0, length: size, size }, write });
    assertEquals(outcome, { outcome: "sent" });
    assertEquals(seen.sendfileBytes + seen.pieces.reduce((sum, piece) => sum + piece.length, 0), size);
    const waits = seen.pieces.length;
    const windows = Math.ceil(size / RESIDENCY_WINDOW_BYTES);
    assert(waits >= size / room - 1, `the socket was full after each ${room} bytes (${waits} waits)`);
    // A short sendfile means a full socket: the next piece waits, instead of a call that fails with EAGAIN
    // (only a call that filled the socket exactly at the end of a residency window finds it full).
    assert(seen.full <= windows, `${seen.full} sendfile calls on a full socket`);
    assert(
      seen.sendfiles <= waits + windows + 1,
      `${seen.sendfiles} sendfile calls for ${waits} waits and ${windows} windows of the page cache`,
    );
  });
});

Deno.test("FileSender.send() of a growing file seeks nothing (its size is the download's); a complete file's size is checked", async () => {
  const size = 4096;
  await withFile(size, async (path) => {
    const { sender, seen, write, socket } = fakeSocketSender(Infinity);
    const growing = {
      alternatives: [],
      releasable: () => size,
      changed: () => new Promise<void>(() => {}),
      outcome: () => "complete" as const,
    };
    const range = { path, start: 0, length: size, size, growing };
    assertEquals(await sender.send(socket, HEAD, { range, write }), { outcome: "sent" });
    assertEquals([seen.sendfileBytes, seen.seeks], [size, 0]);
    const complete = { path, start: 0, length: size, size };
    assertEquals(await sender.send(socket, HEAD, { range: complete, write }), { outcome: "sent" });
    assertEquals(seen.seeks, 2);
  });
});

Deno.test("FileSender.send() to a slow client writes every wait's piece from one small buffer, not a new one per piece", async () => {
  const size = 8 * MiB;
  await withFile(size, async (path) => {
    const { sender, seen, write, socket } = fakeSocketSender(64 * 1024);
    const outcome = await sender.send(socket, HEAD, { range: { path, start: 0, length: size, size }, write });
    assertEquals(outcome, { outcome: "sent" });
    assert(seen.pieces.length > 100, `${seen.pieces.length} waits`);
    const buffers = new Set(seen.pieces.map((piece) => piece.buffer));
    assertEquals(buffers.size, 1, "one buffer for all the waits of a send");
    assert(seen.pieces.every((piece) => piece.length <= WAIT_WRITE_BYTES));
  });
});

Deno.test("FileSender.send() sends the bytes before the first one outside the page cache with sendfile, and reads from there on a thread", async () => {
  const size = 2 * MiB + 5;
  const inMemory = 512 * 1024 + 100;
  await withFile(size, async (path) => {
    let threadReads = 0;
    // The file's first bytes are in memory, the rest on disk.
    const residency: Residency = {
      residentBytes: (_fd, offset, length) => Math.max(0, Math.min(length, inMemory - offset)),
    };
    const reads = () => {
      const real = new ThreadReads(threadLibc());
      return {
        read: (fd: number, offset: number, into: Uint8Array) => (threadReads++, real.read(fd, offset, into)),
        close: () => real.close(),
      };
    };
    const { sender, seen, write, socket } = fakeSocketSender(Infinity, { residency, reads });
    const outcome = await sender.send(socket, HEAD, { range: { path, start: 0, length: size, size }, write });
    assertEquals(outcome, { outcome: "sent" });
    assertEquals(seen.sendfileBytes, inMemory, "the bytes in memory, with sendfile");
    assertEquals(seen.pieces.reduce((sum, piece) => sum + piece.length, 0), size - inMemory);
    assert(threadReads >= 1, "the rest read on a thread");
  });
});

Deno.test("FileSender.send() asks the page cache once for sends of the same file within RESIDENCY_TRUST_MS", async () => {
  const size = 3 * MiB;
  await withFile(size, async (path) => {
    const asked: [number, number][] = [];
    const residency: Residency = {
      residentBytes: (_fd, offset, length) => (asked.push([offset, length]), length),
    };
    const clock = { now: 0 };
    const { sender, write, socket } = fakeSocketSender(Infinity, { residency, now: () => clock.now });
    const send = () => sender.send(socket, HEAD, { range: { path, start: 0, length: size, size }, write });
    assertEquals(await send(), { outcome: "sent" });
    assertEquals(asked, [[0, size]], "the first send asks");
    clock.now += RESIDENCY_TRUST_MS - 1;
    assertEquals(await send(), { outcome: "sent" });
    assertEquals(
      asked,
      [[0, size], [0, 1]],
      "a send a moment later trusts what the first found, after one page",
    );
    clock.now += 1;
    assertEquals(await send(), { outcome: "sent" });
    assertEquals(asked, [[0, size], [0, 1], [0, size]], "a later one asks again");
  });
});

Deno.test("FileSender.send() reads on a thread what another send found in the page cache a moment before it was dropped", async () => {
  const size = 3 * MiB;
  await withFile(size, async (path) => {
    const cache = { dropped: false };
    const residency: Residency = { residentBytes: (_fd, _offset, length) => cache.dropped ? 0 : length };
    let threadReads = 0;
    const reads = () => {
      const real = new ThreadReads(threadLibc());
      return {
        read: (fd: number, offset: number, into: Uint8Array) => (threadReads++, real.read(fd, offset, into)),
        close: () => real.close(),
      };
    };
    const clock = { now: 0 };
    const { sender, seen, write, socket } = fakeSocketSender(Infinity, {
      residency,
      reads,
      now: () => clock.now,
    });
    const send = () => sender.send(socket, HEAD, { range: { path, start: 0, length: size, size }, write });
    assertEquals(await send(), { outcome: "sent" });
    assertEquals([seen.sendfileBytes, threadReads], [size, 0], "in memory: sendfile");
    cache.dropped = true;
    clock.now += 1;
    assertEquals(await send(), { outcome: "sent" });
    assertEquals(
      seen.sendfileBytes,
      size,
      "no sendfile of the dropped pages (it would read them on the event loop)",
    );
    assert(threadReads >= 1, "read on a thread");
  });
});

Deno.test("RecentResidency knows a range as long as it goes on from what was found, for RESIDENCY_TRUST_MS", () => {
  const clock = { now: 5 };
  const recent = new RecentResidency(() => clock.now);
  assertEquals(recent.known("/a", 0), 0);
  recent.note("/a", 0, 100);
  recent.note("/a", 100, 50);
  recent.note("/b", 10, 10);
  assertEquals([recent.known("/a", 0), recent.known("/a", 120), recent.known("/a", 150)], [150, 30, 0]);
  assertEquals([recent.known("/b", 5), recent.known("/b", 15)], [0, 5]);
  clock.now += RESIDENCY_TRUST_MS;
  assertEquals(recent.known("/a", 0), 0, "too old");
  recent.note("/a", 200, 10);
  assertEquals(
    [recent.known("/a", 0), recent.known("/a", 205)],
    [0, 5],
    "a new range after the old one expired",
  );
});
