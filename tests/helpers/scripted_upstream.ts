/**
 * A raw server that scripts every byte of its answers, and a client to mirrors that never hands a request to the
 * runtime's fetch: for the tests of flexo's HTTP/1.1 client (`src/upstream/`).
 *
 * @module
 */

import { readHead, startRawServer } from "./fault_tools.ts";
import { createUpstreamClient, type UpstreamClient } from "../../src/upstream/upstream_fetch.ts";

const encoder = new TextEncoder();

/** A raw server answering every request on a connection with `answer(head, index)` (bytes or text). */
export async function scripted(
  answer: (
    head: string,
    index: number,
    conn: Deno.TcpConn,
  ) => string | Uint8Array | Promise<string | Uint8Array>,
  options: { closeAfter?: number } = {},
) {
  const heads: string[] = [];
  const server = await startRawServer(async (conn) => {
    for (let served = 0; options.closeAfter === undefined || served < options.closeAfter; served++) {
      const head = await readHead(conn);
      if (head === "") return;
      heads.push(head);
      const bytes = await answer(head, heads.length - 1, conn);
      await conn.write(typeof bytes === "string" ? encoder.encode(bytes) : bytes);
    }
  });
  return { ...server, heads, url: `http://127.0.0.1:${server.port}` };
}

/** A client that never hands requests to the runtime's fetch. */
export function client(options: Parameters<typeof createUpstreamClient>[0] = {}): UpstreamClient {
  return createUpstreamClient({
    proxied: false,
    fallback: () => Promise.reject(new Error("the fallback was used")),
    ...options,
  });
}
