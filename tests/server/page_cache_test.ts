/**
 * Files outside the page cache never go out with sendfile on the event loop: FileSender asks whether the next
 * bytes are in memory and reads those that are not on a thread. The decision is tested with a fake residency;
 * mincore itself with a file just written (in memory) and with a descriptor that is no file.
 */

import { join } from "node:path";
import { FileSender } from "../../src/server/sendfile.ts";
import { LIBC_PATHS, type LibcSymbols, LINUX, openLibc } from "../../src/server/libc.ts";
import {
  type FileReads,
  MincoreResidency,
  type Residency,
  ThreadReads,
} from "../../src/server/page_cache.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { readAll, withConnection } from "../helpers/sockets.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { concat } from "../../src/byte_reader.ts";

const HEAD = new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
const ENCODER = new TextEncoder();

function libc(): LibcSymbols {
  const loaded = openLibc(LIBC_PATHS);
  if (!loaded.ok) throw new Error(loaded.reason);
  return loaded.libc;
}

/** libc with its sendfile calls counted. */
function countingLibc(): { libc: LibcSymbols; sendfiles: () => number } {
  const real = libc();
  let calls = 0;
  const sendfile = ((...args: Parameters<LibcSymbols["sendfile"]>) => {
    calls++;
    return real.sendfile(...args);
  }) as LibcSymbols["sendfile"];
  return { libc: { ...real, sendfile }, sendfiles: () => calls };
}

/** Reads on a thread, counted; `beforeFirst` runs before the first of them. */
function countingReads(
  beforeFirst?: () => Promise<void>,
): { reads: () => FileReads; count: () => number } {
  let count = 0;
  return {
    reads: () => {
      const real = new ThreadReads(libc());
      return {
        read: async (...args: Parameters<FileReads["read"]>) => {
          if (count++ === 0) await beforeFirst?.();
          return await real.read(...args);
        },
        close: () => real.close(),
      };
    },
    count: () => count,
  };
}

/**
 * Sends a file of `bytes` with `residency`; `beforeFirstRead` runs before the first read on a thread, with the
 * file's path.
 */
async function sendWith(
  residency: Residency,
  bytes: Uint8Array,
  beforeFirstRead?: (path: string) => Promise<void>,
) {
  const { libc, sendfiles } = countingLibc();
  let path = "";
  const reads = countingReads(beforeFirstRead && (() => beforeFirstRead(path)));
  const files = new FileSender(libc, { residency, reads: reads.reads });
  let received: Uint8Array | undefined;
  let outcome;
  await withTempDir(async (dir) => {
    path = join(dir, "file.pkg.tar.zst");
    await Deno.writeFile(path, bytes);
    await withConnection(async ({ server, client }) => {
      const arriving = readAll(client);
      outcome = await files.send(files.findSocket(server)!, HEAD, {
        range: { path, start: 0, length: bytes.length, size: bytes.length },
      });
      server.close();
      received = await arriving;
    });
  });
  return { outcome, received, sendfiles: sendfiles(), reads: reads.count() };
}

Deno.test("FileSender.send() reads a file reported outside the page cache on a thread, never with sendfile", async () => {
  const bytes = randomBytes(1024 * 1024 + 7);
  const asked: number[] = [];
  const result = await sendWith({ residentBytes: (_fd, offset) => (asked.push(offset), 0) }, bytes);
  assertEquals(result.outcome, { outcome: "sent" });
  assertEquals(result.received, concat([HEAD, bytes]));
  assertEquals(result.sendfiles, 0, "no sendfile of bytes on disk");
  assert(result.reads >= 4, `read on a thread in pieces (${result.reads} reads)`);
  assertEquals(asked[0], 0, "asked from the first byte on");
});

Deno.test("FileSender.send() reads bytes outside the page cache from the file it opened, also once its path names a new one", async () => {
  // A database is replaced in the cache (renamed over) while a slow disk's client is still sent the old one.
  const old = randomBytes(600_000);
  const newer = randomBytes(700_000);
  const result = await sendWith({ residentBytes: () => 0 }, old, async (path) => {
    await Deno.writeFile(`${path}.new`, newer);
    await Deno.rename(`${path}.new`, path);
  });
  assertEquals(result.outcome, { outcome: "sent" });
  assert(result.reads > 0, "read on a thread");
  assertEquals(
    result.received,
    concat([HEAD, old]),
    "the bytes of the file whose size the head says, not a splice",
  );
});

Deno.test("FileSender.send() sends a file reported in the page cache with sendfile", async () => {
  const bytes = randomBytes(1024 * 1024 + 7);
  const result = await sendWith({ residentBytes: (_fd, _offset, length) => length }, bytes);
  assertEquals(result.outcome, { outcome: "sent" });
  assertEquals(result.received, concat([HEAD, bytes]));
  assert(result.sendfiles > 0);
  assertEquals(result.reads, 0, "nothing read on a thread");
});

Deno.test("MincoreResidency.residentBytes() finds a file just written in the page cache", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "file");
    await Deno.writeFile(path, randomBytes(300_000));
    const c = libc();
    const fd = c.open(ENCODER.encode(path + "\0"), LINUX.O_RDONLY_CLOEXEC);
    assert(fd >= 0);
    try {
      const residency = new MincoreResidency(c);
      assertEquals(residency.residentBytes(fd, 0, 300_000), 300_000);
      assertEquals(residency.residentBytes(fd, 123_457, 10), 10, "from an offset inside a page");
    } finally {
      c.close(fd);
    }
  });
});

Deno.test("MincoreResidency.residentBytes() says all when it cannot tell (no mapping of the descriptor)", () => {
  const residency = new MincoreResidency(libc());
  assertEquals(residency.residentBytes(-1, 0, 4096), 4096, "sent as before");
});
