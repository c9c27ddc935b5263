import { assertEquals } from "./helpers/assert.ts";
import {
  type GcFunction,
  IdleRelease,
  processReleaseTools,
  releaseMemory,
  startMemoryReleases,
  STARTUP_RELEASE_DELAY_MS,
} from "../src/memory_release.ts";
import { V8_FLAGS_ARG } from "../scripts/compile.ts";

Deno.test("releaseMemory() asks V8 for its last-resort collection, then trims malloc's arenas", () => {
  const calls: string[] = [];
  const gc: GcFunction = (options) => calls.push(`gc ${JSON.stringify(options)}`);
  const done = releaseMemory({ gc, mallocTrim: () => calls.push("trim") });
  assertEquals(calls, ['gc {"type":"major","execution":"sync","flavor":"last-resort"}', "trim"]);
  assertEquals(done, { collected: true, trimmed: true });
});

Deno.test("releaseMemory() runs the steps it has the tools for", () => {
  const calls: string[] = [];
  assertEquals(releaseMemory({ mallocTrim: () => calls.push("trim") }), { collected: false, trimmed: true });
  assertEquals(releaseMemory({}), { collected: false, trimmed: false });
  assertEquals(calls, ["trim"]);
});

Deno.test("processReleaseTools() finds V8's collector with the V8 flags flexo runs with", async () => {
  const probe = `import { processReleaseTools } from ${
    JSON.stringify(import.meta.resolve("../src/memory_release.ts"))
  };
    console.log(String(processReleaseTools().gc !== undefined));`;
  const run = async (flags: string[]) => {
    const output = await new Deno.Command(Deno.execPath(), { args: ["eval", ...flags, probe] }).output();
    return new TextDecoder().decode(output.stdout).trim();
  };
  assertEquals(await run([V8_FLAGS_ARG]), "true");
  assertEquals(await run([]), "false");
});

Deno.test("processReleaseTools() passes the trim it is given", () => {
  const trim = () => {};
  assertEquals(processReleaseTools(trim).mallocTrim, trim);
});

/** An IdleRelease on a fake interval timer and a settable activity count. */
function fakeIdle() {
  let tick: (() => void) | undefined;
  let activity = 0;
  let releases = 0;
  const idle = new IdleRelease({
    release: () => releases++,
    activity: () => activity,
    setInterval: (callback) => (tick = callback, 1),
    clearInterval: () => tick = undefined,
  });
  return {
    idle,
    tick: () => tick?.(),
    work: () => activity++,
    releases: () => releases,
    running: () => tick !== undefined,
  };
}

Deno.test("IdleRelease releases once at the first quiet look after activity, never during it", () => {
  const fake = fakeIdle();
  fake.idle.start();
  for (let i = 0; i < 5; i++) {
    fake.work();
    fake.tick();
  }
  assertEquals(fake.releases(), 0, "busy at every look");
  fake.tick();
  assertEquals(fake.releases(), 1, "quiet at the next look");
  fake.tick();
  fake.tick();
  assertEquals(fake.releases(), 1, "staying quiet costs nothing");
  fake.work();
  fake.tick();
  fake.tick();
  assertEquals(fake.releases(), 2, "the next busy period is followed by one more");
});

Deno.test("IdleRelease never releases for a proxy that stays idle, and stops looking when stopped", () => {
  const fake = fakeIdle();
  fake.idle.start();
  for (let i = 0; i < 5; i++) fake.tick();
  assertEquals(fake.releases(), 0);
  fake.idle.stop();
  assertEquals(fake.running(), false);
});

Deno.test("startMemoryReleases() releases once all the start-up work has settled, failures included", async () => {
  let releases = 0;
  let finishScan!: () => void;
  const scan = new Promise<void>((resolve) => finishScan = resolve);
  const failed = Promise.reject(new Error("unreadable database"));
  const { idle, afterStartup } = startMemoryReleases({
    startup: [scan, failed],
    activity: () => 0,
    release: () => releases++,
    setInterval: () => 1,
    clearInterval: () => {},
    delay: () => Promise.resolve(),
  });
  await Promise.resolve();
  assertEquals(releases, 0, "the scan still runs");
  finishScan();
  await afterStartup;
  assertEquals(releases, 1);
  idle.stop();
});

Deno.test("startMemoryReleases() waits STARTUP_RELEASE_DELAY_MS after the start-up work before its release", async () => {
  let releases = 0;
  const waits: number[] = [];
  let endWait!: () => void;
  const { idle, afterStartup } = startMemoryReleases({
    startup: [Promise.resolve()],
    activity: () => 0,
    release: () => releases++,
    setInterval: () => 1,
    clearInterval: () => {},
    delay: (ms) => (waits.push(ms), new Promise<void>((resolve) => endWait = resolve)),
  });
  for (let i = 0; i < 5; i++) await Promise.resolve();
  assertEquals([waits, releases], [[STARTUP_RELEASE_DELAY_MS], 0], "start-up has settled; the wait runs");
  endWait();
  await afterStartup;
  assertEquals(releases, 1);
  idle.stop();
});
