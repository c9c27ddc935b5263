/**
 * Loading a configuration file's text in tests, without a file: {@linkcode load} and
 * {@linkcode assertLoadError}.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  ConfigError,
  loadConfig,
  type LoadConfigOptions,
  type LoadConfigResult,
} from "../../src/config/config.ts";

/** Loads `toml` as the configuration file, with further options. */
export function load(toml: string, options: LoadConfigOptions = {}): Promise<LoadConfigResult> {
  return loadConfig({
    configPath: "/test/flexo.toml",
    readTextFile: () => Promise.resolve(toml),
    ...options,
  });
}

/** Asserts that loading fails with a ConfigError mentioning every string in `parts`. */
export async function assertLoadError(
  toml: string,
  parts: string[],
  options: LoadConfigOptions = {},
): Promise<ConfigError> {
  const error = await load(toml, options).then(
    () => assert.fail(`expected a ConfigError for:\n${toml}`),
    (error: unknown) => error,
  );
  assert.ok(error instanceof ConfigError, String(error));
  for (const part of parts) assert.ok(error.message.includes(part), `${part} not in: ${error.message}`);
  return error;
}

/** A file reader for which every file is missing. */
export const notFound = (): Promise<never> => Promise.reject(new Deno.errors.NotFound("missing"));
