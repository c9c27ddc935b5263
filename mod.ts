/**
 * flexo: a caching proxy for pacman. The library behind the `flexo` command, for embedding and tests.
 *
 * ```ts
 * import { createApp, defaultConfig } from "./mod.ts";
 * const config = { ...defaultConfig(), cache_directory: "/tmp/flexo", mirrors_predefined: ["https://mirror.example/"] };
 * const app = createApp(config);
 * const response = await app.fetch(new Request("http://localhost:7878/core/os/x86_64/core.db"));
 * ```
 *
 * @module
 */

export { type AppOptions, createApp, type FlexoApp, limitsFrom } from "./src/app/app.ts";
export {
  ConfigError,
  type ConfigOverrides,
  defaultConfig,
  formatConfig,
  loadConfig,
  type LoadConfigOptions,
} from "./src/config/config.ts";
export type { Config, CustomRepo, MirrorsAutoConfig } from "./src/config/config_schema.ts";
export { HttpError } from "./src/http/http_error.ts";
export { BUILT_IN_MIRRORS, MirrorPool, type MirrorStats } from "./src/mirrors/mirrors.ts";
export { type RunningServer, startServer } from "./src/server/server.ts";
export {
  createUpstreamClient,
  type UpstreamClient,
  type UpstreamClientOptions,
} from "./src/upstream/upstream_fetch.ts";
export { canWriteDirectory, resolveUserDirectories } from "./src/config/user_directories.ts";
export { VERSION } from "./src/version.ts";
