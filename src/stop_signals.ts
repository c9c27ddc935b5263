/**
 * The signals that stop the proxy, and the one it ignores.
 *
 * - SIGTERM and SIGINT start one stop, whatever their number: under `deno task` a terminal's Ctrl-C reaches flexo
 *   twice (from the terminal, and forwarded by the task runner), and a repeated signal must not start a second.
 * - SIGHUP would end the process by default, and systemd counts an end by SIGHUP as a clean stop that
 *   `Restart=on-failure` does not restart: an operator's `kill -HUP` (a reload, for nginx) would leave the proxy
 *   down. A proxy run as a service (its standard input is not a terminal) ignores it and says why; one run from a
 *   terminal stops, as its terminal has hung up.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";

const log = getLogger(["flexo"]);

/** The signals {@linkcode onStopSignals} listens to. */
export const STOP_SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"] as const;

/** What {@linkcode onStopSignals} needs. */
export interface StopSignalOptions {
  /** Whether the proxy runs from a terminal (then SIGHUP stops it); default: whether standard input is one. */
  fromTerminal?: boolean;
  /** Where the listeners are added; default `Deno.addSignalListener`. */
  listen?: (signal: Deno.Signal, handler: () => void) => void;
}

/**
 * Runs `stop` once, at the first stopping signal, and returns what tells whether (and how) it runs.
 *
 * @example
 * ```ts ignore
 * const stopping = onStopSignals(async (signal) => {
 *   await server.shutdown({ graceMs: 10_000 });
 *   Deno.exit(0);
 * });
 * await server.finished;
 * await stopping.current;
 * ```
 */
export function onStopSignals(
  stop: (signal: Deno.Signal) => Promise<void>,
  options: StopSignalOptions = {},
): { readonly current: Promise<void> | undefined } {
  const fromTerminal = options.fromTerminal ?? Deno.stdin.isTerminal();
  const listen = options.listen ?? ((signal, handler) => Deno.addSignalListener(signal, handler));
  const state: { current: Promise<void> | undefined } = { current: undefined };
  const start = (signal: Deno.Signal) => {
    if (state.current !== undefined) {
      log.debug("Already stopping; {signal} ignored", { signal });
      return;
    }
    log.info("{signal} received: finishing running transfers, then stopping", { signal });
    state.current = stop(signal);
  };
  for (const signal of STOP_SIGNALS) {
    listen(signal, () => {
      if (signal !== "SIGHUP" || fromTerminal) return start(signal);
      log.warn(
        "SIGHUP received and ignored: flexo does not reload its configuration; restart it to apply changes " +
          "(systemctl restart flexo)",
      );
    });
  }
  return state;
}
