/**
 * Builds a proxy app for unit tests: a temporary cache directory, predefined mirrors and a scripted fetch.
 *
 * @module
 */

import { type AppOptions, createApp, type FlexoApp } from "../../src/app/app.ts";
import { type Config, configSchema } from "../../src/config/config_schema.ts";

/** A configuration for tests: predefined mirrors, the given cache directory, anything else from `extra`. */
export function testConfig(cacheDir: string, mirrors: string[], extra: Record<string, unknown> = {}): Config {
  return configSchema.parse({
    cache_directory: cacheDir,
    mirror_selection_method: "predefined",
    mirrors_predefined: mirrors,
    ...extra,
  });
}

/** A test app with its own temporary cache directory; `cleanup()` waits for downloads and removes it. */
export async function testApp(
  mirrors: string[],
  options: AppOptions & { config?: Record<string, unknown> } = {},
): Promise<
  FlexoApp & {
    dir: string;
    cleanup(): Promise<void>;
    get(path: string, init?: RequestInit): Promise<Response>;
  }
> {
  const dir = await Deno.makeTempDir({ prefix: "flexo-test-" });
  const app = createApp(testConfig(dir, mirrors, options.config), {
    limits: { connectTimeoutMs: 2000, lowSpeedLimit: 1, lowSpeedTimeMs: 300, lastResortStallMs: 2000 },
    ...options,
  });
  return {
    ...app,
    dir,
    get: (path, init) => Promise.resolve(app.fetch(new Request(`http://flexo.test${path}`, init))),
    async cleanup() {
      await app.downloads.idle();
      await Deno.remove(dir, { recursive: true });
    },
  };
}
