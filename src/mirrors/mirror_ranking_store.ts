/**
 * The persisted mirror ranking (`mirrorlist_latency_test_results_file`), so that the next start can reuse it
 * instead of testing all mirrors again; and flexo's plain list of the ranked mirrors (`mirrorlist_fallback_file`),
 * the stand-in when there is no ranking and the status JSON cannot be fetched.
 *
 * The file is JSON: `{ "version": 4, "timestamp": "<ISO 8601>", "settings": "...", "mirrors": [{ "url",
 * "latencyMs", "countryCode", "score" }] }`, best mirror first. Version 4 follows flexo's own format version 3, which is
 * still read so that a user switching from flexo keeps their ranking.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { z } from "zod";
import { writeAtomically } from "../atomic_write.ts";

/** One mirror of a stored ranking. */
export interface RankedMirror {
  /** Base URL ending with "/". */
  url: string;
  /** Latency measured by the latency test, in milliseconds. */
  latencyMs: number;
  /** Two-letter country code, "" if unknown. */
  countryCode: string;
  /** Score from the status JSON, null if unknown. */
  score: number | null;
}

/** A ranking with the time it was made. */
export interface StoredRanking {
  /** The format version, {@linkcode RANKING_FILE_VERSION}. */
  version: number;
  /** When the latency tests ran (ISO 8601). */
  timestamp: string;
  /** The settings the ranking was made under, as chosen by the caller; a change means the ranking is stale. */
  settings?: string;
  /** Best mirror first. */
  mirrors: RankedMirror[];
}

/** The version written by {@linkcode writeRanking}. */
export const RANKING_FILE_VERSION = 4;

/** A mirror's base URL: http(s) with a host, as the status JSON gives them (a corrupt one reaches nothing). */
const mirrorUrl = z.string().refine(
  (s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol) && new URL(s).hostname !== "",
  "not an http(s) URL",
);

const rankingSchema = z.object({
  version: z.literal(RANKING_FILE_VERSION),
  timestamp: z.string().refine((s) => Number.isFinite(Date.parse(s)), "not a valid date"),
  settings: z.string().optional(),
  mirrors: z.array(z.object({
    url: mirrorUrl,
    latencyMs: z.number().nonnegative(),
    countryCode: z.string(),
    score: z.number().nullable(),
  })),
});

/** serde's encoding of a Rust `Duration`. */
const rustDuration = z.object({ secs: z.number(), nanos: z.number() });

/** flexo's (Rust) format version 3. */
const flexoRankingSchema = z.object({
  version: z.literal(3),
  timestamp: z.string().refine((s) => Number.isFinite(Date.parse(s)), "not a valid date"),
  download_providers: z.array(z.object({
    uri: mirrorUrl,
    country_code: z.string(),
    mirror_results: z.object({ total_time: rustDuration, namelookup_duration: rustDuration }),
  })),
});

/** Options for {@linkcode readRankingSync}. */
export interface ReadRankingOptions {
  /** Receives a warning when the file exists but cannot be used. */
  log?: { warn(msg: string): void };
}

/**
 * Reads a stored ranking synchronously (it is tiny, and the proxy needs it before serving the first request).
 *
 * @returns The ranking, or undefined when the file is missing, unreadable or corrupt (with a warning for the
 * latter two: the ranking is simply made again).
 */
export function readRankingSync(path: string, options: ReadRankingOptions = {}): StoredRanking | undefined {
  const text = readTextSync(
    path,
    options,
    (message) =>
      `Could not read the mirror ranking ${path} (${message}); the mirrors will be tested ` +
      `again. Check the permissions of mirrorlist_latency_test_results_file.`,
  );
  if (text === undefined) return undefined;
  const ranking = parseRanking(text);
  if (typeof ranking === "string") {
    options.log?.warn(
      `Ignoring the mirror ranking ${path}: ${ranking}. The mirrors will be tested again and the file rewritten.`,
    );
    return undefined;
  }
  return ranking;
}

/**
 * Parses the text of a ranking file (this program's format or flexo's version 3).
 *
 * @returns The ranking, or a description of what is wrong with the text.
 */
export function parseRanking(text: string): StoredRanking | string {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return `it is not valid JSON (${(error as Error).message})`;
  }
  const ours = rankingSchema.safeParse(json);
  if (ours.success) {
    const mirrors = ours.data.mirrors.map((m) => ({ ...m, url: m.url.endsWith("/") ? m.url : `${m.url}/` }));
    return { ...ours.data, mirrors };
  }
  const flexo = flexoRankingSchema.safeParse(json);
  if (flexo.success) {
    return {
      version: RANKING_FILE_VERSION,
      timestamp: new Date(Date.parse(flexo.data.timestamp)).toISOString(),
      mirrors: flexo.data.download_providers.map((p) => ({
        url: p.uri.endsWith("/") ? p.uri : `${p.uri}/`,
        latencyMs: Math.max(
          0,
          toMs(p.mirror_results.total_time) - toMs(p.mirror_results.namelookup_duration),
        ),
        countryCode: p.country_code,
        score: null,
      })),
    };
  }
  const issue = ours.error.issues[0];
  return `unexpected content at ${issue.path.join(".") || "the top level"} (${issue.message}); expected ` +
    `version ${RANKING_FILE_VERSION}`;
}

function toMs(duration: { secs: number; nanos: number }): number {
  return duration.secs * 1000 + duration.nanos / 1e6;
}

/**
 * How old a ranking is, in milliseconds, at time `now` (milliseconds since the epoch).
 * A ranking from the future counts as infinitely old, so that a wrong clock cannot freeze it.
 */
export function rankingAgeMs(ranking: StoredRanking, now: number): number {
  const age = now - Date.parse(ranking.timestamp);
  return age < 0 ? Infinity : age;
}

/**
 * Writes a ranking atomically: to a temporary file in the same directory, flushed, then renamed over `path`,
 * so that a crash never leaves a half-written file. Creates the directory if needed.
 */
export async function writeRanking(path: string, ranking: Omit<StoredRanking, "version">): Promise<void> {
  const stored: StoredRanking = { version: RANKING_FILE_VERSION, ...ranking };
  await writeStateFile(path, `${JSON.stringify(stored, null, 2)}\n`, "mirrorlist_latency_test_results_file");
}

/**
 * Reads `mirrorlist_fallback_file`, flexo's plain mirror list: one base URL a line, best first (as the original
 * writes it). Empty lines and `#` comments are skipped, and so is a pacman mirrorlist's `Server = ` with its
 * `$repo/os/$arch` ending, so that a hand-written list works too.
 *
 * @returns The URLs, or undefined when the file is missing, unreadable or lists no http(s) URL (with a warning
 * for the latter two).
 */
export function readMirrorListSync(path: string, options: ReadRankingOptions = {}): string[] | undefined {
  const text = readTextSync(
    path,
    options,
    (message) =>
      `Could not read the mirror list ${path} (${message}); check the permissions of ` +
      "mirrorlist_fallback_file.",
  );
  if (text === undefined) return undefined;
  const urls: string[] = [];
  const refused: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim().replace(/^Server\s*=\s*/i, "").replace(
      /\$repo\/os\/\$arch$/,
      "",
    );
    if (line === "") continue;
    if (/^https?:\/\/[^\s/]+/.test(line)) urls.push(line);
    else refused.push(line);
  }
  if (refused.length > 0) {
    options.log?.warn(
      `Ignoring ${refused.length} line(s) of the mirror list ${path} that are not http(s) URLs (first: ` +
        `"${refused[0]}"); write one mirror URL a line.`,
    );
  }
  return urls.length > 0 ? urls : undefined;
}

/** Writes `urls` to `mirrorlist_fallback_file` atomically, one a line, as flexo does (no newline at the end). */
export async function writeMirrorList(path: string, urls: readonly string[]): Promise<void> {
  await writeStateFile(path, urls.join("\n"), "mirrorlist_fallback_file");
}

/**
 * Writes `text` over `path` durably with {@linkcode writeAtomically} (flushed, renamed, its folder flushed), so
 * that a crash never leaves a half-written file, and removes older leftovers. An error names `setting`.
 */
async function writeStateFile(path: string, text: string, setting: string): Promise<void> {
  const directory = dirname(path);
  try {
    await writeAtomically(path, text, {
      temporary: join(directory, `.${basename(path)}.${crypto.randomUUID()}.tmp`),
      durable: true,
      mode: 0o644,
    });
    await removeLeftovers(directory, basename(path));
  } catch (error) {
    throw new Error(
      `Could not write ${path}: ${
        (error as Error).message
      }. Check that the directory of ${setting} is writable.`,
      { cause: error },
    );
  }
}

/** A write in progress for longer than this is one that a kill or a crash ended: its temporary file goes. */
const LEFTOVER_AGE_MS = 10 * 60 * 1000;

/**
 * Removes the temporary files of writes of `name` in `directory` (and, of flexo versions before, of any state
 * file there: `.<uuid>.tmp`) that a kill or a crash left between creation and rename; each crash would add one
 * for good. Only those older than {@linkcode LEFTOVER_AGE_MS}: a younger one may be another process's write.
 * Never throws: a leftover that stays is tried again at the next write.
 */
async function removeLeftovers(directory: string, name: string): Promise<void> {
  const uuid = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
  const ours = new RegExp(`^\\.(${RegExp.escape(name)}\\.)?${uuid}\\.tmp$`);
  try {
    for await (const entry of Deno.readDir(directory)) {
      if (!entry.isFile || !ours.test(entry.name)) continue;
      const leftover = join(directory, entry.name);
      const modified = (await Deno.lstat(leftover)).mtime?.getTime() ?? Date.now();
      if (Date.now() - modified > LEFTOVER_AGE_MS) await Deno.remove(leftover);
    }
  } catch {
    // Listing or removing failed (a race with another process, permissions): the next write tries again.
  }
}

/**
 * The text of the state file at `path`, or undefined when it is missing (quietly) or unreadable (with the
 * warning `unreadable` makes of the error's message).
 */
function readTextSync(
  path: string,
  options: ReadRankingOptions,
  unreadable: (message: string) => string,
): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) options.log?.warn(unreadable((error as Error).message));
    return undefined;
  }
}
