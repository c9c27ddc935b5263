/**
 * Which packages clients fetched, and when: the record prefetch works from. It is kept apart from file times
 * (a prefetch sets those, and must not make its own downloads look used), in memory and in a small JSON file
 * under the cache's hidden `.flexo` folder, written atomically and durably (see src/atomic_write.ts: flushed,
 * renamed over the old one, its folder flushed; a save is a few milliseconds of a thread, at most once per
 * package and hour). A graceful stop waits for the last save ({@linkcode PackageUsage.flush}).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { join } from "node:path";
import { z } from "zod";
import { writeAtomically } from "../atomic_write.ts";
import { describeError } from "../describe_error.ts";

const log = getLogger(["flexo", "prefetch"]);

/** A fetch within this long of the recorded one is not recorded again. */
export const RECORD_RESOLUTION_MS = 60 * 60 * 1000;

/** Where the record lives inside the cache directory. */
export const USAGE_FILE = join(".flexo", "package_usage.json");

const usageFileSchema = z.object({
  version: z.literal(1),
  /** Cache folder ("core/os/x86_64") -> package name -> when a client last fetched it (ms since the epoch). */
  folders: z.record(z.string(), z.record(z.string(), z.number())),
  /** When the last prefetch run ended (ms since the epoch), so that a restart does not put the next one off. */
  lastRunAt: z.number().optional(),
});

/** A package a client fetched: its cache folder, its name and when (milliseconds). */
export interface UsedPackage {
  folder: string;
  name: string;
  lastFetched: number;
}

/** The fetches of packages by clients, by cache folder and package name. */
export class PackageUsage {
  #path: string;
  #now: () => number;
  #folders = new Map<string, Map<string, number>>();
  #lastRunAt: number | undefined;
  #dirty = false;
  #saving: Promise<void> | undefined;
  /** The last save failed (a full disk): what it had is not on disk, and the next flush tries again. */
  #unsaved = false;

  /**
   * @param cacheRoot The cache directory; the record is {@linkcode USAGE_FILE} inside it.
   * @param options `now`: the clock in milliseconds.
   */
  constructor(cacheRoot: string, options: { now: () => number }) {
    this.#path = join(cacheRoot, USAGE_FILE);
    this.#now = options.now;
  }

  /** Reads the saved record, if any; an unreadable one is logged and started afresh. */
  async load(): Promise<void> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.#path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        log.warn("Cannot read {path}; package usage starts empty: {error}", {
          path: this.#path,
          error: describeError(error),
        });
      }
      return;
    }
    const parsed = usageFileSchema.safeParse(safeJson(text));
    if (!parsed.success) {
      log.warn("{path} is not a package usage record; it starts empty and will be rewritten", {
        path: this.#path,
      });
      return;
    }
    this.#lastRunAt = parsed.data.lastRunAt;
    for (const [folder, names] of Object.entries(parsed.data.folders)) {
      const known = this.#folderMap(folder);
      for (const [name, time] of Object.entries(names)) known.set(name, Math.max(known.get(name) ?? 0, time));
    }
  }

  /**
   * Notes that a client fetched a package now, and saves the record soon.
   *
   * @param folder The package's cache folder, "/"-separated, e.g. `core/os/x86_64`.
   * @param name The package name, e.g. `zstd`.
   */
  recordFetch(folder: string, name: string): void {
    const names = this.#folderMap(folder);
    const now = this.#now();
    // Days are what counts (unaccessed_days): a package fetched again within the hour changes nothing on disk,
    // so that a busy proxy does not rewrite the record on every hit.
    const last = names.get(name);
    if (last !== undefined && now - last >= 0 && now - last < RECORD_RESOLUTION_MS) return;
    names.set(name, now);
    this.#dirty = true;
    this.#saving ??= this.#saveLoop();
  }

  /** Notes that a prefetch run ended at `at` (milliseconds), and saves the record soon. */
  noteRun(at: number): void {
    this.#lastRunAt = at;
    this.#dirty = true;
    this.#saving ??= this.#saveLoop();
  }

  /** When the last prefetch run ended, as noted here or read by `load()`; undefined when none is known. */
  lastRunAt(): number | undefined {
    return this.#lastRunAt;
  }

  /** The folders any client fetched packages from. */
  folders(): string[] {
    return [...this.#folders.keys()].sort();
  }

  /**
   * Packages fetched at or after `since` (milliseconds), by folder and name. A fetch recorded later than now (the
   * clock was ahead then, and has been set back) counts as made now, and is saved so: it then ages like any
   * other, where its future time would have kept it wanted (prefetched) for as long as the clock was ahead.
   * With `save: false` (a dry run) the record is left as it is, in memory and on disk.
   */
  fetchedSince(since: number, options: { save?: boolean } = {}): UsedPackage[] {
    const now = this.#now();
    const used: UsedPackage[] = [];
    for (const [folder, names] of this.#folders) {
      for (const [name, recorded] of names) {
        const lastFetched = Math.min(recorded, now);
        if (lastFetched !== recorded && options.save !== false) {
          names.set(name, lastFetched);
          this.#dirty = true;
        }
        if (lastFetched >= since) used.push({ folder, name, lastFetched });
      }
    }
    if (this.#dirty) this.#saving ??= this.#saveLoop();
    return used.sort((a, b) => a.folder.localeCompare(b.folder) || a.name.localeCompare(b.name));
  }

  /** Resolves when the saves of every fetch noted so far have ended (each written, or failed and logged). */
  async flushed(): Promise<void> {
    while (this.#saving) await this.#saving;
  }

  /**
   * Saves what is not on disk yet, a save that failed included, and resolves when done: for a graceful stop,
   * which must not end the process in the middle of a save (it would lose the fetches since the one before).
   */
  async flush(): Promise<void> {
    if (this.#unsaved) {
      this.#dirty = true;
      this.#saving ??= this.#saveLoop();
    }
    await this.flushed();
  }

  #folderMap(folder: string): Map<string, number> {
    let names = this.#folders.get(folder);
    if (!names) this.#folders.set(folder, names = new Map());
    return names;
  }

  async #saveLoop(): Promise<void> {
    try {
      while (this.#dirty) {
        this.#dirty = false;
        await this.#save();
      }
    } finally {
      this.#saving = undefined;
    }
  }

  async #save(): Promise<void> {
    const folders: Record<string, Record<string, number>> = {};
    for (const [folder, names] of this.#folders) folders[folder] = Object.fromEntries(names);
    try {
      await writeAtomically(
        this.#path,
        JSON.stringify({ version: 1, folders, lastRunAt: this.#lastRunAt }),
        { durable: true },
      );
      this.#unsaved = false;
    } catch (error) {
      this.#unsaved = true;
      log.warn("Cannot save the package usage record {path}; prefetch still works until a restart: {error}", {
        path: this.#path,
        error: describeError(error),
      });
    }
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
