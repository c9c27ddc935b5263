/**
 * The command lines of README.md, BENCHMARKS.md and every page of docs/, run as written, so that the
 * documentation cannot drift from the program again.
 *
 * - `deno task serve …` runs with `--port 0 --cache-dir TEMP --config TEMP` appended (a free port, a throw-away
 *   cache, one unreachable loopback mirror), is asked for `/status` once it listens, then stopped.
 * - `deno task compile …` runs with `--out TEMP` appended and HTTPS_PROXY on a refusing loopback port: the
 *   command line is checked to be accepted, and the runtime base download fails at once instead of reaching
 *   dl.deno.land.
 * - `deno task test` and `check` are excluded (the suite itself and the commit check); only their existence in
 *   deno.json is checked. `deno task bench …` (a benchmark of minutes against nginx) is not run, but its options
 *   must be ones the benchmark accepts.
 * - `flexo …` lines (the synopsis ones once without and once with their `[optional]` parts, the placeholders
 *   FILE, N, ADDR, DIR and L filled in, and `a | b` as two lines) run as `deno run -A main.ts …` with
 *   FLEXO_CACHE_DIRECTORY on a temporary directory and FLEXO_PORT on a closed port, so that `flexo prefetch`
 *   never asks a proxy of this machine for a run; `flexo import DIR` is expected to say that the (empty) cache
 *   knows no package yet.
 * - `docker …` lines (fenced, with continuation lines joined, and inline) are not run, but every `--option` they
 *   show must be one the installed docker's `docker SUBCOMMAND --help` names (ignored, saying so, without docker).
 * - A fenced line that starts with `deno` or `flexo` (after a `$ ` prompt or `sudo `) and is none of these is an
 *   error, so that a command cannot drop out of the check unnoticed.
 * - `deno run … scripts/NAME.ts …` lines (benchmarks and soaks of minutes) run with `--help` instead, with the
 *   documented `deno run` flags: the script must exist, start, and know every option the line shows.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { tomlString } from "../helpers/flexo_process.ts";
import { parseSettings } from "../../scripts/bench_settings.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const DOCS = [
  "README.md",
  "BENCHMARKS.md",
  ...[...Deno.readDirSync(join(ROOT, "docs"))].filter((e) => e.name.endsWith(".md")).map((e) =>
    `docs/${e.name}`
  )
    .sort(),
];
const EXCLUDED_TASKS = ["test", "check"];

/** Whether a line is a command this test runs. */
function isCommand(line: string): boolean {
  return line.startsWith("deno task ") || line.startsWith("flexo ") ||
    /^deno run .*scripts\/\S+\.ts/.test(line);
}

/** A fenced line without its comment and surrounding blanks. */
function withoutComment(raw: string): string {
  return raw.replace(/\s+#.*$/, "").trim();
}

/** The fenced lines of `markdown` without their comments. */
function fencedLines(markdown: string): string[] {
  const lines: string[] = [];
  let inBlock = false;
  for (const raw of markdown.split("\n")) {
    if (raw.trimStart().startsWith("```")) {
      inBlock = !inBlock;
    } else if (inBlock) {
      lines.push(withoutComment(raw));
    }
  }
  return lines;
}

/**
 * The `deno task …` and `flexo …` lines of the fenced code blocks of `markdown` without their comments, and the
 * inline code spans of the text that are such commands (e.g. `deno task serve -- --help`), each once.
 */
export function commandLines(markdown: string): string[] {
  const lines: string[] = [];
  let inBlock = false;
  for (const raw of markdown.split("\n")) {
    if (raw.trimStart().startsWith("```")) {
      inBlock = !inBlock;
      continue;
    }
    if (inBlock) {
      const line = withoutComment(raw);
      if (isCommand(line)) lines.push(line);
      continue;
    }
    for (const match of raw.matchAll(/`([^`]+)`/g)) {
      if (isCommand(match[1])) lines.push(match[1]);
    }
  }
  return [...new Set(lines)];
}

/** The fenced lines of `markdown` that start with `deno` or `flexo` (after a prompt or sudo) but are not run. */
export function uncheckedCommands(markdown: string): string[] {
  return fencedLines(markdown).filter((line) =>
    /^(\$\s+|sudo\s+)?(deno|flexo)\s/.test(line) && !isCommand(line)
  );
}

/** The `docker …` command lines of `markdown`: fenced ones, continuation lines joined, and inline code spans. */
export function dockerLines(markdown: string): string[] {
  const lines: string[] = [];
  let inBlock = false;
  for (const raw of markdown.replace(/\s*\\\n\s*/g, " ").split("\n")) {
    if (raw.trimStart().startsWith("```")) {
      inBlock = !inBlock;
      continue;
    }
    const candidates = inBlock ? [withoutComment(raw)] : [...raw.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    lines.push(...candidates.filter((line) => /^docker [a-z]/.test(line)));
  }
  return [...new Set(lines)];
}

/** Whether the docker command-line client runs here (no daemon needed: only its --help texts are read). */
function haveDocker(): boolean {
  try {
    return new Deno.Command("docker", { args: ["--version"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

/**
 * A synopsis line as runnable lines: its description left out, once without its `[optional]` parts and, when
 * it has some, once with them; `a | b` split.
 */
function expandSynopsis(line: string): string[][] {
  const synopsis = line.split(/\s{2,}/)[0];
  const texts = [synopsis.replace(/\[[^\]]*\](\.\.\.)?/g, " ")];
  if (/\[[^\]]*\]/.test(synopsis)) texts.push(synopsis.replace(/\[([^\]]*)\](\.\.\.)?/g, " $1 "));
  return texts.flatMap((text) => {
    const words = text.trim().split(/\s+/).slice(1);
    const bar = words.indexOf("|");
    if (bar < 0) return [words];
    return [[...words.slice(0, bar)], [...words.slice(0, bar - 1), ...words.slice(bar + 1)]];
  });
}

/** A configuration in `work` that reaches nothing but one refusing loopback mirror. */
async function writeIsolatedConfig(path: string, work: string): Promise<void> {
  await Deno.writeTextFile(
    path,
    [
      `mirrorlist_fallback_file = ${tomlString(join(work, "mirrorlist"))}`,
      `mirrorlist_latency_test_results_file = ${tomlString(join(work, "latency.json"))}`,
      'mirror_selection_method = "predefined"',
      'mirrors_predefined = ["http://127.0.0.1:9/"]',
    ].join("\n"),
  );
}

/** The synopsis placeholders filled in for a run in `work`: FILE is an isolated configuration. */
async function withPlaceholders(args: string[], work: string): Promise<string[]> {
  const file = join(work, "placeholder.toml");
  await writeIsolatedConfig(file, work);
  const values: Record<string, string> = {
    FILE: file,
    N: "0",
    ADDR: "127.0.0.1",
    DIR: join(work, "dir"),
    L: "debug",
  };
  return args.map((arg) => Object.hasOwn(values, arg) ? values[arg] : arg);
}

/** A loopback port nothing listens on (just closed). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function isServe(args: string[]): boolean {
  const rest = args[0] === "--" ? args.slice(1) : args;
  return !rest.some((a) => ["--help", "-h", "--version", "-V"].includes(a)) &&
    (rest.length === 0 || rest[0].startsWith("-"));
}

async function serveOnce(command: string[], work: string): Promise<void> {
  const config = join(work, "flexo.toml");
  await writeIsolatedConfig(config, work);
  const args = [...command, "--port", "0", "--cache-dir", join(work, "pkg"), "--config", config];
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  let listening: (port: number) => void;
  const port = new Promise<number>((resolve) => listening = resolve);
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      const match = /Listening on http:\/\/[^ ]*:(\d+)\//.exec(text);
      if (match) listening(Number(match[1]));
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const first = await Promise.race([
    port,
    child.status.then((status) => `exited with code ${status.code}`),
    new Promise<string>((resolve) => timer = setTimeout(() => resolve("did not listen in time"), 40_000)),
  ]);
  clearTimeout(timer);
  try {
    assert(typeof first === "number", `${command.join(" ")}: ${first}\n${text}`);
    const response = await fetch(`http://127.0.0.1:${first}/status`);
    await response.body?.cancel();
    assertEquals(response.status, 200, `${command.join(" ")}: /status`);
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // already ended
    }
    await child.status;
    await drained;
  }
}

/**
 * A documented `deno run [FLAGS] scripts/NAME.ts [OPTIONS]` line: the script, run with the line's flags and
 * `--help`, exits 0 and names every option the line shows.
 */
async function scriptKnowsOptions(doc: string, line: string): Promise<void> {
  const words = line.split(/\s+/);
  const at = words.findIndex((w) => /^scripts\/\S+\.ts$/.test(w));
  const flags = words.slice(2, at);
  const result = await runToEnd(["run", ...flags, words[at], "--help"]);
  assertEquals(result.code, 0, `${doc}: "${line}" with --help:\n${result.text}`);
  for (const option of line.slice(line.indexOf(words[at])).matchAll(/--[a-z][a-z-]*/g)) {
    assert(
      result.text.includes(option[0]),
      `${doc}: "${line}": ${words[at]} --help does not name ${option[0]}`,
    );
  }
}

async function runToEnd(args: string[], env: Record<string, string> = {}, command = [Deno.execPath()]) {
  const output = await new Deno.Command(command[0], {
    args: [...command.slice(1), ...args],
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, text: decoder.decode(output.stdout) + decoder.decode(output.stderr) };
}

Deno.test("commandLines() finds the documented commands without their comments", () => {
  const markdown =
    "text `deno task serve -- --help`\n```sh\ndeno task serve     # start\nls\nflexo --help\n```\n" +
    "deno task outside\n";
  assertEquals(commandLines(markdown), ["deno task serve -- --help", "deno task serve", "flexo --help"]);
  assertEquals(expandSynopsis("flexo --help | --version"), [["--help"], ["--version"]]);
});

Deno.test("expandSynopsis() runs a synopsis line without and with its [optional] parts", () => {
  assertEquals(expandSynopsis("flexo check-config [--config FILE]     validate it"), [
    ["check-config"],
    ["check-config", "--config", "FILE"],
  ]);
  assertEquals(expandSynopsis("flexo [--port N] [--listen ADDR]..."), [[], [
    "--port",
    "N",
    "--listen",
    "ADDR",
  ]]);
  assertEquals(expandSynopsis("flexo prefetch [--dry-run]"), [["prefetch"], ["prefetch", "--dry-run"]]);
  assertEquals(expandSynopsis("flexo clean --dry-run"), [["clean", "--dry-run"]]);
});

Deno.test("uncheckedCommands() names fenced command lines that commandLines() would not run", () => {
  const markdown =
    "```sh\n$ deno task serve\nsudo flexo clean\ndeno task serve\ndocker run flexo\n# flexo x\n```\n";
  assertEquals(uncheckedCommands(markdown), ["$ deno task serve", "sudo flexo clean"]);
});

Deno.test("dockerLines() finds docker commands in code blocks, continued lines joined, and inline", () => {
  const markdown =
    "Run `docker stop -t 20 flexo` or `docker ps`.\n```sh\ndocker run -d \\\n  -p 1:1 flexo  # c\n" +
    "ls\n```\n";
  assertEquals(dockerLines(markdown), ["docker stop -t 20 flexo", "docker ps", "docker run -d -p 1:1 flexo"]);
});

const DOCKER = haveDocker();
if (!DOCKER) console.log("skipped: the docker command lines of the docs: docker is not installed");
for (const doc of DOCS) {
  const lines = dockerLines(Deno.readTextFileSync(join(ROOT, doc)));
  if (lines.length === 0) continue;
  Deno.test({
    name: `every docker command line of ${doc} uses options docker has`,
    ignore: !DOCKER,
    async fn() {
      for (const line of lines) {
        const subcommand = line.split(/\s+/)[1];
        const help = await runToEnd([], {}, ["docker", subcommand, "--help"]);
        assertEquals(help.code, 0, `${doc}: "${line}": docker ${subcommand} --help:\n${help.text}`);
        for (const option of line.matchAll(/(?<=\s)--[a-z][a-z-]*/g)) {
          assert(
            new RegExp(`\\s${option[0]}[\\s=]`).test(help.text),
            `${doc}: "${line}": docker ${subcommand} has no option ${option[0]}`,
          );
        }
      }
    },
  });
}

/** The repository files `markdown` names by path, such as `conf/haproxy.cfg` or `tests/e2e/tiers_test.ts`. */
export function namedFiles(markdown: string): string[] {
  const paths = markdown.matchAll(
    /\b(?:conf|docs|scripts|src|tests)\/[\w./-]*\w\.(?:cfg|conf|md|py|toml|ts)\b/g,
  );
  return [...new Set([...paths].map((match) => match[0]))];
}

Deno.test("namedFiles() finds the repository paths a text names", () => {
  assertEquals(namedFiles("see `conf/haproxy.cfg` and tests/e2e/tiers_test.ts; docs/scaling.md.\n"), [
    "conf/haproxy.cfg",
    "tests/e2e/tiers_test.ts",
    "docs/scaling.md",
  ]);
});

for (const doc of DOCS) {
  Deno.test(`every file ${doc} names by path exists`, async () => {
    const named = namedFiles(await Deno.readTextFile(join(ROOT, doc)));
    const missing = named.filter((path) => {
      try {
        return !Deno.statSync(join(ROOT, path)).isFile;
      } catch {
        return true;
      }
    });
    assertEquals(missing, [], `${doc} names files that do not exist`);
  });
}

for (const doc of DOCS) {
  Deno.test(`every command line of ${doc} works as written`, async (t) => {
    const markdown = await Deno.readTextFile(join(ROOT, doc));
    assertEquals(uncheckedCommands(markdown), [], `${doc}: command lines this test would not run`);
    const lines = commandLines(markdown);
    if (lines.length === 0) return;
    const tasks = Object.keys(JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).tasks);
    for (const line of lines) {
      await t.step(line, async () => {
        const work = await Deno.makeTempDir({ prefix: "flexo-docs-" });
        try {
          const words = line.split(/\s+/);
          if (words[0] === "deno" && words[1] === "run") return await scriptKnowsOptions(doc, line);
          if (words[0] === "deno") {
            const [task, ...args] = words.slice(2);
            assert(tasks.includes(task), `${doc}: "${line}": deno.json has no task "${task}"`);
            if (EXCLUDED_TASKS.includes(task)) return;
            if (task === "bench") {
              parseSettings(args); // throws for an unknown option or group
              return;
            }
            if (task === "serve" && isServe(args)) {
              return await serveOnce(["task", "--quiet", "serve", ...args], work);
            }
            if (task === "serve") {
              const result = await runToEnd(["task", "--quiet", "serve", ...args]);
              assertEquals(result.code, 0, `${line}:\n${result.text}`);
              return;
            }
            assertEquals(task, "compile", `${doc}: "${line}": no way to run this task in the test yet`);
            const result = await runToEnd([
              "task",
              "--quiet",
              "compile",
              ...args,
              "--out",
              join(work, "dist"),
            ], {
              HTTPS_PROXY: "http://127.0.0.1:9",
              HTTP_PROXY: "http://127.0.0.1:9",
            });
            assert(
              result.code === 0 || /Could not build for/.test(result.text),
              `${line}: exit ${result.code}\n${result.text}`,
            );
            assert(!/Unknown option|Stack backtrace/.test(result.text), `${line}:\n${result.text}`);
            return;
          }
          for (const synopsis of expandSynopsis(line)) {
            const args = await withPlaceholders(synopsis, work);
            if (isServe(args)) {
              await serveOnce(["run", "-A", "main.ts", ...args], work);
              continue;
            }
            // A throw-away cache: `flexo clean` and `flexo import` must not touch this machine's real one.
            const result = await runToEnd(["run", "-A", "main.ts", ...args], {
              FLEXO_CACHE_DIRECTORY: join(work, "pkg"),
              FLEXO_PORT: String(closedPort()),
            });
            if (args[0] === "import") {
              // The empty cache knows no package yet: the command is accepted and says what to do.
              assertEquals(result.code, 1, `flexo ${args.join(" ")}:\n${result.text}`);
              assert(/sync once through the proxy/.test(result.text), result.text);
              continue;
            }
            assertEquals(result.code, 0, `flexo ${args.join(" ")}:\n${result.text}`);
          }
        } finally {
          await Deno.remove(work, { recursive: true });
        }
      });
    }
  });
}
