/**
 * The Dockerfile (no Docker here): its instructions are read and checked against the project, its entrypoint
 * command is run as the container would run it, with its FLEXO_* settings, and its health check against a node.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { PERMISSIONS, V8_FLAGS_ARG } from "../../scripts/compile.ts";
import { startTestProxy } from "../helpers/proxy_server.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const TEXT = await Deno.readTextFile(join(ROOT, "Dockerfile"));

/** Instructions in order: continuation lines joined, comments dropped. */
function instructions(text: string): { op: string; args: string }[] {
  const joined = text.split("\n").filter((l) => !l.trimStart().startsWith("#")).join("\n")
    .replace(/\\\n/g, " ");
  return joined.split("\n").filter((l) => l.trim() !== "").map((line) => {
    const m = line.trim().match(/^([A-Z]+)\s+(.*)$/);
    assert(m, `not an instruction: ${line}`);
    return { op: m[1], args: m[2].trim() };
  });
}

function envOf(list: { op: string; args: string }[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { args } of list.filter((i) => i.op === "ENV")) {
    for (const pair of args.split(/\s+/)) {
      const [key, ...value] = pair.split("=");
      env[key] = value.join("=");
    }
  }
  return env;
}

Deno.test("Dockerfile: Deno base image of the CI's version, non-root user, cache volume, no broad permissions", async () => {
  const list = instructions(TEXT);
  const ciVersion = (await Deno.readTextFile(join(ROOT, ".ci/run"))).match(/DENO_VERSION="([\d.]+)"/)![1];
  assertEquals(list[0], { op: "FROM", args: `denoland/deno:${ciVersion}` });
  const users = list.filter((i) => i.op === "USER").map((i) => i.args);
  assert(users.length > 0 && !["root", "0"].includes(users.at(-1)!), `runs as ${users.at(-1) ?? "root"}`);
  for (const copy of list.filter((i) => i.op === "COPY")) {
    const sources = copy.args.split(/\s+/).slice(0, -1);
    for (const source of sources) await Deno.stat(join(ROOT, source)); // throws when a source is missing
  }
  const env = envOf(list);
  assertEquals(env.FLEXO_LISTEN_IP_ADDRESS, "0.0.0.0", "a container must listen beyond its loopback");
  const volume = JSON.parse(list.find((i) => i.op === "VOLUME")!.args) as string[];
  assert(
    volume.some((v) => env.FLEXO_CACHE_DIRECTORY.startsWith(`${v}/`)),
    "the cache must be in the volume",
  );
  const entrypoint = JSON.parse(list.find((i) => i.op === "ENTRYPOINT")!.args) as string[];
  assertEquals(entrypoint.filter((a) => a.startsWith("--allow-")).sort(), [...PERMISSIONS].sort());
  assert(!entrypoint.includes("-A") && !entrypoint.includes("--allow-all"));
  assert(entrypoint.includes("--cached-only"), "the container must not need the registry at run time");
  assertEquals(
    entrypoint.filter((a) => a.startsWith("--v8-flags")),
    [V8_FLAGS_ARG],
    "the same V8 memory settings as the compiled executable",
  );
});

/**
 * The image's `deno bundle` command (in the RUN that fetches the dependencies), run on this checkout with its
 * output in `dir`; returns the bundle's path in the image and here.
 */
async function bundleAsTheImage(
  list: { op: string; args: string }[],
  dir: string,
): Promise<[string, string]> {
  const run = list.find((i) => i.op === "RUN" && i.args.includes("deno bundle"));
  assert(run, "the image bundles flexo into one module, as the executable is (scripts/compile.ts)");
  const words = run.args.slice(run.args.indexOf("deno bundle")).split(/\s+/);
  const end = words.indexOf("&&");
  const command = end < 0 ? words : words.slice(0, end);
  const output = command[command.indexOf("--output") + 1];
  const here = join(dir, "flexo.js");
  const built = await new Deno.Command(Deno.execPath(), {
    args: command.slice(1).map((a) => a === output ? here : a),
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(built.success, `the image's deno bundle failed:\n${new TextDecoder().decode(built.stderr)}`);
  return [output, here];
}

Deno.test("Dockerfile: the entrypoint command with the image's FLEXO_* settings reads a valid configuration", async () => {
  const list = instructions(TEXT);
  const entrypoint = JSON.parse(list.find((i) => i.op === "ENTRYPOINT")!.args) as string[];
  assertEquals(entrypoint[0], "deno");
  const dir = await Deno.makeTempDir({ prefix: "flexo-docker-" });
  try {
    // As in the image (its bundle of flexo, made by its own command), but from this checkout.
    const [inImage, here] = await bundleAsTheImage(list, dir);
    assert(
      entrypoint.includes(inImage),
      `the entrypoint runs the bundle ${inImage}: ${entrypoint.join(" ")}`,
    );
    const args = entrypoint.slice(1).map((a) => a === inImage ? here : a);
    const env = envOf(list);
    // The image has no configuration file; an empty one stands in for it (the host's /etc/flexo stays out).
    await Deno.writeTextFile(join(dir, "flexo.toml"), "");
    const out = await new Deno.Command(Deno.execPath(), {
      args: [...args, "check-config", "--config", join(dir, "flexo.toml")],
      cwd: dir,
      env: { ...env, FLEXO_CACHE_DIRECTORY: join(dir, "pkg") },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, stderr);
    assertEquals(stderr.match(/^warning: .*FLEXO_.*$/gm) ?? [], [], "every FLEXO_* variable must be known");
    assert(/^listen_ip_address = \[ "0\.0\.0\.0" \]$/m.test(stdout), stdout);
    assert(stdout.includes(`mirrorlist_fallback_file = "${env.FLEXO_MIRRORLIST_FALLBACK_FILE}"`), stdout);
    assert(stdout.includes("port = 7878"), stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Dockerfile: HEALTHCHECK's command exits 0 while the node serves, 1 while it drains or is gone", async () => {
  const list = instructions(TEXT);
  const check = list.find((i) => i.op === "HEALTHCHECK")!.args;
  const command = JSON.parse(check.slice(check.indexOf("CMD ") + 4)) as string[];
  assertEquals(command[0], "deno", "the image has deno, not curl");
  const env = envOf(list);
  const proxy = await startTestProxy({ mirrors: ["http://127.0.0.1:9/"] });
  let closed = false;
  const run = async () => {
    // As in the container: the image's environment with this node's port.
    const out = await new Deno.Command(Deno.execPath(), {
      args: command.slice(1),
      env: { ...env, FLEXO_PORT: String(proxy.port) },
      stdout: "null",
      stderr: "piped",
    }).output();
    return out.code;
  };
  try {
    assertEquals(await run(), 0, "healthy while serving");
    proxy.app.health.startDraining();
    assertEquals(await run(), 1, "unhealthy while draining");
    await proxy.close();
    closed = true;
    assertEquals(await run(), 1, "unhealthy when nothing listens");
  } finally {
    if (!closed) await proxy.close();
  }
});

Deno.test("Dockerfile: operations.md names every FLEXO_* variable the image sets, since they win over a mounted file", async () => {
  const docs = await Deno.readTextFile(join(ROOT, "docs/operations.md"));
  const docker = docs.slice(docs.indexOf("### Docker"), docs.indexOf("### From source"));
  const set = Object.keys(envOf(instructions(TEXT))).filter((name) => name.startsWith("FLEXO_"));
  assert(set.length > 0, "the image sets FLEXO_* variables");
  for (const name of set) {
    assert(docker.includes(name), `operations.md's Docker section does not name ${name}`);
  }
});
