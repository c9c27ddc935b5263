/**
 * Clients that stop reading, against the real program: each is back-pressured (the proxy reads the file no
 * further than the socket takes, whether it follows a download or sends a cached file with sendfile or by
 * copying), does not stop the download it started or make the proxy's memory grow, and its file is closed when
 * it goes away. The setup is in tests/helpers/slow_clients.ts.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { waitFor } from "../helpers/wait.ts";
import {
  BIG,
  BIG_SIZE,
  descriptorsBelow,
  encoder,
  hashOf,
  MIB,
  openStalledReaders,
  readBytes,
  rssOf,
  saturated,
  timedGood,
  withSetup,
} from "../helpers/slow_clients.ts";

Deno.test("a client that stops reading is back-pressured, its download completes and others get the file", async () => {
  await withSetup(async (setup) => {
    const { proxy } = setup;
    const rssBefore = rssOf(proxy);
    const stalled = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    try {
      await stalled.write(encoder.encode(`GET ${BIG} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
      const first = await readBytes(stalled, 64 * 1024);
      assert(new TextDecoder().decode(first.subarray(0, 12)).startsWith("HTTP/1.1 200"));
      // It reads nothing more. The download it started runs on at the mirror's pace...
      const joined = fetch(proxy.url + BIG, { signal: AbortSignal.timeout(20_000) }).then(hashOf);
      const started = performance.now();
      await waitFor(
        "the download completing into the cache",
        async () => (await Deno.stat(join(proxy.dir, BIG)).catch(() => undefined))?.size === BIG_SIZE,
        15_000,
      );
      const downloadMs = performance.now() - started;
      // ...and a second client gets the whole file while the first one is still stuck.
      const other = await joined;
      assertEquals(other, { sha256: setup.bigSha256, length: BIG_SIZE }, "the other client got the file");
      assertEquals(setup.mirror.countRequests(BIG, { method: "GET" }), 1, "one upstream transfer");
      // A cache hit is not held up either.
      const hit = await fetch(proxy.url + BIG, { signal: AbortSignal.timeout(10_000) }).then(hashOf);
      assertEquals(hit.sha256, setup.bigSha256);
      // The stalled response still holds the file open (it may continue reading), but has read only as far as
      // the socket took: the unread rest of the file was not pulled into memory.
      // (The other readers close their files as their responses end.)
      await waitFor(
        "the other readers closing the file",
        () => descriptorsBelow(proxy).length === 1,
        3_000,
      );
      const open = descriptorsBelow(proxy);
      assertEquals(open.length, 1, `only the stalled response has the file open: ${JSON.stringify(open)}`);
      assert(
        open[0].position < 16 * MIB,
        `the stalled response read ${
          (open[0].position / MIB).toFixed(1)
        } MiB of the file ahead of its client`,
      );
      // (Memory is checked alone in the next test: the other clients' reads leave garbage behind here.)
      const grown = rssOf(proxy) - rssBefore;
      assert(
        grown < BIG_SIZE,
        `RSS grew by ${(grown / MIB).toFixed(1)} MiB (download took ${downloadMs} ms)`,
      );
    } finally {
      stalled.close();
    }
    // ...and lets it go once the client disconnects.
    await waitFor(
      "the stalled client's file being closed",
      () => descriptorsBelow(proxy).length === 0,
      5_000,
    );
    await timedGood(setup);
  });
});

Deno.test("ten clients that stop reading in the middle of a download do not make the proxy's memory grow", async () => {
  await withSetup(async (setup) => {
    const { proxy } = setup;
    await timedGood(setup);
    const rssBefore = rssOf(proxy);
    let stalled: Deno.Conn[] = [];
    try {
      stalled = await openStalledReaders(proxy.port, 10, 64 * 1024);
      await waitFor(
        "the download completing into the cache",
        async () => (await Deno.stat(join(proxy.dir, BIG)).catch(() => undefined))?.size === BIG_SIZE,
        15_000,
      );
      await saturated(proxy, stalled);
      await waitFor("the download to close its own file", () => descriptorsBelow(proxy).length === 10, 5_000);
      // A download alone raises RSS by up to about 80 MiB (buffers and garbage of a fast transfer, the same for
      // any file size); ten clients holding the unread rest of a 96 MiB file would need ten times that.
      const grown = rssOf(proxy) - rssBefore;
      assert(
        grown < 160 * MIB,
        `RSS grew by ${(grown / MIB).toFixed(1)} MiB while ten clients left ${BIG_SIZE / MIB} MiB unread`,
      );
      const open = descriptorsBelow(proxy);
      assertEquals(open.length, 10, `each stalled response has the file open: ${JSON.stringify(open)}`);
      for (const { position } of open) {
        assert(position < 16 * MIB, `a stalled response read ${(position / MIB).toFixed(1)} MiB ahead`);
      }
    } finally {
      for (const conn of stalled) conn.close();
    }
    await waitFor(
      "the stalled clients' files being closed",
      () => descriptorsBelow(proxy).length === 0,
      5_000,
    );
  });
});

for (const sendfile of [true, false]) {
  const how = sendfile ? "sent with sendfile" : "copied through JavaScript";
  Deno.test(`a client that stops reading a cached file (${how}) lets it go when it disconnects; others are served`, async () => {
    await withSetup(async (setup) => {
      const { proxy } = setup;
      const warm = await fetch(proxy.url + BIG).then(hashOf);
      assertEquals(warm.sha256, setup.bigSha256);
      // The last byte goes out before the download's flush and rename: wait until the file is in the cache and
      // the download's own descriptors are gone, so that the readers below read the cached file.
      await waitFor(
        "the download to commit the file and close it",
        async () =>
          (await Deno.stat(join(proxy.dir, BIG)).catch(() => undefined))?.size === BIG_SIZE &&
          descriptorsBelow(proxy).length === 0,
        15_000,
      );
      const rssBefore = rssOf(proxy);
      let stalled: Deno.Conn[] = [];
      try {
        stalled = await openStalledReaders(proxy.port, 10, 16 * 1024);
        await saturated(proxy, stalled);
        const ms = await timedGood(setup);
        assert(ms < 2_000, `a normal client waited ${Math.round(ms)} ms behind stalled readers`);
        const grown = rssOf(proxy) - rssBefore;
        assert(
          grown < 64 * MIB,
          `RSS grew by ${(grown / MIB).toFixed(1)} MiB for ten stalled readers`,
        );
        // (The small file's download and reader may still be closing; only the big file's readers count.)
        const open = descriptorsBelow(proxy).filter((d) => d.path.endsWith(BIG));
        assertEquals(open.length, 10, `each stalled reader has its file open once: ${JSON.stringify(open)}`);
        // Copied through JavaScript, a file is read only as far ahead as the socket takes; with sendfile nothing is
        // read into the process at all (the kernel copies from the page cache), and the position stays 0.
        for (const { position } of open) {
          assert(
            position < 16 * MIB,
            `a stalled reader read ${(position / MIB).toFixed(1)} MiB ahead of its client`,
          );
        }
      } finally {
        for (const conn of stalled) conn.close();
      }
      await waitFor(
        "the stalled readers' files being closed",
        () => descriptorsBelow(proxy).length === 0,
        5_000,
      );
    }, { sendfile });
  });
}
