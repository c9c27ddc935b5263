/**
 * A repository's database before its packages: a package is verified against the database entry that lists it
 * (size and SHA-256), and a node that has no such entry (it never synced that repository, or its copy of the
 * database is older than the package) would store the package as it comes. Behind a balancer that hashes on
 * the path, each database goes to one node, and every other node was in that case for every package.
 *
 * On a node of a cluster (app.ts decides: `cache_peers` or `trusted_proxies` set),
 * {@linkcode DatabaseFirst.expected} looks the package up; when no database lists it, it has the proxy fetch
 * (or revalidate) the repository's database of the package's folder, as a client's `pacman -Sy` would, and
 * looks again. It does so at most once per folder every {@linkcode DATABASE_FIRST_INTERVAL_MS}: a package that
 * no database lists (an old version, a custom repository without one) costs one database request per interval,
 * not one per download.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { describeError } from "../describe_error.ts";
import type { PackageEntry } from "../repo/repo_db.ts";
import type { RequestTarget } from "../repo/request_path.ts";

const log = getLogger(["flexo", "database-first"]);

/** A folder's database is fetched for an unlisted package at most this often. */
export const DATABASE_FIRST_INTERVAL_MS = 5 * 60_000;

/**
 * At most this many folders' times are kept: a folder is a client's path (any repository and architecture name
 * a client makes up), and a map that kept each would grow with every made-up folder.
 */
export const DATABASE_FIRST_MAX_FOLDERS = 1024;

/** What {@linkcode DatabaseFirst} needs. */
export interface DatabaseFirstOptions {
  /** The package index's look-up, waiting for databases being read (`PackageIndex.expectedWhenLoaded`). */
  lookUp: (segments: readonly string[]) => Promise<PackageEntry | undefined>;
  /**
   * Fetches (or revalidates) the database at `rawPath` (a request path such as `/core/os/x86_64/core.db`) as a
   * client's request would, and resolves once it is stored and its reading has begun; rejects when it cannot.
   */
  fetchDatabase: (rawPath: string) => Promise<void>;
  now: () => number;
  /** Default {@linkcode DATABASE_FIRST_INTERVAL_MS}. */
  intervalMs?: number;
}

/**
 * The path of the database of `target`'s folder, for a package or its signature in a `/$repo/os/$arch/` folder;
 * else undefined.
 */
export function databasePathFor(target: RequestTarget): string | undefined {
  if (target.repo === undefined) return undefined;
  if (target.kind !== "package" && target.kind !== "package_signature") return undefined;
  const folder = target.cacheSegments.slice(0, -1).map(encodeURIComponent).join("/");
  return `/${folder}/${encodeURIComponent(target.repo)}.db`;
}

/** Looks packages up in the index, fetching their folder's database first when none lists them. */
export class DatabaseFirst {
  #options: DatabaseFirstOptions;
  #askedAt = new Map<string, number>();
  #fetching = new Map<string, Promise<void>>();

  /** See {@linkcode DatabaseFirstOptions}. */
  constructor(options: DatabaseFirstOptions) {
    this.#options = options;
  }

  /** The database entry of the package `target`, after fetching its folder's database if none listed it. */
  async expected(target: RequestTarget): Promise<PackageEntry | undefined> {
    const found = await this.#options.lookUp(target.cacheSegments);
    if (found !== undefined) return found;
    const path = databasePathFor(target);
    if (path === undefined) return undefined;
    let fetching = this.#fetching.get(path);
    if (fetching === undefined) {
      const now = this.#options.now();
      const interval = this.#options.intervalMs ?? DATABASE_FIRST_INTERVAL_MS;
      if (now - (this.#askedAt.get(path) ?? -Infinity) < interval) return undefined;
      this.#remember(path, now, interval);
      fetching = this.#options.fetchDatabase(path).catch((error: unknown) => {
        log.warn(
          "No database lists {file}, and fetching {database} to verify it failed: {message}; the file is stored " +
            "unverified",
          {
            file: target.fileName,
            database: path,
            message: describeError(error),
          },
        );
      }).finally(() => this.#fetching.delete(path));
      this.#fetching.set(path, fetching);
    }
    await fetching;
    return await this.#options.lookUp(target.cacheSegments);
  }

  /**
   * Records when `path`'s database was asked for. At the cap, times older than the interval go first (they no
   * longer hold a request back), then the oldest: a folder forgotten early costs one more database request.
   */
  #remember(path: string, now: number, interval: number): void {
    const asked = this.#askedAt;
    asked.delete(path); // kept in the order of asking: the first entries are the oldest
    if (asked.size >= DATABASE_FIRST_MAX_FOLDERS) {
      for (const [folder, at] of asked) {
        if (now - at < interval) break;
        asked.delete(folder);
      }
      if (asked.size >= DATABASE_FIRST_MAX_FOLDERS) asked.delete(asked.keys().next().value!);
    }
    asked.set(path, now);
  }

  /** How many folders' times are kept (for tests). */
  get rememberedFolders(): number {
    return this.#askedAt.size;
  }
}
