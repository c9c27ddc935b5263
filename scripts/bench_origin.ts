/**
 * The benchmark's upstream mirror: serves the files below a directory over HTTP on 127.0.0.1, waits a fixed
 * latency before every answer, paces every response body to a rate (per response, so per connection), and
 * counts the requests per path so that the benchmark can tell how often a proxy went upstream.
 *
 * Run it as its own process (so that it does not share an event loop with the clients that measure):
 *
 * ```
 * deno run --allow-net --allow-read scripts/bench_origin.ts --root DIR [--latency-ms 50] [--rate 20000000]
 * ```
 *
 * It prints one line of JSON, `{"port":N}`, once it listens. `GET /__stats` answers
 * `{"requests":{"/path":count,...}}` (GET and HEAD requests for files, not counting itself).
 *
 * @module
 */

import { join, normalize, sep } from "node:path";
import { parseArgs } from "node:util";

/** How the origin behaves. */
export interface OriginOptions {
  /** Milliseconds to wait before sending the headers of any answer. */
  latencyMs: number;
  /** Bytes per second for each response body; 0 for no limit. */
  bytesPerSecond: number;
  /** Port to listen on; 0 for any free one. */
  port?: number;
}

/** A running origin. */
export interface RunningOrigin {
  /** The port it listens on (127.0.0.1). */
  port: number;
  /** Requests per decoded path. */
  requests: Map<string, number>;
  /** Stops listening and ends running responses. */
  close(): Promise<void>;
}

/** Bytes per body chunk: small enough that pacing is smooth at 20 MB/s (about 300 chunks per second). */
const CHUNK = 64 * 1024;

/** Starts an origin serving the files below `root`. */
export function startOrigin(root: string, options: OriginOptions): RunningOrigin {
  const requests = new Map<string, number>();
  const base = normalize(root);
  const abort = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: options.port ?? 0, signal: abort.signal, onListen() {} },
    async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (path === "/__stats") {
        return Response.json({ requests: Object.fromEntries(requests) });
      }
      if (req.method !== "GET" && req.method !== "HEAD") {
        return new Response("Only GET and HEAD\n", { status: 405 });
      }
      requests.set(path, (requests.get(path) ?? 0) + 1);
      if (options.latencyMs > 0) await sleep(options.latencyMs);
      const file = normalize(join(base, path));
      if (!file.startsWith(base + sep)) return new Response("Outside the root\n", { status: 403 });
      let info: Deno.FileInfo;
      try {
        info = await Deno.stat(file);
      } catch {
        return new Response("Not found\n", { status: 404 });
      }
      if (!info.isFile) return new Response("Not found\n", { status: 404 });
      const headers = new Headers({
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "Last-Modified": (info.mtime ?? new Date(0)).toUTCString(),
      });
      let start = 0;
      let end = info.size - 1;
      let status = 200;
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.get("range") ?? "");
      if (range) {
        start = Number(range[1]);
        end = range[2] === "" ? end : Math.min(end, Number(range[2]));
        if (start > end) {
          headers.set("Content-Range", `bytes */${info.size}`);
          return new Response(null, { status: 416, headers });
        }
        status = 206;
        headers.set("Content-Range", `bytes ${start}-${end}/${info.size}`);
      }
      headers.set("Content-Length", String(end - start + 1));
      if (req.method === "HEAD") return new Response(null, { status, headers });
      if (options.bytesPerSecond === 0 && status === 200) {
        // Unpaced, the whole file: the runtime copies it to the socket without the bytes passing through
        // JavaScript, as fast as a real mirror's static file server and about as cheap on the CPU.
        const whole = await Deno.open(file, { read: true });
        return new Response(whole.readable, { status, headers });
      }
      return new Response(pacedBody(file, { start, end, bytesPerSecond: options.bytesPerSecond }), {
        status,
        headers,
      });
    },
  );
  return {
    port: server.addr.port,
    requests,
    async close() {
      abort.abort();
      await server.finished;
    },
  };
}

/** The bytes `start..end` (inclusive) of a file, no faster than `bytesPerSecond` on average. */
function pacedBody(
  path: string,
  options: { start: number; end: number; bytesPerSecond: number },
): ReadableStream<Uint8Array> {
  let file: Deno.FsFile | undefined;
  let position = options.start;
  let sent = 0;
  let began = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (file === undefined) {
        file = await Deno.open(path, { read: true });
        await file.seek(position, Deno.SeekMode.Start);
        began = performance.now();
      }
      if (position > options.end) {
        file.close();
        controller.close();
        return;
      }
      if (options.bytesPerSecond > 0) {
        const due = began + (sent * 1000) / options.bytesPerSecond;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
      }
      const buffer = new Uint8Array(Math.min(CHUNK, options.end - position + 1));
      const read = await file.read(buffer);
      if (read === null || read === 0) {
        file.close();
        controller.error(new Error(`${path} is shorter than its size said`));
        return;
      }
      position += read;
      sent += read;
      controller.enqueue(buffer.subarray(0, read));
    },
    cancel() {
      file?.close();
    },
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      root: { type: "string" },
      "latency-ms": { type: "string", default: "50" },
      rate: { type: "string", default: "20000000" },
      port: { type: "string", default: "0" },
    },
  });
  if (!values.root) {
    console.error("bench_origin: --root DIR is required (the directory whose files it serves)");
    Deno.exit(2);
  }
  const origin = startOrigin(values.root, {
    latencyMs: Number(values["latency-ms"]),
    bytesPerSecond: Number(values.rate),
    port: Number(values.port),
  });
  console.log(JSON.stringify({ port: origin.port }));
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
}
