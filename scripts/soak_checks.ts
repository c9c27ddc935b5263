/**
 * The soak's measuring and checking: resource samples from `/proc/self`, memory settled before a sample, and the
 * comparison of every response with the origin's file. See `soak.ts`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import v8 from "node:v8";
import vm from "node:vm";

/** A file the origin serves. */
export interface OriginFile {
  path: string;
  size: number;
  sha256: string;
}

/** A sample of the process's resources. */
export interface ResourceSample {
  /** Entries of `/proc/self/fd`. */
  fds: number;
  /** Entries of `/proc/self/fd` that are files (not sockets, pipes or event descriptors). */
  files: number;
  /** Resident set size in bytes. */
  rss: number;
  /** V8 heap in use in bytes. */
  heapUsed: number;
}

/** Samples this process's open descriptors and memory. */
export function sampleResources(): ResourceSample {
  let fds = 0;
  let files = 0;
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    fds++;
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${entry.name}`).startsWith("/")) files++;
    } catch {
      // closed in between (the descriptor that listed the folder, for one)
    }
  }
  const memory = Deno.memoryUsage();
  return { fds, files, rss: memory.rss, heapUsed: memory.heapUsed };
}

/** What one response turned out to be. */
export interface Checked {
  bytes: number;
  wrongBytes: boolean;
  error?: string;
}

/** Reads a response to the end and compares it with the origin's file. */
export async function checkResponse(
  response: Response,
  file: OriginFile,
  options: {
    /** The request was a HEAD. */
    head: boolean;
    /** For a Range request: the status and the bytes expected. */
    expected?: { status: number; start: number; end: number };
    /** The origin's directory (`file.path` is below it). */
    originDir: string;
  },
): Promise<Checked> {
  const { expected, originDir } = options;
  if (options.head) {
    await response.body?.cancel();
    if (response.status !== 200) return { bytes: 0, wrongBytes: false, error: `HTTP ${response.status}` };
    const length = response.headers.get("content-length");
    if (length !== String(file.size)) {
      return { bytes: 0, wrongBytes: true, error: `Content-Length ${length}, expected ${file.size}` };
    }
    return { bytes: 0, wrongBytes: false };
  }
  if (expected) {
    if (response.status !== expected.status) {
      await response.body?.cancel();
      return { bytes: 0, wrongBytes: false, error: `HTTP ${response.status}, expected ${expected.status}` };
    }
    const body = new Uint8Array(await response.arrayBuffer());
    if (expected.status === 416) {
      const range = response.headers.get("content-range");
      return range === `bytes */${file.size}`
        ? { bytes: body.length, wrongBytes: false }
        : { bytes: body.length, wrongBytes: false, error: `416 with Content-Range ${range}` };
    }
    const want = await readSlice(join(originDir, file.path), expected.start, expected.end);
    const range = response.headers.get("content-range");
    if (range !== `bytes ${expected.start}-${expected.end}/${file.size}`) {
      return { bytes: body.length, wrongBytes: true, error: `Content-Range ${range}` };
    }
    if (body.length !== want.length || body.some((byte, i) => byte !== want[i])) {
      return { bytes: body.length, wrongBytes: true, error: `range bytes differ from the origin's` };
    }
    return { bytes: body.length, wrongBytes: false };
  }
  if (response.status !== 200) {
    await response.body?.cancel();
    return { bytes: 0, wrongBytes: false, error: `HTTP ${response.status}` };
  }
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of response.body!) {
    hash.update(chunk);
    bytes += chunk.byteLength;
  }
  if (bytes !== file.size) return { bytes, wrongBytes: true, error: `${bytes} bytes, expected ${file.size}` };
  if (hash.digest("hex") !== file.sha256) return { bytes, wrongBytes: true, error: "SHA-256 differs" };
  return { bytes, wrongBytes: false };
}

async function readSlice(path: string, start: number, end: number): Promise<Uint8Array> {
  const file = await Deno.open(path, { read: true });
  try {
    await file.seek(start, Deno.SeekMode.Start);
    const out = new Uint8Array(end - start + 1);
    let offset = 0;
    while (offset < out.length) {
      const n = await file.read(out.subarray(offset));
      if (n === null) break;
      offset += n;
    }
    return out.subarray(0, offset);
  } finally {
    file.close();
  }
}

/**
 * Lets closed connections and finished streams be released, runs a full GC when it is exposed, and asks glibc
 * to hand freed native memory back to the system, so that RSS shows what is still in use rather than what the
 * allocator keeps for later (without that, RSS stays near its peak after a load even when nothing leaked).
 */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    fullGc();
  }
  try {
    const libc = Deno.dlopen("libc.so.6", { malloc_trim: { parameters: ["usize"], result: "i32" } });
    try {
      libc.symbols.malloc_trim(0n);
    } finally {
      libc.close();
    }
  } catch {
    // Not glibc, or no permission for FFI: RSS then includes memory the allocator keeps.
  }
}

/** Runs a full V8 garbage collection (exposing `gc` through the V8 flags if it is not exposed yet). */
function fullGc(): void {
  let gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    v8.setFlagsFromString("--expose-gc");
    gc = vm.runInNewContext("gc") as () => void;
  }
  gc();
}

/** Bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** One line describing a resource sample. */
export function formatSample(sample: ResourceSample): string {
  return `${sample.fds} fds (${sample.files} files), RSS ${mib(sample.rss)}, heap ${mib(sample.heapUsed)}`;
}
