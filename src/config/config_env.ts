/**
 * Reads flexo's `FLEXO_*` environment variables into a configuration layer.
 *
 * Names and encodings follow flexo: `FLEXO_<KEY>` for top-level keys and `FLEXO_<SECTION>_<KEY>` for the keys
 * of a table (`FLEXO_MIRRORS_AUTO_TIMEOUT`, `FLEXO_PREFETCH_INTERVAL`). Numbers and booleans are TOML values
 * (`FLEXO_PORT=7879`), strings are taken as they are (quotes around the whole text are removed, with a warning),
 * lists are a TOML array (`FLEXO_MIRRORS_PREDEFINED="['http://a/']"`) or comma-separated
 * (`FLEXO_MIRRORS_AUTO_ALLOWED_COUNTRIES=DE,AT`), and `FLEXO_CUSTOM_REPO` holds space-separated `name@url`
 * entries. `FLEXO_LOG` (or `FLEXO_LOG_LEVEL`) sets `log_level`.
 *
 * @module
 */

import { parse as parseToml } from "smol-toml";
import type { MirrorsAutoKey, PrefetchKey, TopLevelKey } from "./config_schema.ts";
import { describeError } from "../logging.ts";

/**
 * Raw values from one source (file, environment or command line) before validation, with their origins.
 *
 * `values` has top-level keys, `mirrors_auto` as a plain object and `custom_repo` as a list of tables.
 */
export interface ConfigLayer {
  /** Describes the source for the `sources` list, e.g. "environment variables FLEXO_PORT, FLEXO_LOG". */
  label: string;
  /** The raw values, shaped like the TOML file. */
  values: Record<string, unknown>;
  /** Dotted key (e.g. "mirrors_auto.timeout") -> where it was set, e.g. "environment variable FLEXO_PORT". */
  origins: Record<string, string>;
  /** Things the user should know about, such as unknown or misplaced keys. */
  warnings: string[];
  /** Invalid input found while reading the source; see {@link formatProblem}. */
  problems: string[];
}

/**
 * Phrases one configuration problem so that it names the key, its source, the bad value and the expected form:
 * `port = "abc" (environment variable FLEXO_PORT): expected a whole number ...`.
 */
export function formatProblem(
  key: string,
  value: unknown,
  options: { origin: string; expected: string },
): string {
  const shown = value === undefined ? `${key} is missing` : `${key} = ${showValue(value)}`;
  return `${shown} (${options.origin}): expected ${options.expected}`;
}

/** A short JSON-like rendering of a configuration value for messages. */
export function showValue(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

/** The candidate within edit distance 3 of `word` (compared in lower case), if any; for "did you mean". */
export function closestName(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 4;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Levenshtein distance between two strings. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}

/** How an environment variable's text becomes a value. */
type EnvKind = "string" | "toml" | "list" | "custom_repo" | "table";

const TOP_LEVEL_KINDS: Record<TopLevelKey, EnvKind> = {
  cache_directory: "string",
  mirrorlist_fallback_file: "string",
  mirrorlist_latency_test_results_file: "string",
  port: "toml",
  listen_ip_address: "list",
  mirror_selection_method: "string",
  mirrors_predefined: "list",
  connect_timeout: "toml",
  low_speed_limit: "toml",
  low_speed_limit_formatted: "string",
  low_speed_time_secs: "toml",
  client_timeout_secs: "toml",
  sendfile: "toml",
  offline: "toml",
  max_connections: "toml",
  max_speed_limit: "toml",
  num_versions_retain: "toml",
  refresh_latency_tests_after: "string",
  custom_repo: "custom_repo",
  mirrors_auto: "table",
  prefetch: "table",
  max_cache_size: "toml",
  allowed_clients: "list",
  cache_peers: "list",
  trusted_proxies: "list",
  node_name: "string",
  shutdown_drain_secs: "toml",
  log_level: "string",
};

const MIRRORS_AUTO_KINDS: Record<MirrorsAutoKey, EnvKind> = {
  mirrors_status_json_endpoint: "string",
  mirrors_status_json_endpoint_fallbacks: "list",
  mirrors_blacklist: "list",
  https_required: "toml",
  ipv4: "toml",
  ipv6: "toml",
  max_score: "toml",
  num_mirrors: "toml",
  mirrors_random_or_sort: "string",
  timeout: "toml",
  allowed_countries: "list",
  min_completion_pct: "toml",
  max_delay_secs: "toml",
};

const PREFETCH_KINDS: Record<PrefetchKey, EnvKind> = {
  enabled: "toml",
  interval: "string",
  unaccessed_days: "toml",
  max_bytes_per_run: "toml",
  max_parallel: "toml",
};

/** A table of the configuration (a `[section]`), read from `FLEXO_<SECTION>_<KEY>`. */
type TableName = "mirrors_auto" | "prefetch";

/** The keys of every table and how their variables are read. */
const TABLE_KINDS: Record<TableName, Record<string, EnvKind>> = {
  mirrors_auto: MIRRORS_AUTO_KINDS,
  prefetch: PREFETCH_KINDS,
};
const TABLE_NAMES = Object.keys(TABLE_KINDS) as TableName[];

const PREFIX = "FLEXO_";
const LOG_VARIABLES = ["FLEXO_LOG", "FLEXO_LOG_LEVEL"];

/** `FLEXO_MIRRORS_AUTO_` for "mirrors_auto". */
function tablePrefix(table: TableName): string {
  return `${PREFIX}${table.toUpperCase()}_`;
}

/** Every variable name this module understands. */
const KNOWN_VARIABLES: string[] = [
  ...Object.keys(TOP_LEVEL_KINDS).filter((key) => TOP_LEVEL_KINDS[key as TopLevelKey] !== "table").map((
    key,
  ) => PREFIX + key.toUpperCase()),
  ...TABLE_NAMES.flatMap((table) =>
    Object.keys(TABLE_KINDS[table]).map((key) => tablePrefix(table) + key.toUpperCase())
  ),
  ...LOG_VARIABLES,
];

const LIST_FORM = "a TOML array such as ['a', 'b'] or comma-separated values such as a,b";
const CUSTOM_REPO_FORM = 'space-separated name@url entries such as "archzfs@https://archzfs.com ' +
  'arm@https://a.example,https://b.example" (several URLs for one repo are separated by commas)';

function isTopLevelKey(key: string): key is TopLevelKey {
  return Object.hasOwn(TOP_LEVEL_KINDS, key) && TOP_LEVEL_KINDS[key as TopLevelKey] !== "table";
}

/** The tables that have a key of this name. */
function tablesWithKey(key: string): TableName[] {
  return TABLE_NAMES.filter((table) => Object.hasOwn(TABLE_KINDS[table], key));
}

/** The environment variable flexo reads for a dotted key: "port" -> "FLEXO_PORT". */
export function envVarName(dottedKey: string): string {
  if (dottedKey === "log_level") return "FLEXO_LOG";
  return PREFIX + dottedKey.replace(/\./g, "_").toUpperCase();
}

/** Where one variable goes: a table ("" for top level) and a key, plus a warning if misplaced. */
interface Target {
  table: "" | TableName;
  key: string;
  kind: EnvKind;
  misplacedNote?: string;
}

/** Finds the key an environment variable sets, or undefined when it is unknown. */
function targetOf(name: string): Target | undefined {
  if (LOG_VARIABLES.includes(name)) return { table: "", key: "log_level", kind: "string" };
  for (const table of TABLE_NAMES) {
    if (!name.startsWith(tablePrefix(table))) continue;
    const key = name.slice(tablePrefix(table).length).toLowerCase();
    if (Object.hasOwn(TABLE_KINDS[table], key)) return { table, key, kind: TABLE_KINDS[table][key] };
    if (isTopLevelKey(key)) {
      return {
        table: "",
        key,
        kind: TOP_LEVEL_KINDS[key],
        misplacedNote: `${name}: ${key} is a top-level key, not part of [${table}]; ` +
          `read as ${envVarName(key)} (rename the variable to silence this warning)`,
      };
    }
    return undefined;
  }
  const key = name.slice(PREFIX.length).toLowerCase();
  if (isTopLevelKey(key)) return { table: "", key, kind: TOP_LEVEL_KINDS[key] };
  // A table's key without its section: read when exactly one table has that key.
  const tables = tablesWithKey(key);
  if (tables.length === 1) {
    const table = tables[0];
    return {
      table,
      key,
      kind: TABLE_KINDS[table][key],
      misplacedNote: `${name}: ${key} belongs to [${table}]; read as ${envVarName(`${table}.${key}`)} ` +
        "(rename the variable to silence this warning)",
    };
  }
  return undefined;
}

/** Parses `text` as a single TOML value, or returns undefined when it is not valid TOML. */
function tomlValue(text: string): { value: unknown } | { error: string } {
  try {
    const document = parseToml(`value = ${text}`) as { value: unknown };
    return { value: plain(document.value) };
  } catch (error) {
    return { error: describeError(error).split("\n")[0] };
  }
}

/** Copies TOML output into ordinary objects and arrays (smol-toml makes prototype-less objects). */
export function plain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === "object" && !(value instanceof Date)) {
    const result: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) result[key] = plain(inner);
    return result;
  }
  return value;
}

/** Splits "a, b,,c" into ["a", "b", "c"]. */
function commaSeparated(text: string): string[] {
  return text.split(",").map((part) => part.trim()).filter((part) => part !== "");
}

/**
 * The text inside the quotes of `"text"` or `'text'` (blanks around them allowed), or undefined when `text` is
 * not quoted so. No path, URL or word of the configuration is quoted itself: the quotes are ones that a shell
 * would have removed but an env file or a compose list entry kept.
 */
function unquotedText(text: string): string | undefined {
  const quoted = /^\s*(?:"([^"]*)"|'([^']*)')\s*$/.exec(text);
  return quoted === null ? undefined : quoted[1] ?? quoted[2];
}

/** Decodes `FLEXO_CUSTOM_REPO` ("name@url name2@url2,url3") into `[[custom_repo]]` tables. */
function customReposOf(text: string, report: (token: string) => void): Record<string, unknown>[] {
  const repos: Record<string, unknown>[] = [];
  for (const token of text.split(/\s+/).filter((part) => part !== "")) {
    const at = token.indexOf("@");
    if (at <= 0 || at === token.length - 1) {
      report(token);
      continue;
    }
    const urls = commaSeparated(token.slice(at + 1));
    repos.push({ name: token.slice(0, at), url: urls.length === 1 ? urls[0] : urls });
  }
  return repos;
}

/**
 * Reads every `FLEXO_*` variable of `env` into a layer; unknown variables and misplaced keys become warnings,
 * undecodable values become problems. Values are not validated here (the schema does that).
 */
export function configLayerFromEnv(env: Record<string, string>): ConfigLayer {
  const layer: ConfigLayer = { label: "", values: {}, origins: {}, warnings: [], problems: [] };
  const tables: Partial<Record<TableName, Record<string, unknown>>> = {};
  const used: string[] = [];
  const names = Object.keys(env).filter((name) => name.startsWith(PREFIX)).sort();
  // Correctly named variables first, so that they win over misplaced ones setting the same key.
  const targets = names.map((name) => ({ name, target: targetOf(name) }));
  targets.sort((a, b) =>
    Number(a.target?.misplacedNote !== undefined) - Number(b.target?.misplacedNote !== undefined)
  );
  const flexoLog = env["FLEXO_LOG"];
  const flexoLogLevel = env["FLEXO_LOG_LEVEL"];
  if (flexoLog !== undefined && flexoLogLevel !== undefined && flexoLog !== flexoLogLevel) {
    layer.warnings.push(
      `Both FLEXO_LOG (${showValue(flexoLog)}) and FLEXO_LOG_LEVEL (${showValue(flexoLogLevel)}) are set; ` +
        "FLEXO_LOG is used. Unset one of them.",
    );
  }
  // The Rust flexo's images and units set RUST_LOG for its log level; here it would do nothing, unsaid.
  if (env["RUST_LOG"] !== undefined && flexoLog === undefined && flexoLogLevel === undefined) {
    layer.warnings.push(
      `RUST_LOG (${showValue(env["RUST_LOG"])}) is the Rust flexo's log setting and has no effect here; ` +
        "set FLEXO_LOG_LEVEL (or log_level in flexo.toml) instead, to error, warning, info, debug or trace.",
    );
  }
  for (const { name, target } of targets) {
    if (target === undefined) {
      const suggestion = closestName(name, KNOWN_VARIABLES);
      const hint = suggestion === undefined ? "" : ` Did you mean ${suggestion}?`;
      layer.warnings.push(
        `Unknown environment variable ${name} is ignored.${hint} Variables are named FLEXO_<KEY> for ` +
          "top-level keys and FLEXO_<SECTION>_<KEY> for the keys of a [section] table, such as " +
          "FLEXO_MIRRORS_AUTO_TIMEOUT or FLEXO_PREFETCH_INTERVAL (see docs/configuration.md).",
      );
      continue;
    }
    const dottedKey = target.table === "" ? target.key : `${target.table}.${target.key}`;
    if (Object.hasOwn(layer.origins, dottedKey)) {
      if (name !== "FLEXO_LOG_LEVEL") {
        layer.warnings.push(`${name} is ignored because ${layer.origins[dottedKey]} also sets ${dottedKey}.`);
      }
      continue;
    }
    if (target.misplacedNote !== undefined) layer.warnings.push(target.misplacedNote);
    const origin = `environment variable ${name}`;
    const text = env[name];
    if (text === "" && target.kind !== "list" && target.kind !== "custom_repo") {
      layer.warnings.push(`${name} is empty and is ignored; unset it or give it a value.`);
      continue;
    }
    let value: unknown;
    if (target.kind === "toml") {
      const parsed = tomlValue(text);
      // Text that is not a TOML value is passed on as it is, so that the schema can say what was expected.
      value = "value" in parsed ? parsed.value : text;
    } else if (target.kind === "list") {
      const parsed = text.trimStart().startsWith("[") ? tomlValue(text) : undefined;
      // "[::]" is no TOML array but a bracketed IPv6 address, which the Rust flexo listens on.
      const bracketedAddress = target.key === "listen_ip_address" && !/['"]/.test(text);
      if (parsed !== undefined && !("error" in parsed && bracketedAddress)) {
        if ("error" in parsed) {
          layer.problems.push(
            formatProblem(dottedKey, text, { origin, expected: `${LIST_FORM} (TOML says: ${parsed.error})` }),
          );
          continue;
        }
        value = parsed.value;
      } else {
        value = commaSeparated(text);
      }
    } else if (target.kind === "custom_repo") {
      value = customReposOf(text, (token) => {
        layer.problems.push(formatProblem("custom_repo", token, { origin, expected: CUSTOM_REPO_FORM }));
      });
    } else {
      const unquoted = unquotedText(text);
      if (unquoted !== undefined) {
        layer.warnings.push(
          `${name} is written with quotes (${text.trim()}); the text inside them is used. Variables take ` +
            "their text as it is, so leave them out (docker --env-file and a compose list entry keep them).",
        );
      }
      value = unquoted ?? text;
    }
    if (target.table !== "") {
      (tables[target.table] ??= {})[target.key] = value;
    } else {
      layer.values[target.key] = value;
    }
    layer.origins[dottedKey] = origin;
    used.push(name);
  }
  for (const [table, values] of Object.entries(tables)) layer.values[table] = values;
  layer.label = used.length === 0 ? "" : `environment variables ${used.join(", ")}`;
  return layer;
}
