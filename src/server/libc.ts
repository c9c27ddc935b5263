/**
 * The few C library calls that {@linkcode ./sendfile.ts} needs, through Deno's foreign function interface: Linux
 * with glibc only. Nothing is loaded at import time; {@linkcode openLibc} checks that the library loads, and its
 * functions are made when one is first called (see {@linkcode openLibc} for why).
 *
 * @module
 */

import { describeError } from "../describe_error.ts";

/** Where glibc's `libc.so.6` lives on the systems flexo runs on (Arch, Debian and Ubuntu, Fedora; x86_64 and
 * aarch64). The serve task, the Dockerfile and the compiled executable allow FFI for exactly these paths. */
export const LIBC_PATHS: readonly string[] = [
  "/usr/lib/libc.so.6",
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/lib/aarch64-linux-gnu/libc.so.6",
  "/lib64/libc.so.6",
];

const SYMBOLS = {
  sendfile: { parameters: ["i32", "i32", "buffer", "usize"], result: "isize" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  // pread on one of the runtime's blocking threads (it answers a promise): the bytes of a file not in the page
  // cache, read from the descriptor a send opened (see page_cache.ts), never again from the file's path.
  pread_on_thread: {
    name: "pread",
    parameters: ["i32", "buffer", "usize", "i64"],
    result: "isize",
    nonblocking: true,
  },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  // Whether anything is at a path (see libcPathProbe): a missing file answers -1, without an error object.
  access: { parameters: ["buffer", "i32"], result: "i32" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  close: { parameters: ["i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  // The free space of the cache's file system (see libcFreeSpace).
  statvfs: { parameters: ["buffer", "buffer"], result: "i32" },
  geteuid: { parameters: [], result: "u32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // Which pages of a file are in the page cache (see page_cache.ts): a window is mapped, asked, and unmapped.
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  mincore: { parameters: ["pointer", "usize", "buffer"], result: "i32" },
  sysconf: { parameters: ["i32"], result: "i64" },
  __errno_location: { parameters: [], result: "pointer" },
  // Copies errno out of the C library's memory: reading a pointer from JavaScript needs every ffi permission.
  memcpy: { parameters: ["buffer", "pointer", "usize"], result: "pointer" },
  // Gives freed memory in glibc's arenas back to the system (see src/memory_release.ts).
  malloc_trim: { parameters: ["usize"], result: "i32" },
} as const;

/** The loaded library's functions, as Deno types them. */
export type LibcSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** Constants of Linux (the same on x86_64 and aarch64). */
export const LINUX = {
  ENOENT: 2,
  EINTR: 4,
  EAGAIN: 11,
  SOL_SOCKET: 1,
  SO_COOKIE: 57,
  SO_ACCEPTCONN: 30,
  ENOTCONN: 107,
  ENOTDIR: 20,
  F_OK: 0,
  X_OK: 1,
  W_OK: 2,
  F_GETFD: 1,
  AF_INET: 2,
  AF_INET6: 10,
  O_RDONLY_CLOEXEC: 0o2000000,
  SEEK_SET: 0,
  SEEK_END: 2,
  RLIMIT_NOFILE: 7,
  SHUT_RDWR: 2,
  MSG_DONTWAIT: 0x40,
  MSG_NOSIGNAL: 0x4000,
  MSG_MORE: 0x8000,
  IPPROTO_TCP: 6,
  TCP_NODELAY: 1,
  PROT_READ: 1,
  MAP_SHARED: 1,
  _SC_PAGESIZE: 30,
} as const;

/** A loaded libc, or why there is none. */
export type LibcResult =
  | {
    ok: true;
    libc: LibcSymbols;
    /**
     * glibc's `malloc_trim(0)` (see src/memory_release.ts), run on one of the runtime's blocking threads: unlike
     * the functions of `libc`, calling it does not make them, so the releases of an idle proxy do not.
     */
    mallocTrim?: () => Promise<number>;
    /** {@linkcode openFilesLimit} in the same way, for the start. */
    openFilesLimit?: () => Promise<number | undefined>;
  }
  | { ok: false; reason: string };

/** `Deno.dlopen`, as {@linkcode openLibc} uses it (tests count its calls). */
export type Dlopen = (path: string, symbols: Deno.ForeignLibraryInterface) => {
  symbols: Record<string, unknown>;
};

/**
 * The functions that {@linkcode openLibc} makes at once, for the start and the memory releases: nonblocking (they
 * run on one of the runtime's blocking threads and answer a promise), so Deno compiles nothing for them.
 */
const AT_ONCE = {
  malloc_trim: { parameters: ["usize"], result: "i32", nonblocking: true },
  getrlimit: { parameters: ["i32", "buffer"], result: "i32", nonblocking: true },
} as const satisfies Deno.ForeignLibraryInterface;

/**
 * `SYMBOLS` of the library at `path`, made at the first call of any of them: each function starts as a stub
 * that loads the library, puts the real functions in place of all stubs on the object, and calls its own.
 * A copy of the object (`{ ...libc }`) keeps stubs that call through the same load.
 */
function lazySymbols(path: string, dlopen: Dlopen): LibcSymbols {
  const symbols: Record<string, unknown> = {};
  let loaded: Record<string, unknown> | undefined;
  const load = () => {
    if (loaded === undefined) {
      loaded = dlopen(path, SYMBOLS).symbols;
      Object.assign(symbols, loaded);
    }
    return loaded;
  };
  for (const name of Object.keys(SYMBOLS)) {
    symbols[name] = (...args: unknown[]) => (load()[name] as (...args: unknown[]) => unknown)(...args);
  }
  return symbols as LibcSymbols;
}

/**
 * Loads glibc from the first of `paths` that exists and that this process may load. Never throws: without Linux,
 * without the `ffi` permission for the path, or without glibc, it says why.
 *
 * The library is loaded here with two nonblocking functions (which tells that it loads); the functions of `libc`
 * are made at the first call of one of them. Deno compiles a trampoline for each synchronous foreign function when
 * it makes it (with Cranelift): the first one brings 1.3-1.7 MiB of the deno executable's pages into memory,
 * all of `SYMBOLS` 2.3-2.7 MiB (BENCHMARKS.md, session nine), which a proxy that has not yet sent a file or
 * checked a miss does not need. The start and the memory releases use `mallocTrim` and `openFilesLimit`
 * instead, which are made without it. `dlopen` is for tests (default `Deno.dlopen`).
 */
export function openLibc(paths: readonly string[] = LIBC_PATHS, dlopen: Dlopen = Deno.dlopen): LibcResult {
  if (Deno.build.os !== "linux") return { ok: false, reason: `sendfile needs Linux, not ${Deno.build.os}` };
  const allowed = paths.filter((path) =>
    Deno.permissions.querySync({ name: "ffi", path }).state === "granted"
  );
  if (allowed.length === 0) {
    return { ok: false, reason: `no permission to load libc (run with --allow-ffi=${paths.join(",")})` };
  }
  const problems: string[] = [];
  for (const path of allowed) {
    try {
      Deno.statSync(path);
    } catch {
      continue;
    }
    try {
      const atOnce = dlopen(path, AT_ONCE).symbols as unknown as {
        malloc_trim(pad: bigint): Promise<number>;
        getrlimit(resource: number, limits: Uint8Array): Promise<number>;
      };
      return {
        ok: true,
        libc: lazySymbols(path, dlopen),
        mallocTrim: () => atOnce.malloc_trim(0n),
        openFilesLimit: async () => {
          const limits = new BigUint64Array(2);
          const failed = await atOnce.getrlimit(LINUX.RLIMIT_NOFILE, new Uint8Array(limits.buffer));
          return failed !== 0 ? undefined : softLimit(limits);
        },
      };
    } catch (error) {
      problems.push(`${path}: ${describeError(error)}`);
    }
  }
  return {
    ok: false,
    reason: problems.length > 0
      ? `could not load libc (${problems.join("; ")})`
      : `no glibc at ${allowed.join(", ")}`,
  };
}

const errnoValue = new Int32Array(1);
const errnoBytes = new Uint8Array(errnoValue.buffer);

/** The main thread's `errno`, read right after a failed synchronous call (those run on the main thread). */
export function errno(libc: LibcSymbols): number {
  libc.memcpy(errnoBytes, libc.__errno_location(), 4n);
  return errnoValue[0];
}

const PATH_ENCODER = new TextEncoder();

/**
 * The cache's "nothing there" check (a `PathProbe` of src/cache/surely_missing.ts) made with `access(path, F_OK)`:
 * true when it fails with ENOENT or ENOTDIR (it follows symbolic links, as `stat` does). A few microseconds, where
 * a failed `Deno.statSync` builds an error object, and without loading `node:fs` for its `existsSync`. A path with
 * a NUL byte cannot be passed to C: false, and the caller's own read reports it.
 */
export function libcPathProbe(libc: LibcSymbols): (path: string) => boolean {
  // One buffer for the probe's paths (PATH_MAX is 4096 bytes with its NUL), encoded into without an allocation.
  const buffer = new Uint8Array(4096);
  return (path) => {
    if (path.includes("\0")) return false;
    const { read, written } = PATH_ENCODER.encodeInto(path, buffer);
    if (read < path.length || written >= buffer.length) return false; // too long for a path: the caller's read says so
    buffer[written] = 0;
    if (libc.access(buffer, LINUX.F_OK) === 0) return false;
    const code = errno(libc);
    return code === LINUX.ENOENT || code === LINUX.ENOTDIR;
  };
}

/**
 * Whether this process may make and remove files in the folder `path` (`access(path, W_OK | X_OK)`: its
 * permissions, ACLs and a read-only mount, as the kernel decides for this user), asked without changing
 * anything: for `flexo check-config`. False for a path that cannot be passed to C, and for a missing one.
 */
export function libcCanWrite(libc: LibcSymbols): (path: string) => boolean {
  return (path) =>
    !path.includes("\0") && libc.access(PATH_ENCODER.encode(`${path}\0`), LINUX.W_OK | LINUX.X_OK) === 0;
}

/**
 * The cache's free-space check (a `FreeSpaceProbe` of src/cache/cache_store.ts) made with `statvfs(path)`: the
 * bytes this process may still write on the file system of `path` (the blocks free for anyone, or for root also
 * the reserved ones), or undefined when it cannot be asked. A few microseconds, without a thread.
 */
export function libcFreeSpace(libc: LibcSymbols): (path: string) => number | undefined {
  // struct statvfs of glibc on x86_64 and aarch64: f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, ... (8 bytes
  // each, 112 in all).
  const fields = new BigUint64Array(16);
  const bytes = new Uint8Array(fields.buffer);
  let root: boolean | undefined;
  return (path) => {
    if (path.includes("\0")) return undefined;
    if (libc.statvfs(PATH_ENCODER.encode(`${path}\0`), bytes) !== 0) return undefined;
    root ??= libc.geteuid() === 0;
    const free = Number(fields[1]) * Number(root ? fields[3] : fields[4]);
    return Number.isSafeInteger(free) ? free : Number.MAX_SAFE_INTEGER;
  };
}

/** This process's limit of open descriptors (the soft `RLIMIT_NOFILE`), or undefined when it cannot be read. */
export function openFilesLimit(libc: LibcSymbols): number | undefined {
  const limits = new BigUint64Array(2);
  if (libc.getrlimit(LINUX.RLIMIT_NOFILE, new Uint8Array(limits.buffer)) !== 0) return undefined;
  return softLimit(limits);
}

function softLimit(limits: BigUint64Array): number {
  return limits[0] > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(limits[0]);
}

/** An address and port as a socket reports them. */
export interface SocketAddress {
  /** 16 bytes, IPv4 addresses mapped into IPv6 (`::ffff:a.b.c.d`). */
  address: Uint8Array;
  port: number;
}

/** Parses a `struct sockaddr_in` or `sockaddr_in6`; undefined for other families. */
export function parseSockaddr(bytes: Uint8Array): SocketAddress | undefined {
  const family = bytes[0] | (bytes[1] << 8);
  const port = (bytes[2] << 8) | bytes[3];
  if (family === LINUX.AF_INET) return { address: mappedIpv4(bytes.subarray(4, 8)), port };
  if (family === LINUX.AF_INET6) return { address: bytes.slice(8, 24), port };
  return undefined;
}

/** The 16-byte form of a textual IPv4 or IPv6 address (as Deno writes them), or undefined when unreadable. */
export function addressBytes(text: string): Uint8Array | undefined {
  const host = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (v4) return mappedIpv4(Uint8Array.from(v4.slice(1).map(Number)));
  const zoneless = host.split("%")[0];
  if (!/^[0-9a-fA-F:.]+$/.test(zoneless) || !zoneless.includes(":")) return undefined;
  const [headText, tailText, more] = zoneless.split("::");
  if (more !== undefined) return undefined;
  const groups = (part: string | undefined): number[] | undefined => {
    if (part === undefined || part === "") return [];
    const out: number[] = [];
    for (const piece of part.split(":")) {
      const embedded = addressBytes(piece);
      if (piece.includes(".") && embedded) {
        out.push((embedded[12] << 8) | embedded[13], (embedded[14] << 8) | embedded[15]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(piece)) out.push(parseInt(piece, 16));
      else return undefined;
    }
    return out;
  };
  const head = groups(headText);
  const tail = groups(tailText);
  if (head === undefined || tail === undefined) return undefined;
  const missing = 8 - head.length - tail.length;
  if (tailText === undefined ? missing !== 0 : missing < 1) return undefined;
  const all = [...head, ...new Array(tailText === undefined ? 0 : missing).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  });
  return bytes;
}

function mappedIpv4(four: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(16);
  bytes[10] = 0xff;
  bytes[11] = 0xff;
  bytes.set(four, 12);
  return bytes;
}
