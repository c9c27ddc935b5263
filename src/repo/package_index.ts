/**
 * The package index: what the repository databases that clients synced through the proxy say about each package
 * file (size and SHA-256), so that every download can be verified before it enters the cache.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { dirname, join, relative, sep } from "node:path";
import { type PackageEntry, readRepoDb } from "./repo_db.ts";
import { describeError } from "../logging.ts";
import { signedFileOf } from "./package_file_name.ts";

const log = getLogger(["flexo", "integrity"]);

/** File names of databases that list packages (`.files` databases list the same packages and are larger). */
const DATABASE_NAME = /\.db(\.tar(\.(gz|zst|xz|bz2))?)?$/;

/** True when a cached file is a sync database whose entries the index reads. */
export function isIndexedDatabase(fileName: string): boolean {
  return DATABASE_NAME.test(fileName);
}

/** The timer a {@linkcode PackageIndex} waits with; tests give their own to decide when a wait runs out. */
export interface PackageIndexOptions {
  /** Starts a timer. Default `setTimeout`. */
  setTimer?: (callback: () => void, ms: number) => unknown;
  /** Cancels a timer started by `setTimer`. Default `clearTimeout`. */
  clearTimer?: (timer: unknown) => void;
  /**
   * Called with each database read, before its load ends (so {@linkcode PackageIndex.idle} waits for it too):
   * `dir` is the database's folder on disk, `previous` what the same database file said before this read, if
   * it was read before. The app removes cached packages the database lists differently.
   */
  onIndexed?: (
    dir: string,
    entries: ReadonlyMap<string, PackageEntry>,
    previous?: ReadonlyMap<string, PackageEntry>,
  ) => Promise<unknown>;
}

/** Expected size and SHA-256 of package files, by cache folder and file name. */
export class PackageIndex {
  #setTimer: (callback: () => void, ms: number) => unknown;
  #clearTimer: (timer: unknown) => void;
  #onIndexed: PackageIndexOptions["onIndexed"];
  /** Folder (cache-relative, "/"-separated) -> database path -> entries by file name. */
  #folders = new Map<string, Map<string, Map<string, PackageEntry>>>();
  /** Folder -> loads of its databases still running. */
  #loading = new Map<string, Set<Promise<void>>>();
  /** The start-up {@linkcode PackageIndex.loadAll} while it runs. */
  #loadingAll: Promise<number> | undefined;
  /**
   * Database path -> number of the last read begun: only that read's entries count, whichever ends last (one
   * number per database file of the cache).
   */
  #reads = new Map<string, number>();

  /** An empty index. */
  constructor(options: PackageIndexOptions = {}) {
    this.#setTimer = options.setTimer ?? setTimeout;
    this.#clearTimer = options.clearTimer ?? ((timer) => clearTimeout(timer as number));
    this.#onIndexed = options.onIndexed;
  }

  /**
   * Reads (or re-reads) a database file from the cache; its entries replace what that database said before.
   * An unreadable database is logged and ignored: packages are then served unverified, as before.
   *
   * @param cacheRoot The cache directory.
   * @param path The database file, inside the cache directory.
   */
  loadDatabase(cacheRoot: string, path: string): Promise<void> {
    const folder = folderOf(cacheRoot, path);
    const load = this.#load(folder, path);
    let running = this.#loading.get(folder);
    if (!running) this.#loading.set(folder, running = new Set());
    running.add(load);
    return load.finally(() => {
      running.delete(load);
      if (running.size === 0 && this.#loading.get(folder) === running) this.#loading.delete(folder);
    });
  }

  async #load(folder: string, path: string): Promise<void> {
    // A later read is of a newer copy (renamed over this one meanwhile): an older read that ends after it must
    // not bring back the entries of the older copy.
    const read = (this.#reads.get(path) ?? 0) + 1;
    this.#reads.set(path, read);
    let entries: Map<string, PackageEntry>;
    try {
      const file = await Deno.open(path, { read: true });
      entries = await readRepoDb(file.readable);
    } catch (error) {
      log.warn("Cannot read the database {path}; its packages are not verified: {error}", {
        path,
        error: describeError(error),
      });
      return;
    }
    if (this.#reads.get(path) !== read) return;
    let databases = this.#folders.get(folder);
    if (!databases) this.#folders.set(folder, databases = new Map());
    const previous = databases.get(path);
    databases.set(path, entries);
    log.debug("Indexed {count} packages from {path}", { count: entries.size, path });
    try {
      await this.#onIndexed?.(dirname(path), entries, previous);
    } catch (error) {
      log.warn("After indexing {path}: {error}", { path, error: describeError(error) });
    }
  }

  /** Reads every sync database in the cache (at start-up). */
  loadAll(cacheRoot: string): Promise<number> {
    const all = (async () => {
      let count = 0;
      for await (const path of findDatabases(cacheRoot, cacheRoot)) {
        await this.loadDatabase(cacheRoot, path);
        count++;
      }
      return count;
    })();
    this.#loadingAll = all;
    return all.finally(() => {
      if (this.#loadingAll === all) this.#loadingAll = undefined;
    });
  }

  /**
   * Like {@linkcode PackageIndex.expected}, but first waits (at most `maxWaitMs`, 3 s by default) for the
   * databases of the file's folder that are being read, and for the start-up reading of the cache: a package
   * requested just after its database was synced is verified too.
   *
   * @param segments The file's cache path segments.
   */
  async expectedWhenLoaded(
    segments: readonly string[],
    options: { maxWaitMs?: number } = {},
  ): Promise<PackageEntry | undefined> {
    const pending: Promise<unknown>[] = [...(this.#loading.get(segments.slice(0, -1).join("/")) ?? [])];
    if (this.#loadingAll) pending.push(this.#loadingAll);
    if (pending.length > 0) {
      let timer: unknown;
      const timeout = new Promise<void>((resolve) =>
        timer = this.#setTimer(resolve, options.maxWaitMs ?? 3_000)
      );
      await Promise.race([Promise.allSettled(pending), timeout]);
      this.#clearTimer(timer);
    }
    return this.expected(segments);
  }

  /**
   * Resolves when no database is being read any more: neither one passed to
   * {@linkcode PackageIndex.loadDatabase} (e.g. after a download of it) nor the start-up
   * {@linkcode PackageIndex.loadAll}, including loads that start while it waits.
   */
  async idle(): Promise<void> {
    for (;;) {
      const pending: Promise<unknown>[] = [...this.#loading.values()].flatMap((loads) => [...loads]);
      if (this.#loadingAll) pending.push(this.#loadingAll);
      if (pending.length === 0) return;
      await Promise.allSettled(pending);
    }
  }

  /**
   * What the databases say about a package file, if any of them lists it; for a package's signature (`.sig`),
   * the entry of its package, which carries the signature's size and digest when the database has them (see
   * {@linkcode expectedFileOf}).
   *
   * @param segments The file's cache path segments.
   */
  expected(segments: readonly string[]): PackageEntry | undefined {
    const databases = this.#folders.get(segments.slice(0, -1).join("/"));
    if (!databases) return undefined;
    const last = segments[segments.length - 1];
    const fileName = signedFileOf(last) ?? last;
    for (const entries of databases.values()) {
      const entry = entries.get(fileName);
      if (entry) return entry;
    }
    return undefined;
  }

  /** The cache folders (relative, "/"-separated) that have indexed databases, sorted. */
  folders(): string[] {
    return [...this.#folders.keys()].sort();
  }

  /** The paths of the indexed databases of a cache folder. */
  databasesIn(folder: string): string[] {
    return [...(this.#folders.get(folder)?.keys() ?? [])];
  }

  /** Every entry the databases of a cache folder list (one package may be listed by several databases). */
  entriesIn(folder: string): PackageEntry[] {
    return [...(this.#folders.get(folder)?.values() ?? [])].flatMap((entries) => [...entries.values()]);
  }

  /**
   * The cache folders (relative, "/"-separated, e.g. `core/os/x86_64`) whose databases list a package file,
   * sorted; use {@linkcode PackageIndex.expected} for what each says about it.
   *
   * @param fileName A package file name, e.g. `zstd-1.5.6-1-x86_64.pkg.tar.zst`.
   */
  foldersListing(fileName: string): string[] {
    const folders: string[] = [];
    for (const [folder, databases] of this.#folders) {
      for (const entries of databases.values()) {
        if (entries.has(fileName)) {
          folders.push(folder);
          break;
        }
      }
    }
    return folders.sort();
  }
}

/**
 * What a file must be by its package's database entry: a package's size and SHA-256; its signature's size and
 * SHA-256 (the first 16 bytes) when the database carries the signature (`%PGPSIG%`). Undefined for a signature
 * the database does not carry, and for a file the entry does not describe.
 *
 * @param entry The entry of the package, as {@linkcode PackageIndex.expected} finds it for either file.
 * @param fileName The file's name: the package's, or its `.sig`.
 */
export function expectedFileOf(
  entry: PackageEntry,
  fileName: string,
): { size: number; sha256: string } | undefined {
  if (fileName === entry.fileName) return { size: entry.compressedSize, sha256: entry.sha256 };
  if (fileName !== `${entry.fileName}.sig`) return undefined;
  const { signatureSize, signatureSha256 } = entry;
  return signatureSize === undefined || signatureSha256 === undefined
    ? undefined
    : { size: signatureSize, sha256: signatureSha256 };
}

/** The cache-relative, "/"-separated folder of a file inside the cache. */
function folderOf(cacheRoot: string, path: string): string {
  return relative(cacheRoot, dirname(path)).split(sep).join("/");
}

async function* findDatabases(root: string, dir: string): AsyncGenerator<string> {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    log.warn("Cannot list {dir}: {error}", { dir, error: String(error) });
    return;
  }
  for (const entry of entries) {
    if (entry.name.startsWith(".")) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* findDatabases(root, path);
    else if (entry.isFile && isIndexedDatabase(entry.name)) yield path;
  }
}
