/**
 * flexo's HTTP/1.1 client to mirrors over TLS: it checks the mirror's certificate, keeps a trusted connection
 * alive, and closes the connection of a handshake that failed.
 */

import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import { readHead, startRawServer } from "../helpers/fault_tools.ts";
import { client } from "../helpers/scripted_upstream.ts";
import { openLibc } from "../../src/server/libc.ts";
import { libcSocketShutdown } from "../../src/server/socket_shutdown.ts";

const encoder = new TextEncoder();

/** A self-signed certificate for 127.0.0.1 made with openssl, or undefined without openssl. */
async function testCertificate(dir: string): Promise<{ cert: string; key: string } | undefined> {
  try {
    const { success } = await new Deno.Command("openssl", {
      args: [
        ...[
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:prime256v1",
          "-nodes",
          "-days",
          "1",
        ],
        ...["-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`, "-subj", "/CN=flexo test"],
        ...["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"],
      ],
      stdout: "null",
      stderr: "null",
    }).output();
    if (!success) return undefined;
  } catch {
    return undefined;
  }
  return { cert: await Deno.readTextFile(`${dir}/cert.pem`), key: await Deno.readTextFile(`${dir}/key.pem`) };
}

Deno.test("createUpstreamClient().fetch() speaks HTTP/1.1 over TLS, checking the mirror's certificate", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-tls-" });
  try {
    const pair = await testCertificate(dir);
    if (pair === undefined) {
      // Reported as an ignored step, so that the run does not count the TLS check as passed.
      const reason = "skipped: openssl is not installed (apt-get install openssl)";
      console.warn(reason);
      await t.step({ name: reason, ignore: true, fn: () => {} });
      return;
    }
    const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...pair });
    const serving = (async () => {
      for await (const conn of listener) {
        (async () => {
          try {
            while ((await readHead(conn)) !== "") {
              await conn.write(encoder.encode("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret"));
            }
          } catch {
            // The client went away (or refused the certificate).
          } finally {
            conn.close();
          }
        })();
      }
    })();
    const url = `https://127.0.0.1:${listener.addr.port}/core/os/x86_64/core.db`;
    await t.step("trusted: kept alive", async () => {
      const upstream = client({ caCerts: [pair.cert] });
      try {
        assertEquals(await (await upstream.fetch(url)).text(), "secret");
        assertEquals(await (await upstream.fetch(url)).text(), "secret");
        assertEquals(upstream.idleConnections, 1);
      } finally {
        upstream.close();
      }
    });
    await t.step("untrusted: refused", async () => {
      const upstream = client();
      const error = await assertRejects(() => upstream.fetch(url), TypeError);
      assert(
        /certificate|UnknownIssuer|invalid peer/i.test(`${error.message} ${error.cause}`),
        String(error.cause),
      );
      upstream.close();
    });
    listener.close();
    await serving;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createUpstreamClient().fetch() closes the connection of a TLS handshake that failed", async () => {
  // A plain HTTP server where https was configured: it answers the ClientHello with HTTP, then waits for the
  // client to close.
  const closed = Promise.withResolvers<void>();
  const server = await startRawServer(async (conn) => {
    const buffer = new Uint8Array(4096);
    await conn.read(buffer);
    await conn.write(encoder.encode("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"));
    while ((await conn.read(buffer)) !== null);
    closed.resolve();
  });
  const upstream = client();
  try {
    await assertRejects(() => upstream.fetch(`https://127.0.0.1:${server.port}/core.db`), TypeError);
    // The client's end is closed, not left open (a socket per failed handshake).
    await closed.promise;
  } finally {
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() closes the connection of a TLS handshake that an abort gave up on", async () => {
  // A mirror that takes the connection and never answers the ClientHello (a silent mirror is a normal one).
  // Closing the TLS connection leaves its socket open in the runtime: it is shut down through libc, as main.ts
  // sets it up.
  const libc = openLibc();
  assert(libc.ok, "libc is loaded");
  const hello = Promise.withResolvers<void>();
  const closed = Promise.withResolvers<"closed">();
  const server = await startRawServer(async (conn) => {
    const buffer = new Uint8Array(4096);
    if ((await conn.read(buffer)) !== null) hello.resolve();
    while ((await conn.read(buffer)) !== null);
    closed.resolve("closed");
  });
  const upstream = client({ shutdownSocket: libcSocketShutdown(libc.libc) });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const abort = new AbortController();
    const fetching = upstream.fetch(`https://127.0.0.1:${server.port}/core.db`, { signal: abort.signal });
    await hello.promise;
    abort.abort(new Error("connect_timeout"));
    assertEquals((await assertRejects(() => fetching)).message, "connect_timeout");
    // The client's end is closed, not left open for as long as the mirror keeps it (a socket per timeout).
    const waited = new Promise<"open">((resolve) => timer = setTimeout(() => resolve("open"), 5000));
    assertEquals(await Promise.race([closed.promise, waited]), "closed");
  } finally {
    clearTimeout(timer);
    upstream.close();
    await server.close();
  }
});

Deno.test("createUpstreamClient().fetch() closes the connection of a request abandoned after its TLS handshake", async (t) => {
  // Guards the case next to the one above: once the handshake is over, closing the TLS connection (an abort
  // before the head or during the body, a cancelled body) closes its socket at once in Deno 2.9, without
  // libc's shutdown. The mirror learns it from a reset: its writes fail once our socket is gone, where a socket
  // left open would take megabytes before a write waited.
  const dir = await Deno.makeTempDir({ prefix: "flexo-tls-" });
  try {
    const pair = await testCertificate(dir);
    if (pair === undefined) {
      const reason = "skipped: openssl is not installed (apt-get install openssl)";
      console.warn(reason);
      await t.step({ name: reason, ignore: true, fn: () => {} });
      return;
    }
    for (const how of ["abort before the head", "abort during the body", "cancel the body"]) {
      await t.step(how, async () => {
        const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...pair });
        const asked = Promise.withResolvers<void>();
        const serving = (async () => {
          const conn = await listener.accept();
          try {
            await readHead(conn);
            asked.resolve();
            if (how !== "abort before the head") {
              await conn.write(encoder.encode("HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\nfirst"));
            }
            const buffer = new Uint8Array(4096);
            while ((await conn.read(buffer)) !== null);
            const chunk = new Uint8Array(64 * 1024);
            for (let i = 0; i < 1024; i++) await conn.write(chunk);
            return "open";
          } catch {
            return "closed";
          } finally {
            conn.close();
          }
        })();
        const upstream = client({ caCerts: [pair.cert] });
        let timer: ReturnType<typeof setTimeout> | undefined;
        try {
          const abort = new AbortController();
          const fetching = upstream.fetch(`https://127.0.0.1:${listener.addr.port}/core.db`, {
            signal: abort.signal,
          });
          await asked.promise;
          if (how === "abort before the head") {
            abort.abort(new Error("connect_timeout"));
            await assertRejects(() => fetching);
          } else {
            const reader = (await fetching).body!.getReader();
            await reader.read();
            if (how === "cancel the body") await reader.cancel();
            else {
              abort.abort(new Error("too slow"));
              await assertRejects(() => reader.read());
            }
          }
          const waited = new Promise<"open">((resolve) => timer = setTimeout(() => resolve("open"), 5000));
          assertEquals(await Promise.race([serving, waited]), "closed");
        } finally {
          clearTimeout(timer);
          upstream.close();
          listener.close();
        }
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
