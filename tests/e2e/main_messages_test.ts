/** What the `flexo` command prints for a broken configuration and a wrong command line. */

import { assert, assertEquals } from "../helpers/assert.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

async function run(args: string[], env: Record<string, string> = {}) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

Deno.test("an invalid configuration is announced once, not with a doubled prefix", async () => {
  const cacheDir = await Deno.makeTempDir({ prefix: "flexo-msg-" });
  try {
    const result = await run(["check-config"], { FLEXO_PORT: "abc", FLEXO_CACHE_DIRECTORY: cacheDir });
    assertEquals(result.code, 78, result.stderr);
    assertEquals(result.stderr.match(/invalid configuration/gi)?.length, 1, result.stderr);
    assert(result.stderr.startsWith("flexo: Invalid configuration: port"), result.stderr);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("a leading -- is accepted, and an unknown option gets no advice about '--'", async () => {
  const help = await run(["--", "--version"]);
  assertEquals(help.code, 0, help.stderr);
  const unknown = await run(["--frobnicate"]);
  assertEquals(unknown.code, 2);
  assert(unknown.stderr.startsWith('flexo: Unknown option "--frobnicate".'), unknown.stderr);
  assert(!unknown.stderr.includes("after '--'"), unknown.stderr);
});
