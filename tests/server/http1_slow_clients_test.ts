/**
 * flexo's own HTTP/1.1 layer against slow clients: a slowloris, silent connections, a client that never reads its
 * pipelined answers, and one that leaves while its request is answered.
 */

import { FakeTimers } from "../helpers/fake_timers.ts";
import { encodeLatin1 } from "../../src/server/http1_response.ts";
import { assertEquals } from "../helpers/assert.ts";
import { withinMs } from "../helpers/proxy_server.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect, get, Reader, withListener, writeInPieces } from "../helpers/http1_adversary.ts";

Deno.test("listenForClients() closes a slowloris, silent connections and a client that never reads its pipelined answers after the timeout", async () => {
  const body = new Uint8Array(64 * 1024);
  const clock = new FakeTimers();
  // A connection's writingSince of 0 means "not writing": the clock starts past it.
  clock.advance(1);
  await withListener(
    { timeoutMs: 300, handler: () => new Response(body), clock: clock.deps },
    async (listener) => {
      const silent = await Promise.all(Array.from({ length: 50 }, () => connect(listener.addr.port)));
      const [slow, deaf] = [await connect(listener.addr.port), await connect(listener.addr.port)];
      await waitFor("every connection to be accepted", () => listener.connections === 52);
      const flood = writeInPieces(deaf, encodeLatin1(get("/").repeat(5_000)));
      // The slowloris sends a byte for every 40 ms of the clock: never a whole head.
      const bytes = encodeLatin1(`GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ${"s".repeat(100)}`);
      const slowAnswers = new Reader(slow).all();
      for (let i = 0; i < 7; i++) {
        await slow.write(bytes.subarray(i, i + 1));
        clock.advance(40);
      }
      // The sweep closes connections while the clock moves: what it did is known when advance() returns.
      assertEquals(listener.timedOut, 0, "the slowloris was closed before the timeout");
      clock.advance(300);
      assertEquals(await withinMs(slowAnswers, 2_000, "the slowloris was not closed"), []);
      for (const conn of silent) assertEquals(await new Reader(conn).all(), []);
      // The deaf client's answers fill its socket on their own time: the clock moves on until it is cut off too.
      await waitFor("the sweep to close every connection", () => {
        clock.advance(100);
        return listener.connections === 0;
      }, 4_000);
      for (const conn of [slow, deaf, ...silent]) conn.close();
      await flood.catch(() => {});
    },
  );
});

Deno.test("listenForClients() keeps a busy connection whose client left until its handler answers, then lets it go", async () => {
  const gate = Promise.withResolvers<void>();
  const asked = Promise.withResolvers<void>();
  const handler = async () => (asked.resolve(), await gate.promise, new Response("late"));
  const clock = new FakeTimers();
  await withListener({ timeoutMs: 100, handler, clock: clock.deps }, async (listener) => {
    const conn = await connect(listener.addr.port);
    await conn.write(encodeLatin1(get("/waits-for-upstream")));
    await asked.promise;
    conn.close();
    // Busy and not writing: the sweep leaves it (a slow upstream is never cut), even with its client gone.
    clock.advance(400);
    assertEquals(listener.connections, 1);
    gate.resolve();
    await waitFor("the connection to end once answered", () => listener.connections === 0, 1_000);
  });
});
