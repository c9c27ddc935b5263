/**
 * One shutdown line per signal. `deno task serve` runs flexo under the task runner: a Ctrl-C in a terminal
 * reaches every process of the group, and the runner forwards the signal once more, so flexo gets it twice.
 * The line "SIGINT received" (or SIGTERM) must be written exactly once, whether flexo runs alone or under the
 * runner, and the process must end cleanly.
 */

import { fileURLToPath } from "node:url";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFlexo, writeTestConfig } from "../helpers/flexo_process.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** A test configuration without the drain before stopping (drain_test.ts covers it): a quick stop. */
async function quickStopConfig(work: string): Promise<string> {
  const config = await writeTestConfig(work, { cacheDir: `${work}/cache`, mirror: "http://127.0.0.1:9/" });
  await Deno.writeTextFile(config, "\nshutdown_drain_secs = 0\n", { append: true });
  return config;
}

/** How many lines of `output` say that `signal` was received. */
function receivedLines(output: string, signal: string): number {
  return output.split("\n").filter((line) => line.includes(`${signal} received`)).length;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test(`main.ts writes exactly one shutdown line for ${signal}, also when the signal comes twice`, async () => {
    await withTempDir(async (work) => {
      const config = await quickStopConfig(work);
      const once = await startFlexo(config);
      assertEquals((await once.stop(signal)).code, 0, once.output());
      assertEquals(receivedLines(once.output(), signal), 1, once.output());

      const twice = await startFlexo(config);
      Deno.kill(twice.pid, signal);
      const status = await twice.stop(signal);
      assertEquals(status.code, 0, twice.output());
      assertEquals(receivedLines(twice.output(), signal), 1, twice.output());
    });
  });

  Deno.test(`deno task serve writes exactly one shutdown line for ${signal} sent to its process group`, async () => {
    await withTempDir(async (work) => {
      const config = await quickStopConfig(work);
      // setsid: the task runner leads a process group of its own, like a shell job in a terminal.
      const child = new Deno.Command("setsid", {
        args: [Deno.execPath(), "task", "serve", "--config", config],
        cwd: ROOT,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      let text = "";
      let listening!: () => void;
      const listens = new Promise<void>((resolve) => listening = resolve);
      const drain = async (stream: ReadableStream<Uint8Array>) => {
        const decoder = new TextDecoder();
        for await (const chunk of stream) {
          text += decoder.decode(chunk, { stream: true });
          if (text.includes("Listening on http://127.0.0.1:")) listening();
        }
      };
      const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      try {
        await Promise.race([listens, child.status]);
        assert(text.includes("Listening on"), `flexo did not start:\n${text}`);
        Deno.kill(-child.pid, signal); // the whole group, as a terminal's Ctrl-C does
        const status = await child.status;
        await drained;
        assertEquals(receivedLines(text, signal), 1, text);
        assert(
          status.code === 0 || status.signal === signal,
          `ended with ${JSON.stringify(status)}:\n${text}`,
        );
      } finally {
        clearTimeout(timer);
        try {
          Deno.kill(-child.pid, "SIGKILL");
        } catch {
          // already ended
        }
      }
    });
  });
}
