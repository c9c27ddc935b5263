/**
 * What loading the configuration costs at start-up. Its own file: zod keeps a schema's generated parser once
 * made, so this must be the process's first parse of the configuration schema.
 */

import { defaultConfig, loadConfig } from "../../src/config/config.ts";
import { assertEquals } from "../helpers/assert.ts";

/** Runs `fn` while counting the functions made from source text (`new Function(...)`) whose body says `payload`. */
async function countingGeneratedParsers(fn: () => Promise<unknown>): Promise<number> {
  const original = globalThis.Function;
  let generated = 0;
  globalThis.Function = new Proxy(original, {
    construct(target, args) {
      if (String(args.at(-1) ?? "").includes("payload")) generated++;
      return Reflect.construct(target, args);
    },
  });
  try {
    await fn();
  } finally {
    globalThis.Function = original;
  }
  return generated;
}

Deno.test("loadConfig() and defaultConfig() generate no parser code: zod's compiled fast path costs more than one parse", async () => {
  const generated = await countingGeneratedParsers(async () => {
    const loaded = await loadConfig({
      configPath: "/nonexistent/flexo.toml",
      env: { FLEXO_PORT: "7999" },
      readTextFile: () => Promise.resolve('port = 7000\ncache_directory = "/tmp/x"\n'),
    });
    assertEquals(loaded.config.port, 7999);
    assertEquals(defaultConfig().port, 7878);
  });
  assertEquals(generated, 0, "parsers compiled with new Function");
});
