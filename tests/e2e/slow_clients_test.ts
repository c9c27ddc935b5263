/**
 * Slow and misbehaving clients against the real program (`main.ts` in its own process, so that its descriptors
 * and memory are measured apart from the tests running beside this one): a client that sends its request a byte
 * at a time, one that connects and says nothing, a flood of connections. None of them may block the others or
 * make the proxy's memory grow. Clients that stop reading are in stalled_readers_test.ts; the setup is in
 * tests/helpers/slow_clients.ts.
 *
 * Connections that never complete a request head (or stay idle after a response) are closed after
 * `client_timeout_secs`; until then they cost one descriptor and a few KiB each.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { withinMs } from "../helpers/proxy_server.ts";
import { waitFor } from "../helpers/wait.ts";
import {
  BIG,
  BIG_SIZE,
  bodyOf,
  encoder,
  hashOf,
  MIB,
  openDescriptors,
  openSilentConnections,
  readBytes,
  readUntilClosed,
  rssOf,
  SMALL,
  timedGood,
  withSetup,
} from "../helpers/slow_clients.ts";
import { closeQuietly } from "../../src/close_quietly.ts";

Deno.test("a client sending its request a byte at a time blocks nobody and is answered correctly", async () => {
  await withSetup(async (setup) => {
    const { proxy } = setup;
    const rssBefore = rssOf(proxy);
    const fdsBefore = openDescriptors(proxy);
    const request =
      `GET ${SMALL} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: trickle\r\nConnection: close\r\n\r\n`;
    // Thirty of them at once, each taking about 1.5 s for its request.
    const trickles = Array.from({ length: 30 }, async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      try {
        for (const byte of encoder.encode(request)) {
          await conn.write(new Uint8Array([byte]));
          await new Promise((resolve) => setTimeout(resolve, 15));
        }
        const answer = await readBytes(conn, 1024 * 1024);
        const text = new TextDecoder().decode(answer.subarray(0, 200));
        assert(text.startsWith("HTTP/1.1 200"), `the trickling client got ${text}`);
        assertEquals(bodyOf(answer), setup.small, "the trickling client's body is the file");
      } finally {
        conn.close();
      }
    });
    // Meanwhile (once the proxy holds the trickling connections) normal clients are served at once.
    await waitFor(
      "the trickling clients to be accepted",
      () => openDescriptors(proxy) >= fdsBefore + 30,
      5_000,
    );
    for (let i = 0; i < 5; i++) {
      const ms = await timedGood(setup);
      assert(ms < 2_000, `a normal client waited ${Math.round(ms)} ms behind trickling clients`);
    }
    await Promise.all(trickles);
    const grown = rssOf(proxy) - rssBefore;
    assert(grown < 64 * MIB, `RSS grew by ${(grown / MIB).toFixed(1)} MiB with trickling clients`);
  });
});

Deno.test("clients that connect and say nothing block nobody and cost no memory", async () => {
  await withSetup(async (setup) => {
    const { proxy } = setup;
    await timedGood(setup); // cached now
    const fdsBefore = openDescriptors(proxy);
    const rssBefore = rssOf(proxy);
    const silent: Deno.Conn[] = [];
    try {
      await openSilentConnections(proxy.port, silent, { saysNothing: 300, stopsHalfway: 20 });
      // They are held open (until client_timeout_secs, 60 s here), one descriptor each; the count before them
      // may include the last normal client's connection and file, which close on their own.
      await waitFor(
        "the proxy to accept the silent connections",
        () => openDescriptors(proxy) >= fdsBefore + 330,
      );
      for (let i = 0; i < 10; i++) {
        const ms = await timedGood(setup);
        assert(ms < 2_000, `a normal client waited ${Math.round(ms)} ms behind silent connections`);
      }
      const grown = rssOf(proxy) - rssBefore;
      assert(grown < 32 * MIB, `RSS grew by ${(grown / MIB).toFixed(1)} MiB for 340 silent connections`);
      assertEquals(setup.mirror.requests.length, 1, "no silent connection made an upstream request");
      assert(openDescriptors(proxy) >= fdsBefore + 300, "the proxy still holds the silent connections");
    } finally {
      for (const conn of silent) conn.close();
    }
    // Once the clients close them, the proxy lets them go.
    await waitFor("releasing the silent connections", () => openDescriptors(proxy) <= fdsBefore + 4, 5_000);
    await timedGood(setup);
  });
});

Deno.test("connections that never complete a request, or stay idle after one, are closed after client_timeout_secs", async () => {
  await withSetup(async (setup) => {
    const { proxy } = setup;
    await timedGood(setup); // cached now
    const fdsBefore = openDescriptors(proxy);
    const connections: Deno.Conn[] = [];
    try {
      await openSilentConnections(proxy.port, connections, { saysNothing: 50, stopsHalfway: 10 });
      // A keep-alive connection that got its answer and then says nothing more.
      const idle = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      connections.push(idle);
      await idle.write(encoder.encode(`HEAD ${SMALL} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
      const head = new TextDecoder().decode(await readBytes(idle, 12));
      assert(head.startsWith("HTTP/1.1 200"), `the idle client's answer: ${head}`);
      const started = performance.now();
      // Every one of them is closed by the server (end of stream, or a reset for the half requests).
      const ends = await withinMs(
        Promise.all(connections.map((conn) => readUntilClosed(conn))),
        10_000,
        "the server kept connections open past client_timeout_secs",
      );
      const ms = performance.now() - started;
      assert(ms >= 1_500, `closed after ${Math.round(ms)} ms, before the 2 s timeout`);
      for (const end of ends) assert(!/^HTTP\/1\.1 [23]/.test(end), `a timed-out connection got: ${end}`);
      await waitFor(
        "releasing the timed-out connections",
        () => openDescriptors(proxy) <= fdsBefore + 4,
        5_000,
      );
      await timedGood(setup);
    } finally {
      // Some were closed by the test already.
      for (const conn of connections) closeQuietly(conn);
    }
  }, { clientTimeoutSecs: 2 });
});

Deno.test("a download that takes longer than client_timeout_secs is not cut off", async () => {
  await withSetup(async (setup) => {
    const response = await fetch(setup.proxy.url + BIG);
    assertEquals(response.status, 200);
    const { sha256, length } = await hashOf(response);
    assertEquals(length, BIG_SIZE);
    assertEquals(sha256, setup.bigSha256);
  }, { clientTimeoutSecs: 1 });
});

Deno.test("more connections than the proxy has descriptors for do not stop it; it serves again once they go", async () => {
  await withSetup(async (setup) => {
    const { proxy } = setup;
    await timedGood(setup); // cached now
    const flood: Deno.Conn[] = [];
    try {
      // Beyond the limit the proxy's accept fails ("too many open files"); the kernel queues the rest.
      for (let i = 0; i < 200; i++) {
        flood.push(await Deno.connect({ hostname: "127.0.0.1", port: proxy.port }));
      }
      await waitFor("the proxy to run out of descriptors", () => openDescriptors(proxy) >= 120, 5_000);
    } finally {
      for (const conn of flood) conn.close();
    }
    // Deno.serve ends its accept loop, and the process, on that error; flexo waits and accepts again.
    await waitFor("the proxy to serve again", async () => {
      try {
        await timedGood(setup);
        return true;
      } catch {
        return false;
      }
    }, 10_000);
    // A cap above the limit (the default stays below it), so that accepting does fail.
  }, { maxOpenFiles: 128, maxConnections: 1_000 });
});
