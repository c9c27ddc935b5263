/**
 * The signals that stop the proxy: one stop however many come, and SIGHUP only from a terminal (a service's
 * `kill -HUP` would otherwise end it for good under systemd's Restart=on-failure).
 */

import { assertEquals } from "./helpers/assert.ts";
import { captureLog } from "./helpers/log_capture.ts";
import { onStopSignals, STOP_SIGNALS } from "../src/stop_signals.ts";
import { startFlexo, writeTestConfig } from "./helpers/flexo_process.ts";
import { withTempDir } from "./helpers/temp_dir.ts";

/** The handlers onStopSignals adds, by signal, instead of the process's. */
function fakeSignals() {
  const handlers = new Map<Deno.Signal, () => void>();
  return { handlers, listen: (signal: Deno.Signal, handler: () => void) => handlers.set(signal, handler) };
}

Deno.test("onStopSignals() stops once for SIGTERM and SIGINT, however many come", () => {
  const { handlers, listen } = fakeSignals();
  const stops: Deno.Signal[] = [];
  const stopping = onStopSignals((signal) => {
    stops.push(signal);
    return Promise.resolve();
  }, { fromTerminal: false, listen });
  assertEquals([...handlers.keys()].sort(), [...STOP_SIGNALS].sort());
  assertEquals(stopping.current, undefined);
  handlers.get("SIGINT")!();
  handlers.get("SIGINT")!();
  handlers.get("SIGTERM")!();
  assertEquals(stops, ["SIGINT"]);
  assertEquals(stopping.current instanceof Promise, true);
});

Deno.test("onStopSignals() ignores SIGHUP in a service, with a warning, and stops on it from a terminal", async () => {
  const captured = await captureLog();
  const service = fakeSignals();
  const serviceStops: Deno.Signal[] = [];
  onStopSignals((signal) => {
    serviceStops.push(signal);
    return Promise.resolve();
  }, { fromTerminal: false, listen: service.listen });
  try {
    service.handlers.get("SIGHUP")!();
  } finally {
    await captured.close();
  }
  assertEquals(serviceStops, []);
  assertEquals(
    captured.text().split("\n").filter((line) => line.includes("SIGHUP received and ignored")).length,
    1,
  );

  const terminal = fakeSignals();
  const terminalStops: Deno.Signal[] = [];
  onStopSignals((signal) => {
    terminalStops.push(signal);
    return Promise.resolve();
  }, { fromTerminal: true, listen: terminal.listen });
  terminal.handlers.get("SIGHUP")!();
  assertEquals(terminalStops, ["SIGHUP"]);
});

Deno.test("main.ts run as a service keeps serving after SIGHUP and stops on SIGTERM", async () => {
  await withTempDir(async (work) => {
    const config = await writeTestConfig(work, { cacheDir: `${work}/cache`, mirror: "http://127.0.0.1:9/" });
    await Deno.writeTextFile(config, "\nshutdown_drain_secs = 0\n", { append: true });
    const flexo = await startFlexo(config); // standard input is /dev/null, as under systemd
    try {
      Deno.kill(flexo.pid, "SIGHUP");
      let answered = false;
      for (let i = 0; i < 100 && !answered; i++) {
        // The signal reaches the process asynchronously: ask until the warning is written, then once more.
        if (flexo.output().includes("SIGHUP received and ignored")) {
          const health = await fetch(`${flexo.url}/healthz`);
          await health.body?.cancel();
          answered = health.status === 200;
        } else await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assertEquals(answered, true, flexo.output());
    } finally {
      assertEquals((await flexo.stop("SIGTERM")).code, 0, flexo.output());
    }
  });
});
