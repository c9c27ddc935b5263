/**
 * Sending cached files to clients with the kernel's `sendfile(2)` instead of through JavaScript.
 *
 * Deno has no sendfile: streaming a file through it reads 64 KiB at a time on a worker thread and writes each
 * piece to the socket, which costs about four times nginx's CPU per byte. flexo's own HTTP/1.1 connection layer
 * (see {@linkcode ./http1_connection.ts}) hands file responses to {@linkcode FileSender.send}: it writes the
 * response head and lets the kernel copy the file from the page cache into the client's socket; the connection
 * then stays open for the client's next request.
 *
 * Deno does not say which descriptor a connection has, so {@linkcode FileSender.findSocket} finds it once per
 * connection by its addresses, and remembers the socket's cookie (`SO_COOKIE`, unique per socket until reboot).
 * The cookie is checked before the first write and after every wait (nothing else runs on this thread in
 * between), so a number reused by a new connection after the client went away is never written to. When
 * anything is off before the head is sent (no permission, file changed, socket not found) the caller sends the
 * app's own response as usual.
 *
 * When the client's socket is full, the send writes the next piece of the file with the connection's own
 * `write()`, which waits in Deno's event loop until the client takes bytes again; then sendfile goes on. (An
 * earlier version waited in `poll(2)` on a worker thread: the hand-offs between threads cost more CPU than the
 * copy that this wait makes.)
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { FileBody, GrowingFile } from "../http/file_body.ts";
import {
  addressBytes,
  errno,
  LIBC_PATHS,
  type LibcSymbols,
  LINUX,
  openFilesLimit,
  openLibc,
  parseSockaddr,
} from "./libc.ts";
import { describeError } from "../logging.ts";

const log = getLogger(["flexo", "server"]);
const ENCODER = new TextEncoder();

/**
 * At most this many bytes per `sendfile` call. The kernel copies no more than the socket's free buffer space per
 * call (a few MiB on Linux's defaults), so one client holds the event loop only briefly; the cap bounds a call on
 * a socket with an unusually large buffer. (A 4 MiB cap measured slower than letting the buffer decide.)
 */
const MAX_CALL_BYTES = 16 * 1024 * 1024;

/** Descriptors at or above this are never searched for a connection's socket, whatever the process's limit. */
export const FD_SCAN_LIMIT = 1 << 20;

/** After this many connections in a row whose socket was not found, the sender stops looking. */
export const MISSES_BEFORE_DISABLED = 3;

/** Bytes written through the connection while waiting for a full socket to take more. */
const WAIT_WRITE_BYTES = 16 * 1024;

/** At most this many buffers for those writes are kept for the next sends. */
const MAX_SPARE_BUFFERS = 64;

/** A client connection, its socket descriptor, and the cookie of the socket that descriptor stood for when found. */
export interface ClientSocket {
  conn: Deno.Conn;
  fd: number;
  cookie: bigint;
}

/** How a send went: nothing written (the caller answers as usual), all sent, or broken off after the head. */
export type SendOutcome = { outcome: "not_started"; reason: string } | { outcome: "sent" } | {
  outcome: "failed";
  reason: string;
  /** Body bytes that went out before the send broke off. */
  bytes: number;
};

/** Sends files to client sockets with sendfile(2). */
export class FileSender {
  #libc: LibcSymbols;
  #active = 0;
  #sent = 0;
  #missesInARow = 0;
  #fdLimit: number;
  #spare: Uint8Array[] = [];

  /** Wraps a loaded libc; see {@linkcode openFileSender}. */
  constructor(libc: LibcSymbols) {
    this.#libc = libc;
    this.#fdLimit = Math.min(openFilesLimit(libc) ?? 65_536, FD_SCAN_LIMIT);
  }

  /** Responses being sent right now. */
  get active(): number {
    return this.#active;
  }

  /** Responses sent whole so far. */
  get sent(): number {
    return this.#sent;
  }

  /**
   * True once {@linkcode FileSender.findSocket} has failed for {@linkcode MISSES_BEFORE_DISABLED} connections in
   * a row: then this Deno keeps its sockets where they cannot be found, and searching again only costs time.
   */
  get disabled(): boolean {
    return this.#missesInARow >= MISSES_BEFORE_DISABLED;
  }

  /**
   * The socket of `conn`: the descriptor whose peer and local addresses are the connection's. Deno does not say
   * which descriptor a connection has, and reading /proc/self/fd needs all permissions, so the descriptors from
   * 3 up to the process's limit of open files are asked in turn (one cheap call each, about 0.3 us; the kernel
   * hands out the lowest free numbers, so a connection's is rarely far). Undefined when none matches: the
   * connection is served by Deno alone.
   */
  findSocket(conn: Deno.Conn): ClientSocket | undefined {
    const remote = conn.remoteAddr as Deno.NetAddr;
    const local = conn.localAddr as Deno.NetAddr;
    const remoteBytes = addressBytes(remote.hostname);
    const localBytes = addressBytes(local.hostname);
    if (remoteBytes === undefined || localBytes === undefined) return undefined;
    for (let fd = 3; fd < this.#fdLimit; fd++) {
      const peer = this.#address(fd, "peer");
      if (peer?.port !== remote.port || !sameBytes(peer.address, remoteBytes)) continue;
      const own = this.#address(fd, "own");
      if (own?.port !== local.port || !sameBytes(own.address, localBytes)) continue;
      const cookie = this.#cookie(fd);
      if (cookie === undefined) continue;
      this.#missesInARow = 0;
      return { conn, fd, cookie };
    }
    if (++this.#missesInARow === MISSES_BEFORE_DISABLED) {
      log.warn("sendfile is off: the sockets of {count} connections in a row were not found", {
        count: MISSES_BEFORE_DISABLED,
      });
    }
    return undefined;
  }

  /**
   * Writes `head` and then `range` of the file to `socket`, waiting while the client's side is full (and, for a
   * growing file, while the download has not written the next bytes). While the socket is full, the next piece
   * goes through `write` (by default the connection's own `write()`), which waits for the client: a client that
   * takes nothing is the caller's to cut off (closing the connection makes the write fail, and the send with
   * it). The connection stays open after the last byte (for a growing file sent to its end, once the download
   * has completed); when the send breaks off after the head, both sides of the socket are shut so that the
   * client sees the response cut short, and the caller closes the connection.
   */
  async send(
    socket: ClientSocket,
    head: Uint8Array,
    options: { range: FileBody; write?: (bytes: Uint8Array) => Promise<number>; onCommitted?: () => void },
  ): Promise<SendOutcome> {
    const libc = this.#libc;
    const { range } = options;
    const growing = range.growing;
    const paths = [range.path, ...(growing?.alternatives ?? [])];
    let fileFd = -1;
    for (const path of paths) {
      fileFd = libc.open(ENCODER.encode(path + "\0"), LINUX.O_RDONLY_CLOEXEC);
      if (fileFd >= 0) break;
    }
    if (fileFd < 0) return { outcome: "not_started", reason: `cannot open ${paths.join(" or ")}` };
    this.#active++;
    let written = 0;
    // A buffer for the pieces written while waiting: taken from the spares at the first wait, given back after.
    let waitBuffer: Uint8Array | undefined;
    try {
      const size = Number(libc.lseek(fileFd, 0n, LINUX.SEEK_END));
      // sendfile reads at its own offset; the position stays at 0 so that /proc shows no reading ahead.
      libc.lseek(fileFd, 0n, LINUX.SEEK_SET);
      if (growing === undefined && size !== range.size) {
        return { outcome: "not_started", reason: `${range.path} is now ${size} bytes, not ${range.size}` };
      }
      const total = head.length + range.length;
      const offset = new BigInt64Array([BigInt(range.start)]);
      const offsetBytes = new Uint8Array(offset.buffer);
      const write = options.write ?? ((bytes: Uint8Array) => socket.conn.write(bytes));
      // The head waits in the kernel for the file's first bytes (one packet) when those are there to send now; a
      // head whose body must wait for a download goes out alone (at once: client sockets have TCP_NODELAY).
      const bodyReady = range.length > 0 && (growing === undefined || this.#sendable(range, growing) > 0);
      const headFlags = bodyReady ? LINUX.MSG_NOSIGNAL | LINUX.MSG_MORE : LINUX.MSG_NOSIGNAL;
      // Checked before the first write and after every wait: between two waits nothing else runs on this thread,
      // so Deno cannot close the socket (and a new connection take its number) in between.
      let mustCheck = true;
      while (written < total) {
        if (mustCheck && !this.#isStill(socket)) {
          return written === 0
            ? { outcome: "not_started", reason: "the client's connection is gone" }
            : { outcome: "failed", reason: "the client's connection is gone", bytes: written - head.length };
        }
        mustCheck = false;
        const inHead = written < head.length;
        let count = head.length - written;
        if (!inHead) {
          const sent = written - head.length;
          count = Math.min(MAX_CALL_BYTES, (growing ? this.#sendable(range, growing) : range.length) - sent);
          if (count <= 0) {
            // Only a growing file runs dry: wait for the download, which is no stall of the client.
            const state = growing!.outcome();
            if (state !== "running") {
              return this.#breakOff(
                socket,
                written - head.length,
                state === "complete" ? `the download ended before byte ${range.start + sent}` : state.failed,
              );
            }
            await growing!.changed();
            mustCheck = true;
            continue;
          }
        }
        // A client that went away makes these fail with EPIPE; sendfile has no MSG_NOSIGNAL, but Deno (a Rust
        // program) ignores SIGPIPE, so that is an error code here, never a signal (see sendfile_test.ts).
        const result = inHead
          ? Number(libc.send(socket.fd, head.subarray(written), BigInt(count), headFlags))
          : Number(libc.sendfile(socket.fd, fileFd, offsetBytes, BigInt(count)));
        const code = result < 0 ? errno(libc) : 0;
        if (result > 0) {
          if (written === 0) options.onCommitted?.();
          written += result;
          if (!inHead) growing?.onBytes?.(result);
          continue;
        }
        if (result === 0 && !inHead) {
          return this.#breakOff(socket, written - head.length, `${range.path} ended early`);
        }
        if (result < 0 && code === LINUX.EINTR) continue;
        if (result < 0 && code !== LINUX.EAGAIN) {
          return written === 0
            ? { outcome: "not_started", reason: `cannot write to the client (errno ${code})` }
            : this.#breakOff(socket, written - head.length, `the client went away (errno ${code})`);
        }
        // The socket is full: the next bytes go through the connection, whose write waits for the client.
        let piece: Uint8Array;
        if (inHead) {
          piece = head.subarray(written);
        } else {
          waitBuffer ??= this.#spare.pop() ?? new Uint8Array(WAIT_WRITE_BYTES);
          const read = Number(
            libc.pread(fileFd, waitBuffer, BigInt(Math.min(count, waitBuffer.length)), offset[0]),
          );
          if (read <= 0) {
            return this.#breakOff(
              socket,
              written - head.length,
              `${range.path} could not be read at ${offset[0]}`,
            );
          }
          piece = waitBuffer.subarray(0, read);
        }
        let took: number;
        try {
          took = await write(piece);
        } catch (error) {
          return this.#breakOff(
            socket,
            written - head.length,
            `the client went away (${(error as Error).message ?? error})`,
          );
        }
        if (took <= 0) {
          return this.#breakOff(socket, written - head.length, "the client's connection is closed");
        }
        if (written === 0) options.onCommitted?.();
        written += took;
        if (!inHead) {
          offset[0] += BigInt(took);
          growing?.onBytes?.(took);
        }
        mustCheck = true;
      }
      this.#sent++;
      return { outcome: "sent" };
    } catch (error) {
      const reason = describeError(error);
      return written === 0
        ? { outcome: "not_started", reason }
        : this.#breakOff(socket, written - head.length, reason);
    } finally {
      this.#active--;
      libc.close(fileFd);
      // Its last write has ended (resolved or failed), so Deno holds no reference to it any more.
      if (waitBuffer !== undefined && this.#spare.length < MAX_SPARE_BUFFERS) this.#spare.push(waitBuffer);
    }
  }

  /** How many bytes of `range` may go out now: as many as the download releases (see GrowingFile). */
  #sendable(range: FileBody, growing: GrowingFile): number {
    return Math.min(growing.releasable() - range.start, range.length);
  }

  /** Shuts both sides of `socket` (if it is still that socket) so the client sees the response cut short. */
  #breakOff(socket: ClientSocket, written: number, reason: string): SendOutcome {
    if (this.#isStill(socket)) this.#libc.shutdown(socket.fd, LINUX.SHUT_RDWR);
    return { outcome: "failed", reason, bytes: Math.max(0, written) };
  }

  #isStill(socket: ClientSocket): boolean {
    return this.#cookie(socket.fd) === socket.cookie;
  }

  // Scratch memory for the synchronous calls below: they run on this thread one at a time, so one set serves
  // them all, and the many calls of a send make no garbage.
  #cookieValue = new BigUint64Array(1);
  #cookieBytes = new Uint8Array(this.#cookieValue.buffer);
  #lengthValue = new Uint32Array(1);
  #lengthBytes = new Uint8Array(this.#lengthValue.buffer);
  #sockaddr = new Uint8Array(128);

  #cookie(fd: number): bigint | undefined {
    this.#lengthValue[0] = 8;
    const failed = this.#libc.getsockopt(
      fd,
      LINUX.SOL_SOCKET,
      LINUX.SO_COOKIE,
      this.#cookieBytes,
      this.#lengthBytes,
    );
    return failed === 0 ? this.#cookieValue[0] : undefined;
  }

  #address(fd: number, which: "peer" | "own") {
    this.#lengthValue[0] = this.#sockaddr.length;
    const call = which === "peer" ? this.#libc.getpeername : this.#libc.getsockname;
    if (call(fd, this.#sockaddr, this.#lengthBytes) !== 0) return undefined;
    return parseSockaddr(this.#sockaddr);
  }
}

/** A sender, or why this process cannot send files with sendfile. */
export type FileSenderResult = { ok: true; sender: FileSender } | { ok: false; reason: string };

/** Loads libc (see {@linkcode openLibc}) and makes a sender with it. */
export function openFileSender(options: { libcPaths?: readonly string[] } = {}): FileSenderResult {
  const loaded = openLibc(options.libcPaths ?? LIBC_PATHS);
  if (!loaded.ok) return loaded;
  return { ok: true, sender: new FileSender(loaded.libc) };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
