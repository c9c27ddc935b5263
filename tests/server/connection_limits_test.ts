/**
 * The connection cap (finding 2 of issue 16): silent connections and idle keep-alive connections give way, oldest
 * first, so that a flood of connections that never send a byte cannot lock real clients out; and the default cap
 * leaves the descriptors the proxy needs for itself, so that under a small open-files limit it still answers.
 */

import { waitFor } from "../helpers/wait.ts";
import { join } from "node:path";
import {
  listenForClients,
  REFUSED_WARNING_EVERY_MS,
  yieldingConnection,
} from "../../src/server/client_connections.ts";
import { captureLog } from "../helpers/log_capture.ts";
import { defaultMaxConnections, FALLBACK_MAX_CONNECTIONS } from "../../src/server/server.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFlexo, writeConfig } from "../helpers/flexo_process.ts";
import { withinMs } from "../helpers/proxy_server.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const SILENT = 400;

/** Sends a GET for `/` on a new connection and returns the whole answer (the server closes after it). */
async function ask(port: number, path = "/"): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(encoder.encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    let text = "";
    const buffer = new Uint8Array(4096);
    while (true) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) return text;
      text += decoder.decode(buffer.subarray(0, n));
    }
  } finally {
    conn.close();
  }
}

/** Opens `count` connections to `port` that send nothing (the kernel queues those not accepted yet). */
async function openSilent(port: number, count: number, into: Deno.Conn[]): Promise<void> {
  for (let i = 0; i < count; i++) into.push(await Deno.connect({ hostname: "127.0.0.1", port }));
}

Deno.test("yieldingConnection() picks the connection idle longest and never one that is answering", () => {
  const a = { busy: false, idleSince: 30, closed: false };
  const b = { busy: true, idleSince: 10, closed: false };
  const c = { busy: false, idleSince: 20, closed: false };
  const d = { busy: false, idleSince: 5, closed: true };
  assertEquals(yieldingConnection([a, b, c, d]), c);
  assertEquals(yieldingConnection([b, d]), undefined);
});

Deno.test("defaultMaxConnections() leaves a reserve of the open-files limit", () => {
  assertEquals(defaultMaxConnections(256), 192);
  assertEquals(defaultMaxConnections(1024), 768);
  assertEquals(defaultMaxConnections(20), 16);
  assertEquals(defaultMaxConnections(undefined), FALLBACK_MAX_CONNECTIONS);
});

Deno.test(`with max_connections 32, ${SILENT} silent connections give way and a real client is answered at once`, async () => {
  const listener = listenForClients(() => new Response("hello"), {
    hostname: "127.0.0.1",
    port: 0,
    timeoutMs: 60_000,
    onError: () => new Response("error", { status: 500 }),
    maxConnections: 32,
  });
  const silent: Deno.Conn[] = [];
  try {
    await withinMs(
      (async () => {
        await openSilent(listener.addr.port, SILENT, silent);
        const started = performance.now();
        const answer = await ask(listener.addr.port);
        const ms = performance.now() - started;
        assert(answer.startsWith("HTTP/1.1 200") && answer.endsWith("hello"), answer);
        // Without the cap it waits for the 60 s client timeout; with it, no more than accepting what is queued.
        assert(ms < 2_000, `answered after ${Math.round(ms)} ms`);
        assert(listener.connections <= 32, `${listener.connections} connections open`);
      })(),
      20_000,
      "the test did not finish within 20 s",
    );
  } finally {
    for (const conn of silent) conn.close();
    await listener.shutdown();
  }
});

Deno.test("a connection that is answering is not closed to make room; the newcomer is", async () => {
  const { promise: release, resolve } = Promise.withResolvers<void>();
  const entered = Promise.withResolvers<void>();
  const listener = listenForClients(async () => {
    entered.resolve();
    await release;
    return new Response("slow");
  }, {
    hostname: "127.0.0.1",
    port: 0,
    timeoutMs: 60_000,
    onError: () => new Response("error", { status: 500 }),
    maxConnections: 1,
  });
  try {
    await withinMs(
      (async () => {
        const slow = ask(listener.addr.port);
        // The one slot is answering a request now.
        await entered.promise;
        assertEquals(await ask(listener.addr.port), "");
        resolve();
        assert((await slow).endsWith("slow"));
      })(),
      10_000,
      "the test did not finish within 10 s",
    );
  } finally {
    resolve();
    await listener.shutdown();
  }
});

Deno.test("listenForClients() counts the connections refused at max_connections and warns at most once a minute, with a count", async () => {
  const captured = await captureLog("info");
  const clock = { ms: 0 };
  const release = Promise.withResolvers<void>();
  const entered = Promise.withResolvers<void>();
  let counted = 0;
  const listener = listenForClients(async () => {
    entered.resolve();
    await release.promise;
    return new Response("slow");
  }, {
    hostname: "127.0.0.1",
    port: 0,
    timeoutMs: 60_000,
    onError: () => new Response("error", { status: 500 }),
    maxConnections: 1,
    onRefused: () => counted++,
    clock: {
      now: () => clock.ms,
      setTimer: (callback, ms) => setTimeout(callback, ms),
      clearTimer: (timer) => clearTimeout(timer as number),
    },
  });
  try {
    const slow = ask(listener.addr.port);
    await entered.promise; // the one slot is answering a request from now on
    for (const at of [0, 1_000, REFUSED_WARNING_EVERY_MS - 1, REFUSED_WARNING_EVERY_MS]) {
      clock.ms = at;
      assertEquals(await ask(listener.addr.port), "", "closed at once");
    }
    assertEquals([listener.refused, counted], [4, 4]);
    release.resolve();
    assert((await slow).endsWith("slow"));
  } finally {
    release.resolve();
    await listener.shutdown();
    await captured.close();
  }
  const warnings = captured.text().split("\n").filter((line) => line.includes("closed at once"));
  assertEquals(warnings.length, 2, captured.text());
  assert(warnings[0].includes("1 new connection(s)"), warnings[0]);
  assert(warnings[1].includes("3 new connection(s)"), warnings[1]);
});

/** Writes the configuration of a proxy whose only mirror refuses connections (tests ask for /status only). */
async function configIn(work: string, more = ""): Promise<string> {
  return await writeConfig(
    work,
    [
      `cache_directory = ${JSON.stringify(join(work, "cache"))}`,
      `mirrorlist_fallback_file = ${JSON.stringify(join(work, "state", "mirrorlist"))}`,
      `mirrorlist_latency_test_results_file = ${JSON.stringify(join(work, "state", "latency.json"))}`,
      "port = 0",
      'listen_ip_address = "127.0.0.1"',
      'mirror_selection_method = "predefined"',
      more.includes("mirrors_predefined") ? "" : 'mirrors_predefined = ["http://127.0.0.1:9/"]',
      more,
    ].join("\n"),
  );
}

Deno.test("failed accepts (a cap above the open-files limit) back off and are logged once per burst, with a count", async () => {
  const work = await Deno.makeTempDir({ prefix: "flexo-limits-" });
  const flexo = await startFlexo(await configIn(work, "max_connections = 10000"), { maxOpenFiles: 128 });
  const silent: Deno.Conn[] = [];
  try {
    await withinMs(
      (async () => {
        await openSilent(flexo.port, SILENT, silent);
        // Connections waiting for a request give their descriptors to the next ones: the proxy still answers.
        const answer = await ask(flexo.port, "/status");
        assert(answer.startsWith("HTTP/1.1 200"), answer.slice(0, 200));
        for (const conn of silent.splice(0)) conn.close();
        // A quiet second ends the burst; the next accepted connection reports it: clients keep asking (each
        // answered) until the end of the burst is logged (log lines reach the output in batches, see log_sink.ts).
        await waitFor("the end of the burst to be logged", async () => {
          assert((await ask(flexo.port, "/status")).startsWith("HTTP/1.1 200"));
          return /Accepting connections again/.test(flexo.output());
        }, 15_000);
      })(),
      30_000,
      "the test did not finish within 30 s",
    );
    const output = flexo.output();
    const warnings = output.match(/Could not accept a connection/g) ?? [];
    assertEquals(warnings.length, 1, output);
    assert(/Accepting connections again; \d+ attempts to accept failed/.test(output), output);
  } finally {
    for (const conn of silent) conn.close();
    await flexo.stop();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test(`under a limit of 256 open files, ${SILENT} silent connections do not lock out a real client`, async () => {
  const work = await Deno.makeTempDir({ prefix: "flexo-limits-" });
  const config = await configIn(work);
  const flexo = await startFlexo(config, { maxOpenFiles: 256 });
  const silent: Deno.Conn[] = [];
  try {
    await withinMs(
      (async () => {
        await openSilent(flexo.port, SILENT, silent);
        const started = performance.now();
        const answer = await ask(flexo.port, "/status");
        const ms = performance.now() - started;
        assert(answer.startsWith("HTTP/1.1 200"), answer.slice(0, 200));
        // Without the cap the proxy runs out of descriptors and the client waits for client_timeout_secs (60 s).
        assert(ms < 2_000, `answered after ${Math.round(ms)} ms`);
      })(),
      30_000,
      "the test did not finish within 30 s",
    );
    const warnings = flexo.output().match(/Could not accept a connection/g) ?? [];
    assert(warnings.length <= 1, `${warnings.length} lines about failed accepts:\n${flexo.output()}`);
  } finally {
    for (const conn of silent) conn.close();
    await flexo.stop();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("main.ts counts the connections refused at max_connections in /status", async () => {
  const work = await Deno.makeTempDir({ prefix: "flexo-limits-" });
  // A mirror that takes the request and answers nothing until the test lets it go: the one slot stays answering.
  const mirror = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const asked = Promise.withResolvers<void>();
  const accepting = (async () => {
    for await (const conn of mirror) {
      held.push(conn);
      await conn.read(new Uint8Array(4096)).catch(() => null);
      asked.resolve();
    }
  })();
  const flexo = await startFlexo(
    await configIn(
      work,
      `max_connections = 1\nmirrors_predefined = ["http://127.0.0.1:${mirror.addr.port}/"]`,
    ),
  );
  try {
    await withinMs(
      (async () => {
        const slow = ask(flexo.port, "/core/os/x86_64/held-1.0-1-x86_64.pkg.tar.zst");
        await asked.promise;
        assertEquals(await ask(flexo.port, "/status"), "", "refused at once: the one slot is answering");
        for (const conn of held.splice(0)) conn.close();
        assert((await slow).startsWith("HTTP/1.1 5"), "the held request ends with an error");
        const status = await ask(flexo.port, "/status");
        const report = JSON.parse(status.slice(status.indexOf("\r\n\r\n") + 4));
        assertEquals(report.connections, { refused: 1 });
      })(),
      30_000,
      "the test did not finish within 30 s",
    );
  } finally {
    for (const conn of held) conn.close();
    mirror.close();
    await accepting.catch(() => {});
    await flexo.stop();
    await Deno.remove(work, { recursive: true });
  }
});
