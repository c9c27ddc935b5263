/**
 * Whether a cached file's next bytes are in the kernel's page cache. `sendfile` runs on the event loop: for
 * bytes in memory it costs microseconds, but for bytes on disk it waits for the disk (milliseconds on an SSD,
 * tens on an SD card or a spinning disk), and every other client waits with it. {@linkcode FileSender.send}
 * asks before each `sendfile` call on a complete file and reads a piece that is not in memory on a thread
 * instead (`FileReads`), which also brings the next pieces in through the kernel's readahead. The bytes found
 * in memory before the first that is not are sent with sendfile.
 *
 * @module
 */

import { type LibcSymbols, LINUX } from "./libc.ts";

/**
 * At most this many bytes are asked about at once. Each question maps the window, asks and unmaps it (three
 * system calls, the mapping the dearest); the kernel's look at each page costs the same whatever the window.
 */
export const RESIDENCY_WINDOW_BYTES = 16 * 1024 * 1024;

/** Tells how much of a range of an open file is in the page cache. */
export interface Residency {
  /**
   * How many of the `length` bytes from `offset` of the open file `fd` are in the page cache from `offset` on
   * without a gap, at most {@linkcode RESIDENCY_WINDOW_BYTES} from the page of `offset` (all of them when that
   * cannot be told: then the caller sends as before). 0: the byte at `offset` is on disk only.
   */
  residentBytes(fd: number, offset: number, length: number): number;
}

/**
 * Residency by `mincore(2)` on a read-only mapping of the window: three system calls of a few microseconds,
 * and no reading of the file.
 */
export class MincoreResidency implements Residency {
  #libc: LibcSymbols;
  #pageSize = 0;
  #pages = new Uint8Array(0);

  /** Uses `libc`'s `sysconf` (at the first question, not here: see `openLibc`), `mmap`, `mincore` and `munmap`. */
  constructor(libc: LibcSymbols) {
    this.#libc = libc;
  }

  residentBytes(fd: number, offset: number, length: number): number {
    if (length <= 0) return 0;
    if (this.#pageSize === 0) {
      const size = Number(this.#libc.sysconf(LINUX._SC_PAGESIZE));
      this.#pageSize = size > 0 ? size : 4096;
      this.#pages = new Uint8Array(Math.ceil(RESIDENCY_WINDOW_BYTES / this.#pageSize) + 1);
    }
    const inPage = offset % this.#pageSize;
    const start = offset - inPage;
    const span = Math.min(offset + length, start + RESIDENCY_WINDOW_BYTES) - start;
    const libc = this.#libc;
    const mapped = libc.mmap(null, BigInt(span), LINUX.PROT_READ, LINUX.MAP_SHARED, fd, BigInt(start));
    if (mapped === null) return span - inPage;
    // A failed mapping is (void *) -1, which reading a pointer's value from JavaScript would need every ffi
    // permission to tell: mincore then fails on the unaligned address instead, and munmap does nothing.
    try {
      if (libc.mincore(mapped, BigInt(span), this.#pages) !== 0) return span - inPage;
      const count = Math.ceil(span / this.#pageSize);
      for (let i = 0; i < count; i++) {
        if ((this.#pages[i] & 1) === 0) return Math.max(0, i * this.#pageSize - inPage);
      }
      return span - inPage;
    } finally {
      libc.munmap(mapped, BigInt(span));
    }
  }
}

/** Bytes found in the page cache are taken to stay there this long, for every send of the same file. */
export const RESIDENCY_TRUST_MS = 1000;

/** At most this many files' recent findings are kept. */
const RECENT_FILES_MAX = 64;

/**
 * What the sends of one process found in the page cache in the last {@linkcode RESIDENCY_TRUST_MS}, per file:
 * clients downloading the same file at once ask once per window between them, instead of once each (the
 * kernel's look at each page cost about a tenth of the CPU of sending a warm file to 16 clients). The sender
 * still looks at the first page of what it takes on trust, and forgets the file when that page is gone (the
 * page cache dropped, the file evicted); other pages evicted within that time cost a `sendfile` a disk read, as
 * before the residency checks.
 */
export class RecentResidency {
  /** Per file path: the bytes from `from` to `until` were found in memory, the first of them at `at`. */
  #files = new Map<string, { from: number; until: number; at: number }>();
  #now: () => number;

  /** @param now The clock in milliseconds. */
  constructor(now: () => number) {
    this.#now = now;
  }

  /** How many bytes from `offset` of the file at `path` were found in memory lately (0: not known). */
  known(path: string, offset: number): number {
    const entry = this.#files.get(path);
    if (entry === undefined) return 0;
    const age = this.#now() - entry.at;
    if (age >= RESIDENCY_TRUST_MS || age < 0) {
      this.#files.delete(path);
      return 0;
    }
    return offset >= entry.from && offset < entry.until ? entry.until - offset : 0;
  }

  /** Forgets what was found of the file at `path` (its pages were found gone). */
  forget(path: string): void {
    this.#files.delete(path);
  }

  /** Notes that `length` bytes from `offset` of the file at `path` were found in memory just now. */
  note(path: string, offset: number, length: number): void {
    const until = offset + length;
    const entry = this.#files.get(path);
    const now = this.#now();
    const age = entry === undefined ? Infinity : now - entry.at;
    if (
      entry !== undefined && age < RESIDENCY_TRUST_MS && age >= 0 && offset >= entry.from &&
      offset <= entry.until
    ) {
      // Goes on from what was found before: one range, as old as its oldest look.
      entry.until = Math.max(entry.until, until);
      return;
    }
    if (entry === undefined && this.#files.size >= RECENT_FILES_MAX) this.#files.clear();
    this.#files.set(path, { from: offset, until, at: now });
  }
}

/**
 * Reads a piece of an open file on a thread, for bytes not in the page cache. It reads the descriptor the send
 * opened, not the file's path: by then the path may name another file (a database replaced in the cache by a
 * newer one), whose bytes spliced into the old one's would make a clean answer of neither.
 */
export interface FileReads {
  /** Reads up to `into.length` bytes at `offset` of the open file `fd`: how many (0 at its end). */
  read(fd: number, offset: number, into: Uint8Array): Promise<number>;
  /** Lets go of what the reads hold. */
  close(): void;
}

/** {@linkcode FileReads} with libc's `pread` on one of the runtime's blocking threads. */
export class ThreadReads implements FileReads {
  #libc: Pick<LibcSymbols, "pread_on_thread">;

  /** Reads through `libc` (see `openLibc` in libc.ts). */
  constructor(libc: Pick<LibcSymbols, "pread_on_thread">) {
    this.#libc = libc;
  }

  async read(fd: number, offset: number, into: Uint8Array): Promise<number> {
    let filled = 0;
    while (filled < into.length) {
      const piece = into.subarray(filled);
      const read = Number(
        await this.#libc.pread_on_thread(fd, piece, BigInt(piece.length), BigInt(offset + filled)),
      );
      if (read < 0) {
        throw new Error(`reading descriptor ${fd} at byte ${offset + filled} on a thread failed`);
      }
      if (read === 0) break;
      filled += read;
    }
    return filled;
  }

  close(): void {
    // The descriptor is the send's, which closes it.
  }
}
