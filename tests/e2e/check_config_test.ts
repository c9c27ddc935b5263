/**
 * `flexo check-config` only looks: it prints the effective configuration without the passwords of URLs, and
 * changes nothing on the disk (neither the cache directory nor the default directories it checks); nor do
 * `flexo prefetch --dry-run` and `flexo clean --dry-run`.
 */

import { hasCommand } from "../helpers/fault_tools.ts";
import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { tomlString } from "../helpers/flexo_process.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const decoder = new TextDecoder();

/** A configuration with a password in each kind of URL, and a cache directory that does not exist. */
async function configWithSecrets(dir: string): Promise<{ path: string; cacheDir: string }> {
  const cacheDir = join(dir, "not-yet", "pkg");
  const path = join(dir, "flexo.toml");
  await Deno.writeTextFile(
    path,
    [
      `cache_directory = ${tomlString(cacheDir)}`,
      "port = 9", // no proxy answers there: `flexo prefetch` runs its pass itself
      'mirror_selection_method = "predefined"',
      'mirrors_predefined = ["https://alice:mirror-s3cret@mirror.example/arch/"]',
      'cache_peers = ["http://bob:peer-s3cret@peer.example:7878"]',
      "[[custom_repo]]",
      'name = "private"',
      'url = "https://carol:repo-s3cret@repo.example/private"',
    ].join("\n"),
  );
  return { path, cacheDir };
}

Deno.test("checkConfig() prints the passwords of mirror, cache peer and custom repository URLs as ***", async () => {
  await withTempDir(async (dir) => {
    const { path } = await configWithSecrets(dir);
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "check-config", "--config", path],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = decoder.decode(output.stdout);
    assertEquals(output.code, 0, decoder.decode(output.stderr));
    assert(!/s3cret/.test(stdout + decoder.decode(output.stderr)), stdout);
    for (const shown of ["alice:***@mirror.example", "bob:***@peer.example", "carol:***@repo.example"]) {
      assert(stdout.includes(shown), `${shown} in:\n${stdout}`);
    }
  });
});

for (
  const [name, command] of [
    ["checkConfig()", ["check-config"]],
    ["prefetchCommand() with --dry-run", ["prefetch", "--dry-run"]],
    ["clean() with --dry-run", ["clean", "--dry-run"]],
  ] as const
) {
  Deno.test(`${name} changes nothing on the disk: no folder made, no probe file written (strace)`, async (t) => {
    if (!(await hasCommand("strace"))) {
      await t.step({ name: "skipped: strace is not installed", ignore: true, fn: () => {} });
      return;
    }
    await withTempDir(async (dir) => {
      const { path, cacheDir } = await configWithSecrets(dir);
      const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
        .output();
      const denoDir: string = JSON.parse(decoder.decode(info.stdout)).denoDir;
      const trace = join(dir, "trace");
      const output = await new Deno.Command("strace", {
        args: [
          "-f",
          "-o",
          trace,
          "-e",
          "trace=mkdir,mkdirat,unlink,unlinkat,rename,renameat,renameat2,openat,creat",
          Deno.execPath(),
          "run",
          "-A",
          MAIN,
          ...command,
          "--config",
          path,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(output.code, 0, decoder.decode(output.stderr));
      // The runtime's own cache of compiled modules is Deno's business, not flexo's.
      const changes = (await Deno.readTextFile(trace)).split("\n").filter((line) =>
        /\b(mkdir|mkdirat|unlink|unlinkat|rename|renameat2?|creat)\(|O_CREAT|O_WRONLY|O_RDWR/.test(line) &&
        !line.includes(denoDir)
      );
      assertEquals(changes, [], "system calls that change the disk");
      assertEquals(
        await Deno.stat(cacheDir).then(() => true, () => false),
        false,
        "the cache directory is not made",
      );
    });
  });
}

for (
  const [name, command] of [
    ["checkConfig()", ["check-config"]],
    ["prefetchCommand() with --dry-run", ["prefetch", "--dry-run"]],
    ["clean() with --dry-run", ["clean", "--dry-run"]],
  ] as const
) {
  Deno.test(`${name} prints the password of a URL in a configuration warning as ***`, async () => {
    await withTempDir(async (dir) => {
      const { path } = await configWithSecrets(dir);
      // A variable written with quotes is warned about with its text.
      const env = {
        FLEXO_MIRRORS_AUTO_MIRRORS_STATUS_JSON_ENDPOINT: '"https://dave:env-s3cret@status.example/"',
      };
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", MAIN, ...command, "--config", path],
        env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = decoder.decode(output.stderr);
      assertEquals(output.code, 0, stderr);
      assert(stderr.includes("dave:***@status.example"), stderr);
      assert(!/s3cret/.test(stderr + decoder.decode(output.stdout)), stderr);
    });
  });
}
