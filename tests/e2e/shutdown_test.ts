/**
 * Graceful shutdown of the real `flexo` process: SIGTERM during a download stops it within the grace period
 * and leaves the partial file and its record under `.partial/`, so the next start resumes with a Range request.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { testBytes } from "../helpers/fake_fetch.ts";
import { waitFor } from "../helpers/wait.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const PKG = "extra/os/x86_64/slow-1-1-any.pkg.tar.zst";
const SIZE = 4 * 1024 * 1024;
/** main.ts waits this long for running transfers after SIGTERM. */
const GRACE_MS = 10_000;

/** A mirror on 127.0.0.1 that honours `Range: bytes=N-` and sends slowly while `slow` is set. */
function startMirror(data: Uint8Array) {
  const state = { slow: true, ranges: [] as (string | null)[] };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    state.ranges.push(req.headers.get("range"));
    const start = Number(req.headers.get("range")?.match(/^bytes=(\d+)-$/)?.[1] ?? 0);
    const body = data.subarray(start);
    const slow = state.slow;
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent >= body.byteLength) return controller.close();
        // Slowly: the first 256 KiB at once, then 32 KiB every 100 ms (about 40 s for the rest).
        const chunk = slow ? (sent === 0 ? 256 * 1024 : 32 * 1024) : body.byteLength;
        if (slow && sent > 0) await new Promise((resolve) => setTimeout(resolve, 100));
        controller.enqueue(body.slice(sent, sent + chunk));
        sent += chunk;
      },
    });
    const headers = new Headers({
      "content-length": String(body.byteLength),
      "last-modified": "Tue, 14 Nov 2023 22:13:20 GMT",
    });
    if (start > 0) headers.set("content-range", `bytes ${start}-${data.byteLength - 1}/${data.byteLength}`);
    return new Response(stream, { status: start > 0 ? 206 : 200, headers });
  });
  return { server, state, url: `http://127.0.0.1:${server.addr.port}/` };
}

/** Starts `deno run main.ts` and waits for the address it listens on. */
async function startFlexo(configPath: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, "--config", configPath, "--port", "0"],
    stdout: "null",
    stderr: "piped",
    env: { FLEXO_LOG: "info" },
  }).spawn();
  const log: string[] = [];
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let port: number | undefined;
  let buffered = "";
  const deadline = Date.now() + 30_000;
  while (port === undefined && Date.now() < deadline) {
    const { value, done } = await lines.read();
    if (done) break;
    buffered += value;
    log.push(value);
    port = Number(buffered.match(/Listening on http:\/\/127\.0\.0\.1:(\d+)\//)?.[1]) || undefined;
  }
  assert(port, `flexo did not start listening:\n${log.join("")}`);
  // Keep reading so the child never blocks on a full pipe.
  const drained = (async () => {
    for (;;) {
      const { value, done } = await lines.read();
      if (done) return;
      log.push(value);
    }
  })();
  return { child, port, log, drained };
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

Deno.test("SIGTERM during a download stops flexo within the grace period and the next start resumes it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flexo-shutdown-" });
  const data = testBytes(SIZE, 11);
  const mirror = startMirror(data);
  const cache = join(dir, "cache");
  const configPath = join(dir, "flexo.toml");
  await Deno.writeTextFile(
    configPath,
    [
      `cache_directory = "${cache}"`,
      `mirrorlist_fallback_file = "${join(dir, "state/mirrorlist")}"`,
      `mirrorlist_latency_test_results_file = "${join(dir, "state/latency.json")}"`,
      `listen_ip_address = "127.0.0.1"`,
      `mirror_selection_method = "predefined"`,
      `mirrors_predefined = ["${mirror.url}"]`,
      // This test is about the grace for running transfers; drain_test.ts covers the drain before it.
      "shutdown_drain_secs = 0",
    ].join("\n") + "\n",
  );
  const partial = join(cache, ".partial", PKG);
  let first: Awaited<ReturnType<typeof startFlexo>> | undefined;
  let second: Awaited<ReturnType<typeof startFlexo>> | undefined;
  try {
    first = await startFlexo(configPath);
    const client = await fetch(`http://127.0.0.1:${first.port}/${PKG}`);
    assertEquals(client.status, 200);
    const reading = client.arrayBuffer().then(() => "complete", () => "cut off");
    // flexo runs in another process: its partial file is polled, there is nothing to await.
    await waitFor(
      "256 KiB of the download on disk",
      async () => (await sizeOf(partial)) >= 256 * 1024,
      5_000,
    );
    assert((await sizeOf(partial)) >= 256 * 1024, "the download should have started");

    const stopAt = Date.now();
    first.child.kill("SIGTERM");
    const status = await first.child.status;
    const stoppedAfter = Date.now() - stopAt;
    await first.drained;
    const firstLog = first.log.join("");
    first = undefined;
    assertEquals(status.code, 0, firstLog);
    assert(stoppedAfter < GRACE_MS + 3_000, `stopped after ${stoppedAfter} ms, grace is ${GRACE_MS} ms`);
    assert(firstLog.includes("SIGTERM received"), firstLog);
    assertEquals(await reading, "cut off", "the client was still downloading when the grace period ended");

    const kept = await sizeOf(partial);
    assert(kept > 0 && kept < SIZE, `a partial file should remain: ${kept} of ${SIZE} bytes`);
    const meta = JSON.parse(await Deno.readTextFile(`${partial}.meta.json`));
    assertEquals(meta.total, SIZE);
    assertEquals(await sizeOf(join(cache, PKG)), 0, "nothing partial is ever in the cache proper");

    mirror.state.slow = false;
    mirror.state.ranges.length = 0;
    second = await startFlexo(configPath);
    const again = await fetch(`http://127.0.0.1:${second.port}/${PKG}`);
    assertEquals(again.status, 200);
    const body = new Uint8Array(await again.arrayBuffer());
    assertEquals(body, data);
    assertEquals(mirror.state.ranges, [`bytes=${kept}-`], "the restart asks only for the missing bytes");
    // The client has every byte as soon as it is on disk; the commit into the cache follows a moment later.
    // In another process too: polled.
    await waitFor(
      "the file committed into the cache",
      async () => (await sizeOf(join(cache, PKG))) === SIZE,
      5_000,
    );
    assertEquals(await sizeOf(join(cache, PKG)), SIZE);

    // With nothing running, SIGTERM stops at once.
    const idleStopAt = Date.now();
    second.child.kill("SIGTERM");
    assertEquals((await second.child.status).code, 0);
    assert(Date.now() - idleStopAt < 3_000, "an idle flexo should stop at once");
    await second.drained;
    second = undefined;
  } finally {
    for (const running of [first, second]) {
      if (!running) continue;
      try {
        running.child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await running.child.status;
      await running.drained;
    }
    await mirror.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
