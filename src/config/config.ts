/**
 * Loads flexo's configuration: built-in defaults, then the TOML file (`/etc/flexo/flexo.toml` unless told
 * otherwise), then `FLEXO_*` environment variables, then command-line overrides, each layer overriding the
 * one before. Every problem found is collected into one {@link ConfigError}; everything odd but usable
 * (unknown keys, keys in the wrong table) becomes a warning.
 *
 * @module
 */

import { isAbsolute, resolve } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { parse as parseToml, stringify as stringifyToml, TomlError } from "smol-toml";
import {
  type Config,
  configSchema,
  CUSTOM_REPO_KEYS,
  DEFAULT_CONFIG_PATH,
  MIRRORS_AUTO_KEYS,
  PREFETCH_KEYS,
  TOP_LEVEL_KEYS,
} from "./config_schema.ts";
import {
  closestName,
  type ConfigLayer,
  configLayerFromEnv,
  formatProblem,
  plain,
  showValue,
} from "./config_env.ts";
import { describeError } from "../logging.ts";
import { redactUrls } from "../redact_url.ts";

export type { Config, CustomRepo, MirrorsAutoConfig } from "./config_schema.ts";

/**
 * Invalid configuration; `problems` lists every problem, each naming the key, its source, value and expected form.
 * The password of a URL in a problem is shown as `***` (the message goes to the journal; see redact_url.ts).
 */
export class ConfigError extends Error {
  /** One line per problem. */
  readonly problems: string[];

  /** Builds the error from a non-empty list of problems. */
  constructor(unredacted: string[]) {
    const problems = unredacted.map(redactUrls);
    const message = problems.length === 1
      ? `Invalid configuration: ${problems[0]}`
      : `Invalid configuration (${problems.length} problems):\n${problems.map((p) => `  - ${p}`).join("\n")}`;
    super(message);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** Settings given on the command line; they win over everything else. */
export interface ConfigOverrides {
  /** `port`. */
  port?: number;
  /** `listen_ip_address`. */
  listen?: string[];
  /** `cache_directory`. */
  cacheDir?: string;
  /** `log_level`. */
  logLevel?: string;
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** The TOML file to read; `/etc/flexo/flexo.toml` when not given. */
  configPath?: string;
  /** True when the user named the file (e.g. with `--config`): then a missing file is an error. */
  configPathExplicit?: boolean;
  /** Environment variables to read `FLEXO_*` settings from; none when not given. */
  env?: Record<string, string>;
  /** Command-line settings. */
  overrides?: ConfigOverrides;
  /** Dotted keys (e.g. "max_cache_size", "mirrors_auto.min_completion_pct") that are not used by any feature yet. */
  inactiveKeys?: string[];
  /** Reads a file; `Deno.readTextFile` when not given. Must throw `Deno.errors.NotFound` for a missing file. */
  readTextFile?: (path: string) => Promise<string>;
  /** The directory relative paths are read from; `Deno.cwd()` when not given. */
  cwd?: string;
}

/** What {@link loadConfig} produces. */
export interface LoadConfigResult {
  /** The validated effective configuration. */
  config: Config;
  /** Things the user should know about; the configuration is usable regardless. */
  warnings: string[];
  /** The sources used, lowest precedence first, e.g. "configuration file /etc/flexo/flexo.toml". */
  sources: string[];
}

/** The built-in default configuration. */
export function defaultConfig(): Config {
  return configSchema.parse({}, { jitless: true });
}

const CLI_OPTIONS: { override: keyof ConfigOverrides; key: string; option: string }[] = [
  { override: "port", key: "port", option: "--port" },
  { override: "listen", key: "listen_ip_address", option: "--listen" },
  { override: "cacheDir", key: "cache_directory", option: "--cache-dir" },
  { override: "logLevel", key: "log_level", option: "--log-level" },
];

/**
 * Loads, layers and validates the configuration (defaults < file < environment < command line).
 *
 * A missing file at the default path means built-in defaults; a missing file named explicitly is an error.
 *
 * @throws {ConfigError} listing every problem: unreadable file, TOML syntax (with line and column), bad values.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<LoadConfigResult> {
  const path = options.configPath ?? DEFAULT_CONFIG_PATH;
  const readTextFile = options.readTextFile ?? Deno.readTextFile;
  const sources = ["built-in defaults"];
  const layers: ConfigLayer[] = [];

  let text: string | undefined;
  try {
    text = await readTextFile(path);
  } catch (error) {
    if (!isNotFound(error)) {
      throw new ConfigError([
        `Cannot read the configuration file ${path}: ${
          describeError(error)
        }. Check that it is a readable file.`,
      ]);
    }
    if (options.configPathExplicit) {
      throw new ConfigError([
        `The configuration file ${path} does not exist. Check the path, or leave the option out to use ` +
        `${DEFAULT_CONFIG_PATH} (or the built-in defaults when that is missing too).`,
      ]);
    }
    sources.push(`no configuration file at ${path} (built-in defaults used)`);
  }
  if (text !== undefined) {
    layers.push(configLayerFromToml(text, path));
    sources.push(`configuration file ${path}`);
  }

  const envLayer = configLayerFromEnv(options.env ?? {});
  layers.push(envLayer);
  if (envLayer.label !== "") sources.push(envLayer.label);

  const cliLayer = configLayerFromOverrides(options.overrides ?? {});
  layers.push(cliLayer);
  if (cliLayer.label !== "") sources.push(cliLayer.label);

  const merged = mergeLayers(layers);
  const warnings = [...merged.warnings];
  const problems = [...merged.problems];
  // Parsed once per process: zod's generated fast path (`new Function`) would cost more to compile (5-15 ms of
  // start-up) than it saves on one parse.
  const result = configSchema.safeParse(merged.values, { jitless: true });
  if (result.success) {
    // Only a value that differs from the default asks for behaviour that does not exist yet; the shipped
    // flexo.toml repeats every default and must not cause warnings.
    const defaults = defaultConfig();
    for (const key of options.inactiveKeys ?? []) {
      const path = key.split(".");
      if (
        Object.hasOwn(merged.origins, key) &&
        !isDeepStrictEqual(valueAt(result.data, path), valueAt(defaults, path))
      ) {
        warnings.push(`${key} is accepted but has no effect yet (set in ${merged.origins[key]}).`);
      }
    }
  }
  if (!result.success) {
    for (const issue of result.error.issues) {
      const origin = originOf(issue.path, merged.origins);
      problems.push(
        formatProblem(pathText(issue.path), valueAt(merged.values, issue.path), {
          origin,
          expected: issue.message,
        }),
      );
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  if (!result.success) throw new ConfigError(["The configuration is invalid."]);
  const config = absolutePaths(result.data, options.cwd ?? Deno.cwd(), merged.origins, warnings);
  return { config, warnings, sources };
}

/** The keys whose values are file system paths. */
const PATH_KEYS = [
  "cache_directory",
  "mirrorlist_fallback_file",
  "mirrorlist_latency_test_results_file",
] as const;

/**
 * Makes every relative path absolute from `cwd`, once, so that every part of flexo and `check-config` name the
 * same place; warns for each, because another command (started in another directory) would read it elsewhere.
 */
function absolutePaths(
  config: Config,
  cwd: string,
  origins: Record<string, string>,
  warnings: string[],
): Config {
  const result = { ...config };
  for (const key of PATH_KEYS) {
    const path = config[key];
    if (isAbsolute(path)) continue;
    result[key] = resolve(cwd, path);
    warnings.push(
      `${key} = ${showValue(path)} (${
        origins[key]
      }) is a relative path, read from the directory flexo started ` +
        `in as ${
          result[key]
        }; a command started in another directory (flexo clean, flexo import) would use ` +
        "another one. Give an absolute path.",
    );
  }
  return result;
}

function isNotFound(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound || (error as { code?: unknown })?.code === "ENOENT";
}

/** Reads the TOML text of a configuration file into a layer, moving misplaced keys and dropping unknown ones. */
function configLayerFromToml(text: string, path: string): ConfigLayer {
  let document: Record<string, unknown>;
  try {
    document = plain(parseToml(text)) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof TomlError) {
      const reason = error.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
      throw new ConfigError([
        `${path}: TOML syntax error at line ${error.line}, column ${error.column}: ${reason}. ` +
        "Fix the syntax there (strings need double quotes, lists need brackets).",
      ]);
    }
    throw error;
  }
  const origin = `file ${path}`;
  const layer: ConfigLayer = { label: "", values: {}, origins: {}, warnings: [], problems: [] };
  const mirrorsAuto: Record<string, unknown> = {};
  // Keys found in the wrong table, with the table they were found in ("" for the top level).
  const misplacedTop: [string, unknown, string][] = [];
  const misplacedAuto: [string, unknown, string][] = [];

  for (const [key, value] of Object.entries(document)) {
    if (key === "mirrors_auto") {
      if (!isTable(value)) {
        layer.problems.push(
          formatProblem(key, value, { origin, expected: "a table, written as a [mirrors_auto] section" }),
        );
        continue;
      }
      for (const [innerKey, innerValue] of Object.entries(value)) {
        if (includes(MIRRORS_AUTO_KEYS, innerKey)) {
          mirrorsAuto[innerKey] = innerValue;
          layer.origins[`mirrors_auto.${innerKey}`] = origin;
        } else if (isPlainTopLevelKey(innerKey)) {
          misplacedTop.push([innerKey, innerValue, "mirrors_auto"]);
        } else {
          layer.warnings.push(unknownKeyWarning(path, `mirrors_auto.${innerKey}`, MIRRORS_AUTO_KEYS));
        }
      }
    } else if (key === "prefetch") {
      if (!isTable(value)) {
        layer.problems.push(
          formatProblem(key, value, { origin, expected: "a table, written as a [prefetch] section" }),
        );
        continue;
      }
      const prefetch: Record<string, unknown> = {};
      for (const [innerKey, innerValue] of Object.entries(value)) {
        if (includes(PREFETCH_KEYS, innerKey)) {
          prefetch[innerKey] = innerValue;
          layer.origins[`prefetch.${innerKey}`] = origin;
        } else if (isPlainTopLevelKey(innerKey)) {
          // The shipped file ends with [prefetch]: a line appended to it lands here.
          misplacedTop.push([innerKey, innerValue, "prefetch"]);
        } else if (includes(MIRRORS_AUTO_KEYS, innerKey)) {
          misplacedAuto.push([innerKey, innerValue, "prefetch"]);
        } else {
          layer.warnings.push(unknownKeyWarning(path, `prefetch.${innerKey}`, PREFETCH_KEYS));
        }
      }
      layer.values.prefetch = prefetch;
    } else if (key === "custom_repo") {
      layer.values.custom_repo = customReposFromToml(value, path, layer.warnings);
      layer.origins.custom_repo = origin;
    } else if (includes(TOP_LEVEL_KEYS, key)) {
      layer.values[key] = value;
      layer.origins[key] = origin;
    } else if (includes(MIRRORS_AUTO_KEYS, key)) {
      misplacedAuto.push([key, value, ""]);
    } else {
      layer.warnings.push(unknownKeyWarning(path, key, TOP_LEVEL_KEYS));
    }
  }

  for (const [key, value, table] of misplacedTop) {
    if (Object.hasOwn(layer.values, key)) {
      layer.warnings.push(
        `${path}: ${key} appears both at the top level and inside [${table}]; the top-level value is ` +
          `used. Remove the one inside [${table}].`,
      );
      continue;
    }
    layer.warnings.push(
      `${path}: ${key} is a top-level key but appears inside [${table}]; it is used as a top-level ` +
        `setting. Move it above the [${table}] line.`,
    );
    layer.values[key] = value;
    layer.origins[key] = `${origin}, inside [${table}]`;
  }
  for (const [key, value, table] of misplacedAuto) {
    const where = table === "" ? "at the top level" : `inside [${table}]`;
    if (Object.hasOwn(mirrorsAuto, key)) {
      layer.warnings.push(
        `${path}: ${key} appears both ${where} and inside [mirrors_auto]; the value inside ` +
          `[mirrors_auto] is used. Remove the ${table === "" ? "top-level one" : `one inside [${table}]`}.`,
      );
      continue;
    }
    layer.warnings.push(
      `${path}: ${key} belongs to the [mirrors_auto] table but appears ${where}; it is used as ` +
        "mirrors_auto." + key + ". Move it below the [mirrors_auto] line.",
    );
    mirrorsAuto[key] = value;
    layer.origins[`mirrors_auto.${key}`] = `${origin}, ${where}`;
  }
  if (document.mirrors_auto !== undefined || Object.keys(mirrorsAuto).length > 0) {
    layer.values.mirrors_auto = mirrorsAuto;
  }
  layer.label = `configuration file ${path}`;
  return layer;
}

/** Normalises the `custom_repo` value of a file: warns about unknown keys and accepts a single `[custom_repo]`. */
function customReposFromToml(value: unknown, path: string, warnings: string[]): unknown {
  let entries = value;
  if (isTable(value)) {
    warnings.push(`${path}: custom_repo is written as [custom_repo]; use [[custom_repo]] (double brackets).`);
    entries = [value];
  }
  if (!Array.isArray(entries)) return entries;
  return entries.map((entry, index) => {
    if (!isTable(entry)) return entry;
    const known: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(entry)) {
      if (CUSTOM_REPO_KEYS.includes(key)) {
        known[key] = inner;
      } else {
        warnings.push(unknownKeyWarning(path, `custom_repo[${index}].${key}`, CUSTOM_REPO_KEYS));
      }
    }
    return known;
  });
}

function isTable(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) && !(value instanceof Date);
}

function includes(list: readonly string[], key: string): boolean {
  return list.includes(key);
}

/** A top-level key that is a setting, not one of the tables ([mirrors_auto], [prefetch], [[custom_repo]]). */
function isPlainTopLevelKey(key: string): boolean {
  return includes(TOP_LEVEL_KEYS, key) && key !== "mirrors_auto" && key !== "prefetch" &&
    key !== "custom_repo";
}

/** "unknown key" warning, with a suggestion when a known key is spelled similarly. */
function unknownKeyWarning(path: string, key: string, known: readonly string[]): string {
  const name = key.slice(key.lastIndexOf(".") + 1);
  const suggestion = closestName(name, known);
  const hint = suggestion === undefined ? "" : ` Did you mean ${suggestion}?`;
  return `${path}: unknown key ${key} is ignored.${hint}`;
}

/** Turns command-line overrides into a layer. */
function configLayerFromOverrides(overrides: ConfigOverrides): ConfigLayer {
  const layer: ConfigLayer = { label: "", values: {}, origins: {}, warnings: [], problems: [] };
  const used: string[] = [];
  for (const { override, key, option } of CLI_OPTIONS) {
    const value = overrides[override];
    if (value === undefined || (Array.isArray(value) && value.length === 0)) continue;
    layer.values[key] = value;
    layer.origins[key] = `command-line option ${option}`;
    used.push(option);
  }
  layer.label = used.length === 0 ? "" : `command-line options ${used.join(", ")}`;
  return layer;
}

/** Layers raw values: later layers win key by key; `[mirrors_auto]` merges key by key; lists are replaced. */
function mergeLayers(layers: ConfigLayer[]): Omit<ConfigLayer, "label"> {
  const merged: Omit<ConfigLayer, "label"> = { values: {}, origins: {}, warnings: [], problems: [] };
  for (const layer of layers) {
    merged.warnings.push(...layer.warnings);
    merged.problems.push(...layer.problems);
    const setsLimit = Object.hasOwn(layer.values, "low_speed_limit");
    const setsFormatted = Object.hasOwn(layer.values, "low_speed_limit_formatted");
    if (setsLimit && setsFormatted) {
      merged.warnings.push(
        `low_speed_limit_formatted (${layer.origins.low_speed_limit_formatted}) takes precedence over ` +
          `low_speed_limit (${layer.origins.low_speed_limit}); remove one of them.`,
      );
    } else if (setsLimit) {
      // A plain low_speed_limit from a later layer overrides a formatted one from an earlier layer.
      delete merged.values.low_speed_limit_formatted;
      delete merged.origins.low_speed_limit_formatted;
    }
    for (const [key, value] of Object.entries(layer.values)) {
      if ((key === "mirrors_auto" || key === "prefetch") && isTable(value)) {
        const current = merged.values[key];
        merged.values[key] = { ...(isTable(current) ? current : {}), ...value };
      } else {
        merged.values[key] = value;
      }
    }
    Object.assign(merged.origins, layer.origins);
  }
  return merged;
}

/** Where the value at an issue path was set: the origin of the longest recorded prefix of the path. */
function originOf(path: readonly PropertyKey[], origins: Record<string, string>): string {
  for (let length = path.length; length > 0; length--) {
    const key = path.slice(0, length).map(String).join(".");
    if (Object.hasOwn(origins, key)) return origins[key];
  }
  return "not set, so the built-in default applies";
}

/** "custom_repo[1].name" for ["custom_repo", 1, "name"]. */
function pathText(path: readonly PropertyKey[]): string {
  let text = "";
  for (const segment of path) {
    text += typeof segment === "number" ? `[${segment}]` : `${text === "" ? "" : "."}${String(segment)}`;
  }
  return text === "" ? "(configuration)" : text;
}

/** The raw value at `path`; when the path runs into a non-container (a shorthand string), that value. */
function valueAt(values: unknown, path: readonly PropertyKey[]): unknown {
  let current = values;
  for (const segment of path) {
    if (current === null || typeof current !== "object") return current;
    current = (current as Record<PropertyKey, unknown>)[segment];
  }
  return current;
}

/**
 * The effective configuration as TOML, as a user would write it (for `check-config`).
 *
 * Custom repos become `[[custom_repo]]` tables with `url` (a string, or a list when there are several).
 * When `low_speed_limit_formatted` is set, the derived `low_speed_limit` is shown as a comment instead.
 * The password of every URL in it (a mirror's, a custom repository's, a cache peer's) is shown as `***`: the
 * text is printed, and pasted into bug reports (see redact_url.ts).
 */
export function formatConfig(config: Config): string {
  const body: Record<string, unknown> = {};
  const header: string[] = [];
  for (const key of TOP_LEVEL_KEYS) {
    const value = config[key];
    if (value === undefined || key === "custom_repo" || key === "mirrors_auto" || key === "prefetch") {
      continue;
    }
    if (key === "low_speed_limit" && config.low_speed_limit_formatted !== undefined) {
      header.push(
        `# low_speed_limit_formatted = ${showValue(config.low_speed_limit_formatted)} is ` +
          `${config.low_speed_limit} bytes per second.`,
      );
      continue;
    }
    body[key] = value;
  }
  body.mirrors_auto = { ...config.mirrors_auto };
  body.prefetch = { ...config.prefetch };
  body.custom_repo = config.custom_repo.map((repo) => ({
    name: repo.name,
    url: repo.urls.length === 1 ? repo.urls[0] : [...repo.urls],
  }));
  const comments = header.length === 0 ? "" : `${header.join("\n")}\n\n`;
  return redactUrls(`${comments}${stringifyToml(body)}\n`);
}
