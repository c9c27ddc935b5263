/**
 * Sending cached files to clients with the kernel's `sendfile(2)` instead of through Deno.
 *
 * Deno has no sendfile: it streams a file body by reading 64 KiB at a time on a worker thread and writing each
 * piece to the socket, which costs about four times nginx's CPU per byte. For a GET of a whole cached file (or
 * one range of it) of at least {@linkcode SENDFILE_MIN_BYTES}, the connection layer hands the app's response to
 * {@linkcode sendBelowServer}: it finds the client's socket descriptor, writes the response head itself, lets the
 * kernel copy the file into the socket, and shuts the socket's sending side. Deno's HTTP server cannot be told
 * that someone else sent a body (a response without one goes out as `content-length: 0`, a shorter body is an
 * error), so the head says `Connection: close` and the connection ends with the response; the client opens a new
 * one for its next request. Deno's own answer, returned afterwards, fails against the closed side unseen.
 *
 * Bytes never go to the wrong client: the descriptor is identified by its socket cookie (`SO_COOKIE`, unique per
 * socket until reboot), checked before the first write and after every wait (nothing else runs on this thread in
 * between), so a number reused by a new connection after the client went away is never written to. When anything
 * is off before the head is sent (no permission, file changed, socket not found) the app's own response goes out
 * as usual.
 *
 * While a client's socket is full, the send waits in `poll(2)` on one of Deno's worker threads. At most
 * {@linkcode SENDFILE_MAX_ACTIVE} sends run at once, which bounds those threads; further large responses are
 * streamed by Deno meanwhile.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
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

const log = getLogger(["flexo", "server"]);
const ENCODER = new TextEncoder();

/** Smaller files go through Deno: below this, a kept-alive connection is worth more than the saved copying. */
export const SENDFILE_MIN_BYTES = 1024 * 1024;

/** How many responses may be sent this way at once; more are streamed by Deno. */
export const SENDFILE_MAX_ACTIVE = 64;

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

/** How long one wait for a writable socket lasts before the stall clock is checked again. */
const POLL_MS = 250;

/** The byte range of a file that a response body streams: a cached file, or one a download is writing. */
export interface FileRange {
  path: string;
  /** Offset of the first byte sent. */
  start: number;
  /** Bytes sent. */
  length: number;
  /** Size of the whole file (when complete); a cached file of another size is not sent. */
  size: number;
  /** For a file that a download is still writing: how far it is, and how to wait for more. */
  growing?: GrowingFile;
}

/** A file that a download is writing, as {@linkcode FileSender.send} follows it. */
export interface GrowingFile {
  /** Where the file may be instead of `path` when opened (a download renames its file when it is complete). */
  alternatives: readonly string[];
  /** Bytes on disk so far. */
  written(): number;
  /** Resolves at the next change: more bytes, or the end. */
  changed(): Promise<void>;
  /** Whether the download still runs, completed, or failed (and why). */
  outcome(): "running" | "complete" | { failed: string };
  /** Told how many body bytes went out after each write. */
  onBytes?(bytes: number): void;
}

// Keyed by the response itself: looking at `body` would turn a body of bytes into a stream on every small hit.
const fileResponses = new WeakMap<Response, FileRange>();

/** Records that `response`'s body streams `range` of a file, so that it may be sent with sendfile instead. */
export function markFileResponse(response: Response, range: FileRange): Response {
  fileResponses.set(response, range);
  return response;
}

/** The file range that a response's body streams, if it was marked with {@linkcode markFileResponse}. */
export function fileRangeOf(response: Response): FileRange | undefined {
  return fileResponses.get(response);
}

/** A client connection's socket descriptor and the cookie of the socket it stood for when found. */
export interface ClientSocket {
  fd: number;
  cookie: bigint;
}

/** How a send went: nothing written (the caller answers as usual), all sent, or broken off after the head. */
export type SendOutcome = { outcome: "not_started"; reason: string } | { outcome: "sent" } | {
  outcome: "failed";
  reason: string;
};

/** Sends files to client sockets with sendfile(2). */
export class FileSender {
  #libc: LibcSymbols;
  #active = 0;
  #maxActive: number;
  #missesInARow = 0;
  #fdLimit: number;

  /** Wraps a loaded libc; see {@linkcode openFileSender}. */
  constructor(libc: LibcSymbols, options: { maxActive?: number } = {}) {
    this.#libc = libc;
    this.#maxActive = options.maxActive ?? SENDFILE_MAX_ACTIVE;
    this.#fdLimit = Math.min(openFilesLimit(libc) ?? 65_536, FD_SCAN_LIMIT);
  }

  /** Responses being sent right now. */
  get active(): number {
    return this.#active;
  }

  /** Whether another response may be sent this way now. */
  get hasRoom(): boolean {
    return this.#active < this.#maxActive && !this.disabled;
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
      return { fd, cookie };
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
   * growing file, while the download has not written the next bytes); gives up when the client takes nothing for
   * `stallMs`. Shuts the socket's sending side after the last byte (for a growing file sent to its end, once the
   * download has completed), and both sides when it breaks off after the head was sent.
   */
  async send(
    socket: ClientSocket,
    head: Uint8Array,
    options: { range: FileRange; stallMs: number; onCommitted?: () => void },
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
    try {
      const size = Number(libc.lseek(fileFd, 0n, LINUX.SEEK_END));
      // sendfile reads at its own offset; the position stays at 0 so that /proc shows no reading ahead.
      libc.lseek(fileFd, 0n, LINUX.SEEK_SET);
      if (growing === undefined && size !== range.size) {
        return { outcome: "not_started", reason: `${range.path} is now ${size} bytes, not ${range.size}` };
      }
      const total = head.length + range.length;
      let stalledSince = performance.now();
      const pollfd = this.#pollfd(socket.fd);
      const offset = new BigInt64Array([BigInt(range.start)]);
      const offsetBytes = new Uint8Array(offset.buffer);
      // Checked before the first write and after every wait: between two waits nothing else runs on this thread,
      // so Deno cannot close the socket (and a new connection take its number) in between.
      let mustCheck = true;
      while (written < total) {
        if (mustCheck && !this.#isStill(socket)) {
          return written === 0
            ? { outcome: "not_started", reason: "the client's connection is gone" }
            : { outcome: "failed", reason: "the client's connection is gone" };
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
                state === "complete" ? `the download ended before byte ${range.start + sent}` : state.failed,
              );
            }
            await growing!.changed();
            mustCheck = true;
            stalledSince = performance.now();
            continue;
          }
        }
        // A client that went away makes these fail with EPIPE; sendfile has no MSG_NOSIGNAL, but Deno (a Rust
        // program) ignores SIGPIPE, so that is an error code here, never a signal (see sendfile_test.ts).
        const result = inHead
          ? Number(libc.send(socket.fd, head.subarray(written), BigInt(count), LINUX.MSG_NOSIGNAL))
          : Number(libc.sendfile(socket.fd, fileFd, offsetBytes, BigInt(count)));
        const code = result < 0 ? errno(libc) : 0;
        if (result > 0) {
          if (written === 0) options.onCommitted?.();
          written += result;
          if (!inHead) growing?.onBytes?.(result);
          stalledSince = performance.now();
          continue;
        }
        if (result === 0 && !inHead) return this.#breakOff(socket, `${range.path} ended early`);
        if (result < 0 && code === LINUX.EINTR) continue;
        if (result < 0 && code !== LINUX.EAGAIN) {
          return written === 0
            ? { outcome: "not_started", reason: `cannot write to the client (errno ${code})` }
            : this.#breakOff(socket, `the client went away (errno ${code})`);
        }
        if (performance.now() - stalledSince >= options.stallMs) {
          return this.#breakOff(socket, `the client took nothing for ${options.stallMs} ms`);
        }
        await libc.poll(pollfd, 1n, POLL_MS);
        mustCheck = true;
      }
      if (this.#isStill(socket)) libc.shutdown(socket.fd, LINUX.SHUT_WR);
      return { outcome: "sent" };
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      return written === 0 ? { outcome: "not_started", reason } : this.#breakOff(socket, reason);
    } finally {
      this.#active--;
      libc.close(fileFd);
    }
  }

  /**
   * How many bytes of `range` may go out now: what the download has written, but not the file's last byte until
   * the download has verified and committed the file, so that a client whose bytes turn out to be wrong gets a
   * response shorter than its length (an error), never a complete one.
   */
  #sendable(range: FileRange, growing: GrowingFile): number {
    const onDisk = Math.min(growing.written() - range.start, range.length);
    const reachesEnd = range.start + range.length === range.size;
    return reachesEnd && growing.outcome() !== "complete" ? Math.min(onDisk, range.length - 1) : onDisk;
  }

  /** Shuts both sides of `socket` (if it is still that socket) so the client sees the response cut short. */
  #breakOff(socket: ClientSocket, reason: string): SendOutcome {
    if (this.#isStill(socket)) this.#libc.shutdown(socket.fd, LINUX.SHUT_RDWR);
    return { outcome: "failed", reason };
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

  /** A `struct pollfd` asking whether `fd` can take more bytes; one per send, read by a worker thread. */
  #pollfd(fd: number): Uint8Array {
    const pollfd = new Uint8Array(8);
    const view = new DataView(pollfd.buffer);
    view.setInt32(0, fd, true);
    view.setInt16(4, LINUX.POLLOUT, true);
    return pollfd;
  }
}

/** A sender, or why this process cannot send files with sendfile. */
export type FileSenderResult = { ok: true; sender: FileSender } | { ok: false; reason: string };

/** Loads libc (see {@linkcode openLibc}) and makes a sender with it. */
export function openFileSender(
  options: { libcPaths?: readonly string[]; maxActive?: number } = {},
): FileSenderResult {
  const loaded = openLibc(options.libcPaths ?? LIBC_PATHS);
  if (!loaded.ok) return loaded;
  return { ok: true, sender: new FileSender(loaded.libc, { maxActive: options.maxActive }) };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
