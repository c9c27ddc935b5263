/**
 * What flexo's HTTP/1.1 connection layer tells of a connection: the handler's `ServeInfo` (the client's address,
 * and `completed` with the bytes sent), and the state the listener's sweep reads (busy, idleSince,
 * writingSince), with close() and finish().
 */

import { latin1 } from "../../src/server/http1_head.ts";
import type { ResponseSent, ServeInfo } from "../../src/http/client_request.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { withinMs } from "../helpers/proxy_server.ts";
import { settledNow, waitFor } from "../helpers/wait.ts";
import { assertEnds, decoder, echo, get, slowBody, withServed } from "../helpers/http1_client.ts";

Deno.test("ClientConnection.serve() gives the handler the client's and its own address and a completed promise that resolves after the response with the bytes sent", async () => {
  const infos: ServeInfo[] = [];
  let completed: Promise<ResponseSent> | undefined;
  const gate = Promise.withResolvers<void>();
  const pulled = Promise.withResolvers<void>();
  const handler = (_req: Request, info: ServeInfo) => {
    // The first is asked for while the handler runs (as the app does), the second only after its response.
    if (infos.push(info) === 1) completed = info.completed;
    return new Response(slowBody(["done"], () => (pulled.resolve(), gate.promise)));
  };
  await withServed({ handler }, async ({ client, connection }) => {
    await client.send(get());
    await waitFor("the handler", () => completed !== undefined, 2_000);
    const own = client.conn.localAddr as Deno.NetAddr;
    assertEquals([infos[0].remoteAddr.hostname, infos[0].remoteAddr.port], ["127.0.0.1", own.port]);
    // And the address it connected to (POST /prefetch tells a client on the proxy's host by it).
    const server = client.conn.remoteAddr as Deno.NetAddr;
    assertEquals([infos[0].localAddr?.hostname, infos[0].localAddr?.port], ["127.0.0.1", server.port]);
    // The server is reading the body now: everything before it (the handler, the head) is done.
    await withinMs(pulled.promise, 2_000, "the server never asked for the body");
    assertEquals(await settledNow(completed!), false, "completed resolved while the body was still coming");
    gate.resolve();
    assertEquals(decoder.decode((await client.response()).body), "done");
    assertEquals(
      await withinMs(completed!, 1_000, "completed did not resolve after the response"),
      { whole: true, bytes: 4 },
    );
    await client.send(get());
    assertEquals(decoder.decode((await client.response()).body), "done");
    await waitFor("the response to end", () => !connection.busy, 2_000);
    await withinMs(
      infos[1].completed,
      1_000,
      "completed, first asked for after the response, never resolved",
    );
  });
});

Deno.test("ClientConnection.busy and idleSince follow the response in progress", async () => {
  const gate = Promise.withResolvers<void>();
  const handler = async (req: Request) => (await gate.promise, echo(req));
  await withServed({ handler }, async ({ client, connection }) => {
    const idleSince = connection.idleSince;
    assert(!connection.busy && idleSince > 0 && idleSince <= performance.now());
    await client.send(get());
    await waitFor("the request to be taken", () => connection.busy, 2_000);
    assertEquals(connection.idleSince, idleSince);
    gate.resolve();
    assertEquals(decoder.decode((await client.response()).body), "GET /");
    await waitFor("the response to end", () => !connection.busy, 2_000);
    assert(connection.idleSince > idleSince, "idleSince moves to the end of the response");
  });
});

Deno.test("ClientConnection.writingSince is set while a write waits for the client, and close() ends it", async () => {
  const chunk = new Uint8Array(1024 * 1024);
  const handler = () => new Response(new ReadableStream({ pull: (controller) => controller.enqueue(chunk) }));
  await withServed({ handler }, async ({ client, connection, served }) => {
    assertEquals(connection.writingSince, 0);
    // The client reads nothing: a write soon waits, and goes on waiting.
    await client.send(get());
    const since = () => connection.writingSince;
    await waitFor("a write that waits", () => since() > 0 && performance.now() - since() > 100, 5_000);
    connection.close();
    await withinMs(served, 2_000, "serve() did not end after close()");
    assertEquals(connection.writingSince, 0);
  });
});

Deno.test("ClientConnection.close() and finish() end an idle connection and serve() at once", async () => {
  for (const end of ["close", "finish"] as const) {
    await withServed({}, async ({ client, connection, served }) => {
      await client.send(get());
      await client.response();
      connection[end]();
      assert(connection.closed, end);
      await withinMs(served, 1_000, `serve() did not end after ${end}()`);
      await assertEnds(client);
    });
  }
});

Deno.test("ClientConnection.finish() during a response lets it complete, then closes", async () => {
  // While the handler runs, the head says the connection closes; once the head is out, the connection just ends.
  for (const during of ["handler", "body"] as const) {
    const gate = Promise.withResolvers<void>();
    let calls = 0;
    const handler = async () => {
      calls++;
      if (during === "handler") return (await gate.promise, new Response("done"));
      return new Response(slowBody(["first", "second"], () => gate.promise));
    };
    await withServed({ handler }, async ({ client, connection, served }) => {
      // A second request waits behind the first: it is not answered after finish().
      await client.send(get("/a") + get("/b"));
      await waitFor("the response to begin", () => connection.busy, 2_000);
      if (during === "body") assertEquals(latin1(await client.through("\r\n\r\n")).includes("chunked"), true);
      connection.finish();
      assert(!connection.closed, "the running response is not cut");
      gate.resolve();
      if (during === "handler") {
        const reply = await client.response();
        assertEquals([decoder.decode(reply.body), reply.headers.get("connection")], ["done", "close"]);
      } else {
        assertEquals(latin1(await client.rest()), "5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n");
      }
      await assertEnds(client);
      await withinMs(served, 1_000, "serve() did not end");
      assertEquals(calls, 1);
    });
  }
});
