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
 * connection by its addresses (see socket_finder.ts), and remembers the socket's cookie (`SO_COOKIE`, unique per
 * socket until reboot). The cookie is checked before the first write and after every wait (nothing else runs on
 * this thread in between), so a number reused by a new connection after the client went away is never written
 * to. When
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

import type { FileBody, GrowingFile } from "../http/file_body.ts";
import { errno, type LibcSymbols, LINUX } from "./libc.ts";
import { describeError } from "../logging.ts";
import {
  type FileReads,
  MincoreResidency,
  RecentResidency,
  type Residency,
  ThreadReads,
} from "./page_cache.ts";
import { type ClientSocket, SocketFinder } from "./socket_finder.ts";

const ENCODER = new TextEncoder();

/**
 * At most this many bytes per `sendfile` call. The kernel copies no more than the socket's free buffer space per
 * call (a few MiB on Linux's defaults), so one client holds the event loop only briefly; the cap bounds a call on
 * a socket with an unusually large buffer. (A 4 MiB cap measured slower than letting the buffer decide.)
 */
const MAX_CALL_BYTES = 16 * 1024 * 1024;

/**
 * Bytes written through the connection while waiting for a full socket to take more: only what wakes the send
 * when the client takes bytes again, so small (one buffer per send waiting, see BENCHMARKS.md "Session six").
 */
export const WAIT_WRITE_BYTES = 4 * 1024;

/** Bytes read on a thread at a time from a file whose next bytes are not in the page cache. */
const COLD_READ_BYTES = 256 * 1024;

/** At most this many buffers for those writes are kept for the next sends. */
const MAX_SPARE_BUFFERS = 64;

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
  #sockets: SocketFinder;
  #spare: Uint8Array[] = [];
  #now: () => number;
  #residency: Residency;
  #recent: RecentResidency;
  #reads: () => FileReads;

  /**
   * Wraps a loaded libc (see `openLibc` in libc.ts). `now` is the clock for the retry after a fallback and
   * for how long a look at the page cache holds (see `RecentResidency`); `residency` tells whether a complete
   * file's next bytes are in the page cache (by default `mincore`), and
   * `reads` reads those that are not on a thread (see page_cache.ts).
   */
  constructor(
    libc: LibcSymbols,
    options: { now?: () => number; residency?: Residency; reads?: () => FileReads } = {},
  ) {
    this.#libc = libc;
    this.#now = options.now ?? Date.now;
    this.#residency = options.residency ?? new MincoreResidency(libc);
    this.#recent = new RecentResidency(this.#now);
    this.#reads = options.reads ?? (() => new ThreadReads(libc));
    this.#sockets = new SocketFinder(libc, this.#now);
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
   * True while sendfile is off because sockets could not be found (see {@linkcode SocketFinder.disabled}).
   */
  get disabled(): boolean {
    return this.#sockets.disabled;
  }

  /** The socket of `conn`, or undefined: see {@linkcode SocketFinder.find}. */
  findSocket(conn: Deno.Conn): ClientSocket | undefined {
    return this.#sockets.find(conn);
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
    let openedPath = range.path;
    for (const path of paths) {
      fileFd = libc.open(ENCODER.encode(path + "\0"), LINUX.O_RDONLY_CLOEXEC);
      openedPath = path;
      if (fileFd >= 0) break;
    }
    if (fileFd < 0) return { outcome: "not_started", reason: `cannot open ${paths.join(" or ")}` };
    this.#active++;
    let written = 0;
    // A buffer for the pieces written while waiting: taken from the spares at the first wait, given back after.
    let waitBuffer: Uint8Array | undefined;
    // Reads on a thread of the bytes not in the page cache, and their buffer, made at the first such read.
    let reads: FileReads | undefined;
    let coldBuffer: Uint8Array | undefined;
    // The file's bytes before this offset were found in the page cache.
    let residentUntil = -1;
    try {
      // A complete file must still have its size; a growing one's size is the download's to tell (and two
      // seeks through the FFI, with their BigInt arguments, were 30-60 us of a cold miss's way to its client).
      if (growing === undefined) {
        const size = Number(libc.lseek(fileFd, 0n, LINUX.SEEK_END));
        // sendfile reads at its own offset; the position stays at 0 so that /proc shows no reading ahead.
        libc.lseek(fileFd, 0n, LINUX.SEEK_SET);
        if (size !== range.size) {
          return { outcome: "not_started", reason: `${range.path} is now ${size} bytes, not ${range.size}` };
        }
      }
      const total = head.length + range.length;
      const offset = new BigInt64Array([BigInt(range.start)]);
      const offsetBytes = new Uint8Array(offset.buffer);
      const write = options.write ?? ((bytes: Uint8Array) => socket.conn.write(bytes));
      // A head whose body a download has yet to write waits for its first bytes: sent alone it would wake the
      // client for nothing (on a busy machine handing it the CPU, 0.3-0.8 ms here) just before they come. Once the
      // download has ended without them, it goes out alone and the answer breaks off below.
      while (growing !== undefined && range.length > 0 && this.#sendable(range, growing) <= 0) {
        if (growing.outcome() !== "running") break;
        await growing.changed();
      }
      // The head waits in the kernel for the file's first bytes (one packet) when those are there to send now.
      const bodyReady = range.length > 0 && (growing === undefined || this.#sendable(range, growing) > 0);
      const headFlags = bodyReady ? LINUX.MSG_NOSIGNAL | LINUX.MSG_MORE : LINUX.MSG_NOSIGNAL;
      // Checked before the first write and after every wait: between two waits nothing else runs on this thread,
      // so Deno cannot close the socket (and a new connection take its number) in between.
      let mustCheck = true;
      // The last call sent less than it was given: the socket is full (a call now would fail with EAGAIN), so
      // the next piece goes through the connection's write, which waits for the client.
      let full = false;
      while (written < total) {
        if (mustCheck && !this.#sockets.isStill(socket)) {
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
            // The client may have taken bytes meanwhile: sendfile first.
            full = false;
            continue;
          }
        }
        // A complete file's bytes that are not in the page cache would hold the event loop while the disk reads
        // them: they are read on a thread instead and written through the connection (a download's bytes were
        // just written, so they are in memory).
        let cold = false;
        if (!inHead && growing === undefined) {
          // Asked once per window, not before every call (a slow client's calls each send a little), and not
          // again for bytes another send of the file found in memory a moment ago.
          const at = Number(offset[0]);
          if (at >= residentUntil) {
            let resident = this.#recent.known(openedPath, at);
            // What another send found is trusted once its first page is still there (a look at one page):
            // pages dropped since would otherwise be read by one sendfile of up to a window on this thread
            // (16 MiB from an SD card: a second).
            if (resident > 0 && this.#residency.residentBytes(fileFd, at, 1) <= 0) {
              this.#recent.forget(openedPath);
              resident = 0;
            } else if (resident <= 0) {
              resident = this.#residency.residentBytes(fileFd, at, count);
              if (resident > 0) this.#recent.note(openedPath, at, resident);
            }
            cold = resident <= 0;
            if (!cold) residentUntil = at + Math.min(resident, count);
          }
          if (!cold) count = Math.min(count, residentUntil - at);
        }
        if (!cold && !full) {
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
            // Short: the socket took all it had room for (or the file ended, which the next read finds).
            full = result < count;
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
        }
        // Bytes on disk, or the socket is full: the next go through the connection, whose write waits for the
        // client (a few KiB: what goes out this way is copied; sendfile sends the rest once the client took them).
        let piece: Uint8Array;
        if (inHead) {
          piece = head.subarray(written);
        } else if (cold) {
          reads ??= this.#reads();
          coldBuffer ??= new Uint8Array(COLD_READ_BYTES);
          let read: number;
          try {
            read = await reads.read(fileFd, Number(offset[0]), coldBuffer.subarray(0, count));
          } catch (error) {
            return this.#breakOff(socket, written - head.length, `${range.path}: ${describeError(error)}`);
          }
          if (read <= 0) return this.#breakOff(socket, written - head.length, `${range.path} ended early`);
          piece = coldBuffer.subarray(0, read);
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
        full = false;
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
      reads?.close();
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
    if (this.#sockets.isStill(socket)) this.#libc.shutdown(socket.fd, LINUX.SHUT_RDWR);
    return { outcome: "failed", reason, bytes: Math.max(0, written) };
  }
}
