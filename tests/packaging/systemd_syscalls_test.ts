/**
 * flexo.service's SystemCallFilter= lets flexo work: a real run under strace (start, a download, cached hits
 * sent with sendfile through FFI, the status page and metrics, SIGTERM) makes only system calls that the
 * unit's filter allows, as systemd-analyze expands its groups. Skips with a message when strace or
 * systemd-analyze is missing.
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { writeTestConfig } from "../helpers/flexo_process.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { waitFor } from "../helpers/wait.ts";

const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));
const UNIT = fileURLToPath(new URL("../../conf/flexo.service", import.meta.url));
const PKG = "core/os/x86_64/a-1-1-x86_64.pkg.tar.zst";

function has(command: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${command}`], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

const missing = ["strace", "systemd-analyze"].filter((command) => !has(command));
if (missing.length > 0) console.log(`skipped: system call filter check: ${missing.join(", ")} not installed`);

/** The system calls in a `SystemCallFilter=` group or name, with nested groups expanded by systemd-analyze. */
function expand(item: string, known = new Map<string, Set<string>>()): Set<string> {
  if (!item.startsWith("@")) return new Set([item]);
  const cached = known.get(item);
  if (cached) return cached;
  const out = new Deno.Command("systemd-analyze", { args: ["syscall-filter", item], stdout: "piped" })
    .outputSync();
  const calls = new Set<string>();
  known.set(item, calls);
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const name = line.trim();
    if (name === "" || name.startsWith("#") || name === item) continue;
    for (const call of expand(name, known)) calls.add(call);
  }
  assert(calls.size > 0, `systemd-analyze knows no group ${item}`);
  return calls;
}

/** The calls the unit's `SystemCallFilter=` lines allow: the allow list minus every `~` deny list. */
function allowedByUnit(unit: string): Set<string> {
  const lines = unit.split("\n").filter((line) => line.startsWith("SystemCallFilter="));
  const allowed = new Set<string>();
  const denied = new Set<string>();
  for (const line of lines) {
    const value = line.slice("SystemCallFilter=".length).trim();
    const deny = value.startsWith("~");
    for (const item of value.replace(/^~/, "").split(/\s+/)) {
      for (const call of expand(item)) (deny ? denied : allowed).add(call);
    }
  }
  for (const call of denied) allowed.delete(call);
  return allowed;
}

Deno.test({
  name: "flexo.service's SystemCallFilter= allows every system call of a real run (strace)",
  ignore: missing.length > 0,
  async fn() {
    await withTempDir(async (work) => {
      const root = join(work, "mirror");
      await Deno.mkdir(join(root, PKG, ".."), { recursive: true });
      await Deno.writeFile(join(root, PKG), crypto.getRandomValues(new Uint8Array(60_000)));
      await using mirror = await startFakeMirror(root);
      const config = await writeTestConfig(work, { cacheDir: join(work, "cache"), mirror: mirror.url });
      await Deno.writeTextFile(config, "\nshutdown_drain_secs = 0\n", { append: true });
      const trace = join(work, "trace");
      const child = new Deno.Command("strace", {
        args: ["-f", "-qq", "-o", trace, Deno.execPath(), "run", "-A", MAIN, "--config", config],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      let text = "";
      const drained = (async () => {
        const decoder = new TextDecoder();
        for await (const chunk of child.stderr) text += decoder.decode(chunk, { stream: true });
      })();
      try {
        await waitFor("flexo listening under strace", () => /Listening on http/.test(text), 30_000);
        const url = `http://127.0.0.1:${/Listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(text)![1]}`;
        for (let i = 0; i < 3; i++) {
          const answer = await fetch(`${url}/${PKG}`);
          assertEquals((await answer.arrayBuffer()).byteLength, 60_000);
        }
        for (const path of ["/status", "/metrics", "/"]) await (await fetch(url + path)).arrayBuffer();
      } finally {
        // The signal goes to flexo, strace's child: strace itself would only detach.
        const traced = (await Deno.readTextFile(`/proc/${child.pid}/task/${child.pid}/children`)).trim();
        if (traced !== "") Deno.kill(Number(traced.split(" ")[0]), "SIGTERM");
        else child.kill("SIGKILL");
        await child.status;
        await drained;
      }
      assert(/sendfile\(/.test(await Deno.readTextFile(trace)), "the hits were sent with sendfile");
      const used = new Set(
        [...(await Deno.readTextFile(trace)).matchAll(/^\d+ +([a-z0-9_]+)\(/gm)].map((match) => match[1]),
      );
      const allowed = allowedByUnit(await Deno.readTextFile(UNIT));
      // As root, Deno's own module cache (SQLite) hands its files to root with fchown; the service runs as
      // the flexo user and has no such cache, so that call never comes there.
      const refused = [...used].filter((call) => !allowed.has(call) && call !== "fchown").sort();
      assertEquals(refused, [], `system calls of a real run that the unit's filter refuses:\n${text}`);
    });
  },
});
