/**
 * The proxy as a real HTTP server on 127.0.0.1 for integration tests: `createApp` with short transfer limits and
 * flexo's own upstream client (as main.ts gives it), `startServer` on port 0, and a private temporary cache
 * directory.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { createApp, type FlexoApp } from "../../src/app/app.ts";
import { startServer } from "../../src/server/server.ts";
import type { TransferLimits } from "../../src/download/transfer.ts";
import { testConfig } from "./test_app.ts";
import { createUpstreamClient } from "../../src/upstream/upstream_fetch.ts";

/** Transfer limits short enough for tests: a slow or stalled mirror is left within about a second. */
export const TEST_LIMITS: TransferLimits = {
  connectTimeoutMs: 1500,
  lowSpeedLimit: 50_000,
  lowSpeedTimeMs: 400,
  lastResortStallMs: 1500,
};

/** Options for {@linkcode startTestProxy}. */
export interface TestProxyOptions {
  /** Base URLs of the mirrors (`mirrors_predefined`), in order. */
  mirrors: string[];
  /** Further configuration keys (as in flexo.toml), e.g. `custom_repo`. */
  config?: Record<string, unknown>;
  /** Overrides for {@linkcode TEST_LIMITS}. */
  limits?: Partial<TransferLimits>;
}

/** A running proxy server. */
export interface TestProxy {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /** The TCP port. */
  port: number;
  /** The app behind the server (its store, downloads and mirror pool). */
  app: FlexoApp;
  /**
   * The cache directory. It is the only entry of a private parent directory (`dirname(dir)`), so a test can
   * check that nothing was written beside it.
   */
  dir: string;
  /** Shuts the server down, waits for running downloads (at most 20 s) and removes the directories. */
  close(): Promise<void>;
  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts the proxy on 127.0.0.1 with a port chosen by the system and a fresh cache directory. */
export async function startTestProxy(options: TestProxyOptions): Promise<TestProxy> {
  const parent = await Deno.makeTempDir({ prefix: "flexo-proxy-test-" });
  const dir = join(parent, "cache");
  await Deno.mkdir(dir);
  // The upstream client the proxy process uses (main.ts), closed with the server.
  const upstream = createUpstreamClient();
  const app = createApp(testConfig(dir, options.mirrors, options.config), {
    limits: { ...TEST_LIMITS, ...options.limits },
    fetch: upstream.fetch,
  });
  const server = startServer(app, { hostnames: ["127.0.0.1"], port: 0 });
  const port = server.addresses[0].port;
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      try {
        await server.shutdown({ graceMs: 5_000 });
        await withinMs(app.downloads.idle(), 20_000, "the proxy's downloads did not end within 20 s");
      } finally {
        upstream.close();
        await Deno.remove(dirname(dir), { recursive: true });
      }
    })();
    return closed;
  };
  return { url: `http://127.0.0.1:${port}`, port, app, dir, close, [Symbol.asyncDispose]: close };
}

/** Resolves like `promise`, or rejects with `message` after `ms` milliseconds. */
export async function withinMs<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
