/**
 * The Arch Linux mirror status JSON (https://archlinux.org/mirrors/status/json/): fetching it from the
 * configured endpoint or its fallbacks, validating it, and filtering the mirrors by the `[mirrors_auto]` settings.
 *
 * @module
 */

import { USER_AGENT } from "../version.ts";
import { z } from "zod";
import type { MirrorsAutoConfig } from "../config/config_schema.ts";
import { describeError } from "../logging.ts";

/** One mirror URL from the status JSON, with the fields flexo uses. */
export interface MirrorStatusEntry {
  /** Base URL of the mirror, normalised to end with "/". */
  url: string;
  /** "http", "https", "rsync", "ftp", ... */
  protocol: string;
  /** Two-letter ISO country code; "" for global mirrors (CDNs). */
  country_code: string;
  /** The mirror score from archlinux.org (lower is better); null when the mirror was never checked. */
  score: number | null;
  /** Fraction of successful checks, 0..1. */
  completion_pct: number | null;
  /** Seconds the mirror lags behind the master; null when unknown. */
  delay: number | null;
  /** Time of the last successful sync (ISO 8601), if known. */
  last_sync: string | null;
  /** Whether the mirror is reachable over IPv4. */
  ipv4: boolean;
  /** Whether the mirror is reachable over IPv6. */
  ipv6: boolean;
  /** False when the Arch Linux team disabled the mirror. */
  active: boolean;
  /** Average time in seconds the status checks took, if known. */
  duration_avg: number | null;
}

/** Options for {@linkcode fetchMirrorStatus}. */
export interface FetchMirrorStatusDeps {
  /** The fetch implementation (injected so that tests and the proxy can control it). */
  fetch: typeof fetch;
  /** Aborts all requests, e.g. when the proxy shuts down. */
  signal?: AbortSignal;
  /** Time allowed for each endpoint, headers and body. Default 30 seconds. */
  timeoutMs?: number;
  /** Receives a warning for each endpoint that failed and for malformed entries that were skipped. */
  log?: { info(msg: string): void; warn(msg: string): void };
}

const nullableNumber = z.number().nullable().optional().transform((v) => v ?? null);

const entrySchema = z.object({
  url: z.string().min(1),
  protocol: z.string(),
  country_code: z.string().nullable().optional().transform((v) => v ?? ""),
  score: nullableNumber,
  completion_pct: nullableNumber,
  delay: nullableNumber,
  last_sync: z.string().nullable().optional().transform((v) => v ?? null),
  ipv4: z.boolean().optional().default(false),
  ipv6: z.boolean().optional().default(false),
  active: z.boolean().optional().default(true),
  duration_avg: nullableNumber,
});

const documentSchema = z.object({ urls: z.array(z.unknown()) });

/** Thrown when no endpoint delivered a usable mirror status document. */
export class MirrorStatusError extends Error {
  /** Creates the error; `cause` carries the underlying error, if any. */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "MirrorStatusError";
  }
}

/**
 * Validates a parsed status document and returns its mirror entries.
 *
 * Entries that are malformed are skipped (the rest of the document is still useful); the document itself must
 * have a `urls` array, and at least one entry must be valid when the array is not empty. So are entries whose
 * URL is no mirror base URL (see `urlProblem`): flexo would send its requests there.
 *
 * @param json The parsed JSON body.
 * @param source Where the document came from, for error messages.
 * @returns The valid entries (URLs normalised to end with "/") and how many entries were skipped.
 * @throws {MirrorStatusError} when the document does not have the expected shape.
 */
export function parseMirrorStatus(
  json: unknown,
  source: string,
): { entries: MirrorStatusEntry[]; skipped: number } {
  const document = documentSchema.safeParse(json);
  if (!document.success) {
    throw new MirrorStatusError(
      `The mirror status from ${source} is not in the expected format (${describeIssues(document.error)}); ` +
        `expected an object with a "urls" array like https://archlinux.org/mirrors/status/json/. ` +
        `Check [mirrors_auto] mirrors_status_json_endpoint.`,
    );
  }
  const entries: MirrorStatusEntry[] = [];
  const local = isLocalSource(source);
  const seen = new Set<string>();
  let skipped = 0;
  let firstProblem = "";
  for (const [index, raw] of document.data.urls.entries()) {
    const entry = entrySchema.safeParse(raw);
    if (!entry.success) {
      skipped++;
      firstProblem ||= `urls[${index}]: ${describeIssues(entry.error)}`;
      continue;
    }
    const hostile = urlProblem(entry.data.url, entry.data.protocol, local);
    if (hostile !== undefined) {
      skipped++;
      firstProblem ||= `urls[${index}]: ${hostile}`;
      continue;
    }
    const url = entry.data.url.endsWith("/") ? entry.data.url : `${entry.data.url}/`;
    if (seen.has(url)) continue;
    seen.add(url);
    entries.push({ ...entry.data, url });
  }
  if (entries.length === 0 && skipped > 0) {
    throw new MirrorStatusError(
      `The mirror status from ${source} has no valid mirror entry (${firstProblem}). ` +
        `Check [mirrors_auto] mirrors_status_json_endpoint.`,
    );
  }
  return { entries, skipped };
}

/**
 * Why an entry's URL cannot be a mirror's base URL, or undefined when it can: its scheme must be its `protocol`
 * (a `file:` URL said to be "https" would read local files), without credentials, query or fragment (the file's
 * path is appended to it), and on this host only when the status JSON came from this host too (a test setup; the
 * real one never lists such mirrors, and they would be local services).
 */
function urlProblem(raw: string, protocol: string, localSource: boolean): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "url: not a valid URL";
  }
  if (url.protocol !== `${protocol}:`) return `url: a ${url.protocol} URL, but protocol "${protocol}"`;
  if (url.username !== "" || url.password !== "") return "url: has a user name or password";
  if (raw.includes("?") || raw.includes("#")) return "url: has a query or fragment";
  if (!localSource && isLoopbackHost(url.hostname)) return `url: ${url.host} is this host`;
  return undefined;
}

/** Whether a status JSON from `source` (an endpoint URL) comes from this host: a `file:` or loopback URL. */
function isLocalSource(source: string): boolean {
  if (!URL.canParse(source)) return false;
  const url = new URL(source);
  return url.protocol === "file:" || isLoopbackHost(url.hostname);
}

/** `localhost` and its subdomains, 127.0.0.0/8, the unspecified addresses and ::1 (also IPv4-mapped). */
function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  if (host === "localhost" || host.endsWith(".localhost") || host === "0.0.0.0") return true;
  if (/^127\.\d+\.\d+\.\d+$/.test(host)) return true;
  return host === "::1" || host === "::" || /^::ffff:(7f[0-9a-f]{2}:|0:0$|127\.)/.test(host);
}

/**
 * Fetches the mirror status from `mirrors_status_json_endpoint`, then from each of
 * `mirrors_status_json_endpoint_fallbacks` until one delivers a valid document.
 *
 * @returns The mirror entries of the first valid document.
 * @throws {MirrorStatusError} naming every endpoint and what went wrong with it, when all fail.
 */
export async function fetchMirrorStatus(
  mirrorsAuto: Pick<
    MirrorsAutoConfig,
    "mirrors_status_json_endpoint" | "mirrors_status_json_endpoint_fallbacks"
  >,
  deps: FetchMirrorStatusDeps,
): Promise<MirrorStatusEntry[]> {
  const endpoints = [
    mirrorsAuto.mirrors_status_json_endpoint,
    ...mirrorsAuto.mirrors_status_json_endpoint_fallbacks,
  ];
  const problems: string[] = [];
  for (const endpoint of endpoints) {
    if (deps.signal?.aborted) break;
    try {
      const json = await fetchJson(endpoint, deps);
      const { entries, skipped } = parseMirrorStatus(json, endpoint);
      if (skipped > 0) {
        deps.log?.warn(`Skipped ${skipped} malformed mirror entries in the status from ${endpoint}.`);
      }
      deps.log?.info(`Fetched the status of ${entries.length} mirrors from ${endpoint}.`);
      return entries;
    } catch (error) {
      if (deps.signal?.aborted) break;
      const reason = describeError(error);
      problems.push(reason);
      deps.log?.warn(reason);
    }
  }
  if (deps.signal?.aborted) throw new MirrorStatusError("Fetching the mirror status was aborted.");
  throw new MirrorStatusError(
    `Could not get the mirror status from any endpoint: ${problems.join(" ")} ` +
      `Check the network connection and [mirrors_auto] mirrors_status_json_endpoint(_fallbacks).`,
  );
}

async function fetchJson(endpoint: string, deps: FetchMirrorStatusDeps): Promise<unknown> {
  const timeoutMs = deps.timeoutMs ?? 30_000;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const onAbort = () => controller.abort();
  deps.signal?.addEventListener("abort", onAbort);
  if (deps.signal?.aborted) controller.abort();
  try {
    let response: Response;
    try {
      response = await deps.fetch(endpoint, {
        headers: { accept: "application/json", "user-agent": USER_AGENT },
        signal: controller.signal,
      });
    } catch (error) {
      throw new MirrorStatusError(
        `Could not fetch the mirror status from ${endpoint}: ${reasonOf(error, controller)}.`,
        {
          cause: error,
        },
      );
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new MirrorStatusError(
        `Could not fetch the mirror status from ${endpoint}: the server answered ${response.status} ` +
          `${response.statusText}.`,
      );
    }
    let text: string;
    try {
      text = await readText(response, endpoint);
    } catch (error) {
      if (error instanceof MirrorStatusError) throw error;
      throw new MirrorStatusError(
        `Could not read the mirror status from ${endpoint}: ${reasonOf(error, controller)}.`,
        { cause: error },
      );
    }
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new MirrorStatusError(
        `The mirror status from ${endpoint} is not valid JSON (${(error as Error).message}).`,
        { cause: error },
      );
    }
  } finally {
    clearTimeout(timer);
    deps.signal?.removeEventListener("abort", onAbort);
  }
}

/** The most a status JSON may have; the real one has about half a MiB. */
const MAX_STATUS_BYTES = 16 * 1024 * 1024;

/**
 * The body as text, read no further than {@linkcode MAX_STATUS_BYTES}: a wrong endpoint (an ISO image, an
 * endless stream) would otherwise fill the memory until the time limit.
 */
async function readText(response: Response, endpoint: string): Promise<string> {
  const tooLarge = () =>
    new MirrorStatusError(
      `The mirror status from ${endpoint} is larger than ${MAX_STATUS_BYTES / 1024 / 1024} MiB, which no ` +
        `mirror status is; check [mirrors_auto] mirrors_status_json_endpoint(_fallbacks).`,
    );
  if (Number(response.headers.get("content-length")) > MAX_STATUS_BYTES) {
    await response.body?.cancel();
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of response.body ?? []) {
    length += chunk.byteLength;
    if (length > MAX_STATUS_BYTES) throw tooLarge(); // leaving the loop cancels the body
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

function reasonOf(error: unknown, controller: AbortController): string {
  if (controller.signal.aborted) return "no complete answer within the time limit (or aborted)";
  return describeError(error);
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join(".") : "document"}: ${issue.message}`)
    .join("; ");
}

/** Options for {@linkcode filterMirrors}. */
export interface FilterMirrorsOptions {
  /** Random numbers in [0, 1) for `mirrors_random_or_sort = "random"`. Default `Math.random`. */
  random?: () => number;
}

/**
 * Why a mirror does not qualify under the `[mirrors_auto]` settings, or undefined when it does.
 *
 * A mirror is excluded when its protocol is neither http nor https (or not https with `https_required`), it
 * lacks IPv4/IPv6 when that is required, its score is unknown or above `max_score`, its country is not in a
 * non-empty `allowed_countries`, it matches `mirrors_blacklist` (a URL prefix or a host name), it is inactive,
 * incomplete (`completion_pct < min_completion_pct`) or lags behind (`delay` unknown or above `max_delay_secs`).
 */
export function exclusionReason(
  entry: MirrorStatusEntry,
  mirrorsAuto: MirrorsAutoConfig,
): string | undefined {
  if (entry.protocol !== "http" && entry.protocol !== "https") return `protocol ${entry.protocol}`;
  if (mirrorsAuto.https_required && entry.protocol !== "https") return "not https (https_required)";
  let parsed: URL;
  try {
    parsed = new URL(entry.url);
  } catch {
    return "invalid URL";
  }
  if (mirrorsAuto.ipv4 && !entry.ipv4) return "no IPv4 (ipv4 = true)";
  if (mirrorsAuto.ipv6 && !entry.ipv6) return "no IPv6 (ipv6 = true)";
  if (entry.score === null) return "no score";
  if (entry.score > mirrorsAuto.max_score) {
    return `score ${entry.score} above max_score ${mirrorsAuto.max_score}`;
  }
  if (mirrorsAuto.allowed_countries.length > 0) {
    const country = entry.country_code.toUpperCase();
    if (!mirrorsAuto.allowed_countries.some((c) => c.toUpperCase() === country)) {
      return `country "${entry.country_code}" not in allowed_countries`;
    }
  }
  const blacklisted = mirrorsAuto.mirrors_blacklist.find((item) => matchesBlacklist(parsed, item));
  if (blacklisted !== undefined) return `blacklisted by "${blacklisted}"`;
  if (!entry.active) return "inactive";
  if ((entry.completion_pct ?? 0) < mirrorsAuto.min_completion_pct) {
    return `completion_pct ${entry.completion_pct} below min_completion_pct ${mirrorsAuto.min_completion_pct}`;
  }
  if (entry.delay === null) return "sync delay unknown";
  if (entry.delay > mirrorsAuto.max_delay_secs) {
    return `lags ${entry.delay} s behind (max_delay_secs ${mirrorsAuto.max_delay_secs})`;
  }
  return undefined;
}

/**
 * A blacklist item with "://" is a URL prefix ending at a path segment boundary; otherwise it is a host name,
 * with or without the port.
 */
function matchesBlacklist(url: URL, item: string): boolean {
  const wanted = item.trim().toLowerCase();
  if (wanted === "") return false;
  if (wanted.includes("://")) {
    return url.href.toLowerCase().startsWith(wanted.endsWith("/") ? wanted : `${wanted}/`);
  }
  return url.host === wanted || url.hostname === wanted;
}

/**
 * The mirrors that qualify under the `[mirrors_auto]` settings (see {@linkcode exclusionReason}), best score
 * first with `mirrors_random_or_sort = "sort"`, or shuffled with `"random"`.
 */
export function filterMirrors(
  entries: readonly MirrorStatusEntry[],
  mirrorsAuto: MirrorsAutoConfig,
  options: FilterMirrorsOptions = {},
): MirrorStatusEntry[] {
  const kept = entries.filter((entry) => exclusionReason(entry, mirrorsAuto) === undefined);
  if (mirrorsAuto.mirrors_random_or_sort === "random") {
    const random = options.random ?? Math.random;
    // Fisher-Yates shuffle.
    for (let i = kept.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [kept[i], kept[j]] = [kept[j], kept[i]];
    }
    return kept;
  }
  // Every kept entry has a score (null scores are excluded); the sort is stable for equal scores.
  return kept.sort((a, b) => (a.score ?? Infinity) - (b.score ?? Infinity));
}
