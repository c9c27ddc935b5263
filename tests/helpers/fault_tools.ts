/**
 * Tools for fault tests: a tmpfs to fill up (root only), a raw TCP server that answers whatever a test wants,
 * HTTP or not, and whether a command (strace) is installed.
 *
 * @module
 */

import { closeQuietly } from "../../src/close_quietly.ts";

const encoder = new TextEncoder();

/** Whether the command `name` is installed (on the PATH), for a test that skips without it. */
export async function hasCommand(name: string): Promise<boolean> {
  try {
    return (await new Deno.Command("which", { args: [name], stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

/** Mounts a tmpfs of `size` at `dir`; false (and a message) when this machine does not allow it. */
export async function mountTmpfs(dir: string, size: string): Promise<boolean> {
  const result = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir],
    stdout: "null",
    stderr: "piped",
  }).output().catch((error) => ({ success: false, stderr: encoder.encode(String(error)) }));
  if (!result.success) {
    console.log(`skipped: cannot mount a tmpfs here (${new TextDecoder().decode(result.stderr).trim()})`);
  }
  return result.success;
}

/** Writes `path` until the file system is full. */
export async function fillUp(path: string): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true });
  try {
    while (true) await file.write(new Uint8Array(64 * 1024));
  } catch (error) {
    if ((error as { code?: string }).code !== "ENOSPC") throw error;
  } finally {
    file.close();
  }
}

/** Unmounts `dir`. */
export async function umount(dir: string): Promise<void> {
  await new Deno.Command("umount", { args: [dir], stdout: "null", stderr: "null" }).output();
}

/** A TCP server that answers every connection with `answer(conn)`; counts connections. */
export async function startRawServer(
  answer: (conn: Deno.TcpConn) => Promise<void>,
): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.TcpConn>();
  let count = 0;
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        count++;
        open.add(conn);
        answer(conn).catch(() => {}).finally(() => {
          open.delete(conn);
          closeQuietly(conn);
        });
      }
    } catch {
      // closed
    }
  })();
  return await Promise.resolve({
    port: listener.addr.port,
    connections: () => count,
    async close() {
      listener.close();
      for (const conn of open) closeQuietly(conn);
      await loop;
    },
  });
}

/** Reads until the end of a request head (or 64 KiB, or the end of the connection). */
export async function readHead(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(65536);
  let text = "";
  while (!text.includes("\r\n\r\n") && text.length < 65536) {
    const n = await conn.read(buffer);
    if (n === null) break;
    text += new TextDecoder().decode(buffer.subarray(0, n));
  }
  return text;
}
