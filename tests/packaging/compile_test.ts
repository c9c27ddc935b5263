/**
 * `deno task compile`: the arguments it gives `deno compile`, and (where the Deno runtime base can be
 * downloaded) a real build for this machine whose binary runs from another working directory.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import {
  BUNDLE,
  compileArgs,
  describeCompileFailure,
  isMissingBase,
  PERMISSIONS,
  TARGETS,
  V8_FLAGS_ARG,
} from "../../scripts/compile.ts";
import { LIBC_PATHS } from "../../src/server/libc.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

Deno.test("compileArgs() bakes in the needed permissions and nothing broader, for both Linux targets", () => {
  assertEquals([...TARGETS].sort(), ["aarch64-unknown-linux-gnu", "x86_64-unknown-linux-gnu"]);
  for (const target of TARGETS) {
    const args = compileArgs(target, "dist");
    assertEquals(args[0], "compile");
    assertEquals(args.at(-1), "main.ts");
    for (const flag of BUNDLE) {
      assert(args.includes(flag), `${target}: ${flag} (tests/packaging/bundle_test.ts runs such a bundle)`);
    }
    assertEquals(args[args.indexOf("--target") + 1], target);
    assertEquals(args[args.indexOf("--output") + 1], `dist/flexo-${target}`);
    for (const needed of ["--allow-net", "--allow-read", "--allow-write", "--allow-env"]) {
      assert(args.some((a) => a === needed || a.startsWith(`${needed}=`)), `${target}: ${needed} is missing`);
    }
    for (
      const broad of ["--allow-all", "-A", "--allow-run", "--allow-ffi", "--allow-sys", "--allow-import"]
    ) {
      assert(!args.includes(broad), `${target}: ${broad} is broader than flexo needs`);
    }
    assertEquals(
      args.filter((a) => a.startsWith("--allow-ffi")),
      [`--allow-ffi=${LIBC_PATHS.join(",")}`],
      `${target}: foreign functions only from libc, for sendfile`,
    );
    for (const permission of args.filter((a) => a.startsWith("--allow-"))) {
      assert(PERMISSIONS.includes(permission), `${permission} is not one of the documented PERMISSIONS`);
    }
    assertEquals(
      args.filter((a) => a.startsWith("--v8-flags")),
      [V8_FLAGS_ARG],
      `${target}: V8 memory settings`,
    );
  }
});

Deno.test("V8_FLAGS are flags this Deno's V8 knows: a Deno upgrade that drops one fails here, not at start", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", V8_FLAGS_ARG, "console.log(typeof gc)"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert(out.success, `deno eval ${V8_FLAGS_ARG} failed: ${text.slice(0, 500)}`);
  assertEquals(text.trim(), "function", "--expose-gc gives the memory releases their gc()");
});

Deno.test("deno task compile --help and deno task bench --help print their usage and exit 0; an unknown option exits 2 with it", async () => {
  const run = async (script: string, arg: string) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", join(ROOT, "scripts", script), arg],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      code: out.code,
      text: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
    };
  };
  for (const script of ["compile.ts", "bench.ts"]) {
    const help = await run(script, "--help");
    assertEquals(help.code, 0, help.text);
    assert(help.text.startsWith(`Usage: deno task ${script.replace(".ts", "")} `), help.text);
  }
  const wrong = await run("compile.ts", "--bogus");
  assertEquals(wrong.code, 2);
  assert(wrong.text.includes("Unknown option '--bogus'") && wrong.text.includes("Usage:"), wrong.text);
  assert(!wrong.text.includes("    at "), "no stack trace");
});

Deno.test("isMissingBase() recognises a failed download of the runtime base", () => {
  assert(isMissingBase("error: Failed downloading https://dl.deno.land/release/v2.9.6/denort-x86_64.zip"));
  assert(!isMissingBase('error: Module not found "file:///x/main.ts"'));
});

Deno.test("a missing runtime base gives one clear message, no Rust backtrace and no empty dist/", async () => {
  const work = await Deno.makeTempDir({ prefix: "flexo-compile-" });
  const out = join(work, "dist");
  try {
    const build = await new Deno.Command(Deno.execPath(), {
      args: ["task", "--quiet", "compile", "--target", "aarch64-unknown-linux-gnu", "--out", out],
      cwd: ROOT,
      // A refusing loopback proxy: the download fails at once, and nothing reaches dl.deno.land.
      env: { HTTPS_PROXY: "http://127.0.0.1:9", HTTP_PROXY: "http://127.0.0.1:9", NO_PROXY: "" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(build.stdout) + new TextDecoder().decode(build.stderr);
    if (build.success) return; // the base was cached: nothing to show here
    assert(/Could not build for aarch64-unknown-linux-gnu/.test(text), text);
    assert(!/Stack backtrace|^\s*0: <unknown>/m.test(text), `a backtrace is printed:\n${text}`);
    assertEquals(await Deno.stat(out).then(() => "exists", () => "absent"), "absent");
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("describeCompileFailure() keeps the error, drops the backtrace", () => {
  const stderr = "Compile main.ts\nerror: Writing failed\n\nCaused by:\n    0: Setting up base binary.\n" +
    "    1: error sending request for url (https://dl.deno.land/x.zip): Connection refused\n\n" +
    "Stack backtrace:\n   0: <unknown>\n";
  const text = describeCompileFailure("x86_64-unknown-linux-gnu", stderr);
  assert(text.startsWith("Could not build for x86_64-unknown-linux-gnu"), text);
  assert(text.includes("Connection refused") && !text.includes("backtrace"), text);
  assertEquals(
    describeCompileFailure("t", "error: Module not found\nStack backtrace:\n 0: x"),
    "error: Module not found",
  );
});

Deno.test("deno task compile builds a binary for this machine that runs from any directory", async (t) => {
  const target = Deno.build.target;
  if (!(TARGETS as readonly string[]).includes(target)) {
    console.log(`skipped: compiled binary check: ${target} is not a release target`);
    return;
  }
  const out = await Deno.makeTempDir({ prefix: "flexo-dist-" });
  const elsewhere = await Deno.makeTempDir({ prefix: "flexo-cwd-" });
  try {
    const build = await new Deno.Command(Deno.execPath(), {
      args: ["task", "--quiet", "compile", "--target", target, "--out", out],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(240_000),
    }).output();
    const stderr = new TextDecoder().decode(build.stderr);
    if (!build.success && isMissingBase(stderr)) {
      const reason = "skipped: compiled binary check: the Deno runtime base for " + target +
        " could not be downloaded (dl.deno.land unreachable); the build itself is checked where it can be";
      console.log(reason);
      await t.step({ name: reason, ignore: true, fn: () => {} });
      return;
    }
    assert(build.success, `deno task compile failed:\n${stderr}`);
    const binary = join(out, `flexo-${target}`);
    const run = async (args: string[]) => {
      const result = await new Deno.Command(binary, {
        args,
        cwd: elsewhere,
        env: { HOME: elsewhere, PATH: "/usr/bin:/bin" },
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(30_000),
      }).output();
      return {
        code: result.code,
        stdout: new TextDecoder().decode(result.stdout),
        stderr: new TextDecoder().decode(result.stderr),
      };
    };
    const version = await run(["--version"]);
    assertEquals(version.code, 0, version.stderr);
    assert(/^flexo \d+\.\d+\.\d+/.test(version.stdout), version.stdout);
    const check = await run(["check-config", "--cache-dir", join(elsewhere, "cache"), "--port", "7979"]);
    assertEquals(check.code, 0, check.stderr);
    assert(check.stdout.includes("# Effective configuration"), check.stdout);
    assert(check.stdout.includes("port = 7979"), check.stdout);
    const invalid = await run(["check-config", "--log-level", "loud"]);
    assertEquals(
      invalid.code,
      78,
      "an invalid setting exits with EX_CONFIG so systemd does not restart in a loop",
    );
  } finally {
    await Deno.remove(out, { recursive: true });
    await Deno.remove(elsewhere, { recursive: true });
  }
});
