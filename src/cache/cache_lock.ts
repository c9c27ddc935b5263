/**
 * One serving process per cache directory. A second proxy on the same directory (started by mistake, or two
 * containers on one volume) would remove the first one's downloads in progress in its start-up recovery, and two
 * downloads of one file would write the same partial file, one emptying it under the other. The proxy therefore
 * holds an exclusive advisory lock (`flock`) on {@linkcode CACHE_LOCK_FILE} while it runs; the kernel releases it
 * when the process ends, however it ends. The commands that work beside a running proxy (`flexo clean`, `import`)
 * take no lock.
 *
 * @module
 */

import { join } from "node:path";

/** The lock file, inside the cache directory's hidden `.flexo` folder (never counted or cleaned as a file). */
export const CACHE_LOCK_FILE = join(".flexo", "serve.lock");

/** The lock of a cache directory, held until {@linkcode CacheLock.release} or the end of the process. */
export interface CacheLock {
  /** False when the file system does not support locks: nothing is held, and `warning` says so. */
  held: boolean;
  warning?: string;
  release(): void;
}

/**
 * Takes the lock of `cacheDir` (which must exist) for this process, writing its process id into the file.
 *
 * @throws {Error} naming the directory and the other process when another process holds it.
 */
export function lockCacheDirectory(cacheDir: string, pid: number = Deno.pid): CacheLock {
  const path = join(cacheDir, CACHE_LOCK_FILE);
  Deno.mkdirSync(join(cacheDir, ".flexo"), { recursive: true });
  const file = Deno.openSync(path, { read: true, write: true, create: true });
  let locked: boolean;
  try {
    locked = file.tryLockSync(true);
  } catch (error) {
    // A file system without locks (some network file systems): nothing can be told, and nothing is refused.
    file.close();
    return {
      held: false,
      warning:
        `Cannot lock ${path} (${(error as Error).message}): a second flexo started on cache_directory ` +
        `"${cacheDir}" would not be refused; never run two on one cache directory`,
      release: () => {},
    };
  }
  if (!locked) {
    const holder = holderOf(file);
    file.close();
    throw new Error(
      `cache_directory = "${cacheDir}" is in use by another flexo (process ${
        holder ?? "unknown"
      }, which holds ` +
        `${path}): two proxies on one cache directory would remove and overwrite each other's downloads. Stop ` +
        "it, or give this one another cache_directory (FLEXO_CACHE_DIRECTORY, --cache-dir).",
    );
  }
  file.truncateSync(0);
  file.writeSync(new TextEncoder().encode(`${pid}\n`));
  return {
    held: true,
    release: () => {
      try {
        file.close();
      } catch {
        // closed already
      }
    },
  };
}

/** The process id written in the lock file by its holder, if readable. */
function holderOf(file: Deno.FsFile): string | undefined {
  try {
    const buffer = new Uint8Array(32);
    const read = file.readSync(buffer) ?? 0;
    const text = new TextDecoder().decode(buffer.subarray(0, read)).trim();
    return /^\d+$/.test(text) ? text : undefined;
  } catch {
    return undefined;
  }
}
