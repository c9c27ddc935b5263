/**
 * Reading what a connection's socket holds now through libc (`libcSocketReads`), for the upstream client: the
 * bytes that are there, nothing (undefined) when none are, the end of the connection, and no read once the
 * connection is closed.
 */

import { LIBC_PATHS, openLibc } from "../../src/server/libc.ts";
import { libcSocketReads } from "../../src/server/socket_reads.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { waitFor } from "../helpers/wait.ts";

const encoder = new TextEncoder();

/** A connected pair: `near` (read through libc) and `far` (its peer). */
async function pair(): Promise<{ near: Deno.TcpConn; far: Deno.TcpConn; close: () => void }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [near, far] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  listener.close();
  return {
    near,
    far,
    close: () => {
      for (const conn of [near, far]) {
        try {
          conn.close();
        } catch {
          // closed already
        }
      }
    },
  };
}

Deno.test("libcSocketReads() reads the bytes a socket holds now, undefined when it holds none, 0 at its end", async () => {
  const loaded = openLibc(LIBC_PATHS);
  if (!loaded.ok) throw new Error(loaded.reason);
  const { near, far, close } = await pair();
  try {
    const reads = libcSocketReads(loaded.libc)(near);
    assert(reads !== undefined, "the socket is found");
    const view = new Uint8Array(16);
    assertEquals(reads.readNow(view), undefined, "nothing there yet");
    await far.write(encoder.encode("hello"));
    let read: number | undefined;
    await waitFor("the bytes in the socket", () => (read = reads.readNow(view)) !== undefined);
    assertEquals([read, new TextDecoder().decode(view.subarray(0, read))], [5, "hello"]);
    assertEquals(reads.readNow(view), undefined, "taken: nothing there any more");
    far.close();
    await waitFor("the end of the connection", () => (read = reads.readNow(view)) !== undefined);
    assertEquals(read, 0);
  } finally {
    close();
  }
});

Deno.test("libcSocketReads() reads nothing from a connection closed since, whatever socket takes its descriptor", async () => {
  const loaded = openLibc(LIBC_PATHS);
  if (!loaded.ok) throw new Error(loaded.reason);
  const first = await pair();
  const reads = libcSocketReads(loaded.libc)(first.near);
  assert(reads !== undefined);
  first.close();
  // A new connection, likely on the same descriptor numbers, with bytes waiting.
  const second = await pair();
  try {
    await second.far.write(encoder.encode("not yours"));
    await new Promise((resolve) => setTimeout(resolve, 20));
    assertEquals(reads.readNow(new Uint8Array(16)), undefined);
    const view = new Uint8Array(16);
    assertEquals(await second.near.read(view), 9, "the bytes stay for their own connection");
  } finally {
    second.close();
  }
});
