/**
 * Finding the socket descriptor of a Deno connection, so that sendfile(2) can write to it (see sendfile.ts).
 *
 * Deno does not say which descriptor a connection has, so {@linkcode SocketFinder.find} looks for it once per
 * connection by its addresses, and remembers the socket's cookie (`SO_COOKIE`, unique per socket until reboot);
 * {@linkcode SocketFinder.isStill} checks that cookie before a write, so a number reused by a new connection after
 * the client went away is never written to.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { addressBytes, errno, type LibcSymbols, LINUX, openFilesLimit, parseSockaddr } from "./libc.ts";

const log = getLogger(["flexo", "server"]);

/** Descriptors at or above this are never searched for a connection's socket, whatever the process's limit. */
export const FD_SCAN_LIMIT = 1 << 20;

/**
 * After this many connections in a row whose socket was not found (while their client was still there), the
 * sender stops looking, for {@linkcode SENDFILE_RETRY_MS}.
 */
export const MISSES_BEFORE_DISABLED = 3;

/** How long sendfile stays off after {@linkcode MISSES_BEFORE_DISABLED} misses before the sender looks again. */
export const SENDFILE_RETRY_MS = 5 * 60_000;

/** Descriptors below the last one found where the next search starts (new sockets take low free numbers). */
const SCAN_START_BELOW_LAST = 64;

/** Free descriptor numbers in a row after which a quick search stops: past them, nothing is open. */
const FREE_GAP = 1024;

/** A client connection, its socket descriptor, and the cookie of the socket that descriptor stood for when found. */
export interface ClientSocket {
  conn: Deno.Conn;
  fd: number;
  cookie: bigint;
}

/** Finds connections' socket descriptors, and turns itself off for a while when it cannot (see `disabled`). */
export class SocketFinder {
  #libc: LibcSymbols;
  #now: () => number;
  #missesInARow = 0;
  #offUntil = 0;
  #lastFound = 3;
  #limit: number | undefined;
  #uses: string;

  /**
   * Wraps a loaded libc; `now` (milliseconds) is the clock of the pause after repeated failures; `uses` names
   * what the sockets are found for, in the log. The open-files limit is read at the first search, not here
   * (see `openLibc`: a proxy that sends no file calls no libc).
   */
  constructor(libc: LibcSymbols, now: () => number, uses = "sendfile") {
    this.#libc = libc;
    this.#now = now;
    this.#uses = uses;
  }

  /** Descriptors are searched below this. */
  get #fdLimit(): number {
    return this.#limit ??= Math.min(openFilesLimit(this.#libc) ?? 65_536, FD_SCAN_LIMIT);
  }

  /**
   * True for {@linkcode SENDFILE_RETRY_MS} once {@linkcode SocketFinder.find} has failed for
   * {@linkcode MISSES_BEFORE_DISABLED} connections in a row whose clients were still there: then this Deno
   * probably keeps its sockets where they cannot be found, and searching only costs time. Afterwards the sender
   * looks again (a fallback is never for good).
   */
  get disabled(): boolean {
    if (this.#missesInARow < MISSES_BEFORE_DISABLED) return false;
    if (this.#now() < this.#offUntil) return true;
    this.#missesInARow = 0;
    log.info("{uses} is on again: looking for the sockets of connections", { uses: this.#uses });
    return false;
  }

  /**
   * The socket of `conn`: the descriptor whose peer and local addresses are the connection's. Deno does not say
   * which descriptor a connection has, and reading /proc/self/fd needs all permissions, so the descriptors from
   * 3 up to the process's limit of open files are asked in turn (one cheap call each, about 0.3 us; the kernel
   * hands out the lowest free numbers, so a connection's is rarely far). Undefined when none matches: the
   * connection is served by Deno alone.
   */
  find(conn: Deno.Conn): ClientSocket | undefined {
    const remote = conn.remoteAddr as Deno.NetAddr;
    const local = conn.localAddr as Deno.NetAddr;
    const remoteBytes = addressBytes(remote.hostname);
    const localBytes = addressBytes(local.hostname);
    if (remoteBytes === undefined || localBytes === undefined) return undefined;
    const wanted = { remotePort: remote.port, remoteBytes, localPort: local.port, localBytes };
    // From just below the last descriptor found up to the end of the open ones, then from the start: a new
    // connection's number is usually close to the last one's, so the search rarely asks more than a few dozen.
    const start = Math.max(3, Math.min(this.#lastFound - SCAN_START_BELOW_LAST, this.#fdLimit));
    let found = this.#search(wanted, start, true) ?? this.#search(wanted, 3, true);
    if (found === undefined) {
      // A connection closed here has no descriptor any more: nothing to find, and nothing against sendfile.
      if (isClosed(conn)) return undefined;
      // A client that reset its connection has no peer address any more: that says nothing about this Deno.
      if (this.#resetSocketExists(local.port, localBytes)) return undefined;
      // Past a long run of free numbers there may still be an old connection's descriptor: the whole range.
      found = this.#search(wanted, 3, false);
    }
    if (found !== undefined) {
      this.#missesInARow = 0;
      this.#lastFound = found.fd;
      return { conn, fd: found.fd, cookie: found.cookie };
    }
    if (++this.#missesInARow === MISSES_BEFORE_DISABLED) {
      this.#offUntil = this.#now() + SENDFILE_RETRY_MS;
      log.warn(
        "{uses} is off for {minutes} minutes: the sockets of {count} connections in a row were not found",
        { uses: this.#uses, count: MISSES_BEFORE_DISABLED, minutes: SENDFILE_RETRY_MS / 60_000 },
      );
    }
    return undefined;
  }

  /**
   * The descriptor from `from` on whose peer and own addresses are `wanted`'s. With `stopAtGap` the search
   * ends after {@linkcode FREE_GAP} free numbers in a row (the kernel hands out the lowest free numbers, so the
   * open ones are dense), otherwise at the limit of open files.
   */
  #search(
    wanted: { remotePort: number; remoteBytes: Uint8Array; localPort: number; localBytes: Uint8Array },
    from: number,
    stopAtGap: boolean,
  ): { fd: number; cookie: bigint } | undefined {
    let free = 0;
    const limit = this.#fdLimit;
    for (let fd = from; fd < limit; fd++) {
      const peer = this.#address(fd, "peer");
      if (peer === undefined) {
        if (stopAtGap && this.#libc.fcntl(fd, LINUX.F_GETFD, 0) < 0 && ++free >= FREE_GAP) return undefined;
        continue;
      }
      free = 0;
      if (peer.port !== wanted.remotePort || !sameBytes(peer.address, wanted.remoteBytes)) continue;
      const own = this.#address(fd, "own");
      if (own?.port !== wanted.localPort || !sameBytes(own.address, wanted.localBytes)) continue;
      const cookie = this.#cookie(fd);
      if (cookie !== undefined) return { fd, cookie };
    }
    return undefined;
  }

  /**
   * Whether a socket on the local address `localPort`/`localBytes` has lost its peer (after a reset,
   * `getpeername` fails with ENOTCONN) and is no listener: the sign of a client that went away. Searches up to
   * {@linkcode FREE_GAP} free numbers in a row.
   */
  #resetSocketExists(localPort: number, localBytes: Uint8Array): boolean {
    let free = 0;
    const limit = this.#fdLimit;
    for (let fd = 3; fd < limit && free < FREE_GAP; fd++) {
      if (this.#address(fd, "peer") !== undefined) {
        free = 0;
        continue;
      }
      if (errno(this.#libc) !== LINUX.ENOTCONN) {
        free = this.#libc.fcntl(fd, LINUX.F_GETFD, 0) < 0 ? free + 1 : 0;
        continue;
      }
      free = 0;
      const own = this.#address(fd, "own");
      if (own?.port !== localPort || !sameBytes(own.address, localBytes)) continue;
      if (this.#option(fd, LINUX.SO_ACCEPTCONN) === 0) return true;
    }
    return false;
  }

  /** True when `socket`'s descriptor still stands for the socket it was found as (its cookie is the same). */
  isStill(socket: ClientSocket): boolean {
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

  #option(fd: number, name: number): number | undefined {
    this.#lengthValue[0] = 8;
    this.#cookieValue[0] = 0n;
    const failed = this.#libc.getsockopt(fd, LINUX.SOL_SOCKET, name, this.#cookieBytes, this.#lengthBytes);
    return failed === 0 ? Number(this.#cookieValue[0] & 0xffffffffn) : undefined;
  }

  #address(fd: number, which: "peer" | "own") {
    this.#lengthValue[0] = this.#sockaddr.length;
    const call = which === "peer" ? this.#libc.getpeername : this.#libc.getsockname;
    if (call(fd, this.#sockaddr, this.#lengthBytes) !== 0) return undefined;
    return parseSockaddr(this.#sockaddr);
  }
}

/**
 * True when Deno has closed `conn` (setting an option fails then). Asked only of a connection whose socket a
 * quick search did not find; flexo's client sockets have TCP_NODELAY already, so setting it changes nothing.
 */
function isClosed(conn: Deno.Conn): boolean {
  try {
    (conn as Partial<Deno.TcpConn>).setNoDelay?.(true);
    return false;
  } catch {
    return true;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
