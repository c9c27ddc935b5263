/**
 * Sending the fake mirror's answers on a raw TCP connection, with the body faults a rule asks for: throttled,
 * stalled or dropped after some bytes, corrupted, or delimited by closing the connection.
 *
 * @module
 */

import type { FaultOptions } from "./fake_mirror.ts";
import type { MirrorResponse } from "./fake_mirror_answers.ts";
import { writeAll } from "../../src/write_all.ts";

const encoder = new TextEncoder();
const BODY_CHUNK = 64 * 1024;
/** Reason phrases; clients ignore them, so other statuses just say "Status". */
const REASONS: Record<number, string> = {
  200: "OK",
  206: "Partial Content",
  302: "Found",
  304: "Not Modified",
};

/** Sends a response with the rule's body faults; false when the connection must not be reused. */
export async function send(
  conn: Deno.TcpConn,
  response: MirrorResponse,
  options: { headOnly: boolean; rule: FaultOptions; keepAlive: boolean; signal: AbortSignal },
): Promise<boolean> {
  const { headOnly, rule, keepAlive, signal } = options;
  const body = response.body;
  const length = body?.length ?? 0;
  const headers: Record<string, string> = {
    date: new Date().toUTCString(),
    server: "flexo-fake-mirror",
    ...response.headers,
    ...rule.headers,
    connection: keepAlive ? "keep-alive" : "close",
  };
  if (!rule.omitContentLength && response.status !== 304) headers["content-length"] = String(length);
  const head = `HTTP/1.1 ${response.status} ${REASONS[response.status] ?? "Status"}\r\n` +
    Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("") + "\r\n";
  await writeAll(conn, encoder.encode(head));
  if (headOnly || body === undefined) return true;

  const limit = rule.stallAfterBytes ?? rule.dropAfterBytes;
  const flips = corruptionOffsets(length, rule.corruptBytes ?? 0);
  const started = Date.now();
  let sent = 0;
  for await (const original of bodyChunks(body, rule.bytesPerSecond)) {
    let chunk = original;
    if (flips.length > 0) chunk = corrupt(chunk, sent, flips);
    if (limit !== undefined && sent + chunk.length >= limit) {
      await writeAll(conn, chunk.subarray(0, limit - sent));
      sent = limit;
      break;
    }
    if (rule.bytesPerSecond) {
      await sleep(started + (sent / rule.bytesPerSecond) * 1000 - Date.now(), signal);
    }
    await writeAll(conn, chunk);
    sent += chunk.length;
  }
  if (limit === undefined || sent < limit) return true;
  if (rule.stallAfterBytes !== undefined) await waitUntilClientGivesUp(conn, signal);
  return false;
}

async function* bodyChunks(
  body: NonNullable<MirrorResponse["body"]>,
  bytesPerSecond: number | undefined,
): AsyncGenerator<Uint8Array> {
  const chunkSize = bytesPerSecond
    ? Math.max(1, Math.min(BODY_CHUNK, Math.floor(bytesPerSecond / 20)))
    : BODY_CHUNK;
  if (body instanceof Uint8Array) {
    for (let offset = 0; offset < body.length; offset += chunkSize) {
      yield body.subarray(offset, offset + chunkSize);
    }
    return;
  }
  const file = await Deno.open(body.file, { read: true });
  try {
    await file.seek(body.start, Deno.SeekMode.Start);
    let remaining = body.length;
    while (remaining > 0) {
      const buffer = new Uint8Array(Math.min(chunkSize, remaining));
      const n = await file.read(buffer);
      if (n === null) throw new Error(`${body.file} became shorter while it was being sent`);
      remaining -= n;
      yield buffer.subarray(0, n);
    }
  } finally {
    file.close();
  }
}

function corruptionOffsets(length: number, count: number): number[] {
  const n = Math.min(count, length);
  return Array.from({ length: n }, (_, i) => Math.floor(((i + 0.5) * length) / n));
}

function corrupt(chunk: Uint8Array, chunkOffset: number, flips: number[]): Uint8Array {
  const copy = chunk.slice();
  for (const offset of flips) {
    const index = offset - chunkOffset;
    if (index >= 0 && index < copy.length) copy[index] ^= 0xff;
  }
  return copy;
}

/** Resolves when the client closes its side or the mirror closes. */
async function waitUntilClientGivesUp(conn: Deno.TcpConn, signal: AbortSignal): Promise<void> {
  const buffer = new Uint8Array(1024);
  const eof = (async () => {
    try {
      while ((await conn.read(buffer)) !== null) {
        // discard whatever the client still sends
      }
    } catch {
      // reset or closed by close()
    }
  })();
  await Promise.race([eof, abortPromise(signal)]);
}

function abortPromise(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

/** Waits `ms` milliseconds, or less when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
