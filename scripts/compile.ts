/**
 * Builds self-contained `flexo` executables for x86_64 and aarch64 Linux into `dist/`.
 *
 * `deno compile` downloads the runtime base for each target from dl.deno.land the first time (or uses
 * `DENORT_BIN` for the host target); without that download the build fails with a message saying so.
 *
 * Usage: deno task compile [--target TRIPLE]... [--out DIR]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { LIBC_PATHS } from "../src/server/libc.ts";

/** The repository's root (where deno.json is). */
const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The targets built by default. */
export const TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] as const;

/**
 * The permissions baked into the executable: network (upstream mirrors and listening), files (the cache,
 * state and configuration, whose places are configurable), environment (FLEXO_* settings), the host name, and
 * loading glibc from its usual places, for sendfile (src/server/sendfile.ts; without it files go through Deno).
 */
export const PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys=hostname",
  `--allow-ffi=${LIBC_PATHS.join(",")}`,
];

/**
 * V8 settings that keep the resident memory small without costing request rate (measured in BENCHMARKS.md):
 * a young generation of 1 MiB per semi-space (by default it grows to 16 MiB, and the garbage of request load
 * then keeps tens of MiB resident), an old generation that grows by at most 20 % between collections, and V8's
 * `gc()` for the memory releases after the start-up scans and busy periods (src/memory_release.ts). V8's Maglev
 * tier stays on: without it cold misses were slower and the peak under load higher (BENCHMARKS.md, session
 * six); TurboFan stays on too: without it (`--max-opt=2`) the peak was 3.6 MiB lower, but small files came
 * 27 % slower after large ones (session ten). The same flags are in the serve task of deno.json and the
 * Dockerfile's entrypoint; this script bakes them into the executable that the systemd unit starts; the
 * benchmark runs the serve task.
 */
export const V8_FLAGS = [
  "--max-semi-space-size=1",
  "--heap-growing-percent=20",
  "--expose-gc",
];

/**
 * How the executable holds flexo: bundled into one module and minified (`deno compile --bundle --minify`). The
 * same bundle run by `deno run` idles and peaks several MiB lower than main.ts's modules (BENCHMARKS.md, session
 * eleven); the Docker image runs it too, and tests/packaging/bundle_test.ts runs one. Stack traces name the
 * bundle's shortened names; messages are unchanged.
 */
export const BUNDLE = ["--bundle", "--minify"];

/**
 * Where {@linkcode buildBundle} writes by default: one place, so that Deno's code cache knows the bundle from the
 * run before (as it knows main.ts's modules); a new place each time measures a first start.
 */
export const RUN_BUNDLE_PATH = join(REPO_ROOT, "dist", "flexo-bundle.js");

/**
 * Bundles the repository's main.ts into `output` (its folder made if needed) with `deno bundle` and the esbuild
 * settings of {@linkcode BUNDLE}: the module `deno compile` embeds, for running it where no executable can be
 * built (the runtime base comes from dl.deno.land). Returns `output`.
 *
 * @throws {Error} with deno's message when bundling fails.
 * @example
 * ```ts
 * const bundle = await buildBundle(); // dist/flexo-bundle.js
 * ```
 */
export async function buildBundle(output: string = RUN_BUNDLE_PATH): Promise<string> {
  await Deno.mkdir(dirname(output), { recursive: true });
  const options = BUNDLE.filter((flag) => flag !== "--bundle");
  const built = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      ...options,
      "--platform",
      "deno",
      "--output",
      output,
      join(REPO_ROOT, "main.ts"),
    ],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!built.success) {
    throw new Error(`deno bundle of main.ts failed: ${new TextDecoder().decode(built.stderr).trim()}`);
  }
  return output;
}

/** {@linkcode V8_FLAGS} as one `deno` argument. */
export const V8_FLAGS_ARG = `--v8-flags=${V8_FLAGS.join(",")}`;

/** The `deno compile` arguments for one target. */
export function compileArgs(target: string, outDir: string): string[] {
  return [
    "compile",
    "--no-check",
    ...PERMISSIONS,
    V8_FLAGS_ARG,
    // One module bundled and minified by esbuild instead of flexo's ~110 modules and the npm packages' ~240,
    // each held in memory with its text, comments included (and, under `deno run`, its source map): see BUNDLE.
    ...BUNDLE,
    "--target",
    target,
    "--output",
    `${outDir}/flexo-${target}`,
    "main.ts",
  ];
}

/** True when `deno compile` failed because the runtime base could not be downloaded. */
export function isMissingBase(stderr: string): boolean {
  return /dl\.deno\.land|denort|download/i.test(stderr) && /error|failed/i.test(stderr);
}

/**
 * What to print of a failed `deno compile`: its error without the Rust backtrace under it, or, when only the
 * runtime base was missing, the clear message with the root cause (e.g. "Connection refused").
 */
export function describeCompileFailure(target: string, stderr: string): string {
  // deno's own progress lines ("Compile ...", "Download ...") and colours are no part of the error.
  // deno-lint-ignore no-control-regex
  const plain = stderr.replace(/\x1b\[[0-9;]*m/g, "");
  const withoutBacktrace = plain.split(/^Stack backtrace:/m)[0].trim();
  const errorText = withoutBacktrace.slice(Math.max(0, withoutBacktrace.search(/^error:/m))).trim();
  if (!isMissingBase(plain)) return errorText;
  const causes = [...errorText.matchAll(/^\s*\d+: (.*)$/gm)].map((match) => match[1]);
  const cause = causes.at(-1) ?? errorText.split("\n")[0];
  return `Could not build for ${target}: the Deno runtime base for this target could not be downloaded from ` +
    `dl.deno.land (${cause}). Build on a machine that can reach it, or set DENORT_BIN to a local denort ` +
    "binary for the host target.";
}

/** Removes `dir` when it is empty (a failed build must not leave an empty dist/ behind). */
async function removeIfEmpty(dir: string): Promise<void> {
  try {
    await Deno.remove(dir); // refuses a directory that is not empty
  } catch {
    // not empty, or already gone
  }
}

/** What `deno task compile --help` prints. */
export const COMPILE_USAGE = "Usage: deno task compile [--target TRIPLE]... [--out DIR]\n" +
  `Builds self-contained flexo executables (default targets: ${TARGETS.join(", ")}) into DIR (default dist).`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        target: { type: "string", multiple: true },
        out: { type: "string", default: "dist" },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    console.error(`compile: ${error instanceof Error ? error.message : String(error)}\n${COMPILE_USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(COMPILE_USAGE);
    return 0;
  }
  const targets = values.target ?? [...TARGETS];
  const outExisted = await Deno.stat(values.out!).then(() => true, () => false);
  await Deno.mkdir(values.out!, { recursive: true });
  let failed = 0;
  for (const target of targets) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: compileArgs(target, values.out!),
      stdout: "inherit",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    if (output.success) {
      console.log(`built ${values.out}/flexo-${target}`);
      continue;
    }
    failed++;
    console.error(describeCompileFailure(target, stderr));
  }
  if (!outExisted) await removeIfEmpty(values.out!);
  return failed === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
