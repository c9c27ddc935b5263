/**
 * `GET /healthz`: whether a balancer should send this node new clients. 200 `ok` while the node serves; 503
 * `draining` once it is stopping (after SIGTERM, for `shutdown_drain_secs` before the listener closes), so that
 * a balancer's health check takes the node out while its running downloads go on.
 *
 * @module
 */

import { Hono } from "hono";

/** Whether the node takes new clients. */
export type HealthState = "serving" | "draining";

/** The node's health, owned by the app; `main.ts` switches it to draining on SIGTERM. */
export class NodeHealth {
  #state: HealthState = "serving";

  /** The current state. */
  get state(): HealthState {
    return this.#state;
  }

  /** From now on `/healthz` answers 503; requests are still served. */
  startDraining(): void {
    this.#state = "draining";
  }
}

/** The `/healthz` route (GET and HEAD); never cached by anyone on the way. */
export function healthRoutes(health: NodeHealth): Hono {
  const routes = new Hono();
  routes.on(["GET", "HEAD"], "/healthz", (c) => {
    const serving = health.state === "serving";
    c.header("Cache-Control", "no-store");
    c.header("Content-Type", "text/plain; charset=utf-8");
    return c.body(serving ? "ok\n" : "draining\n", serving ? 200 : 503);
  });
  return routes;
}

/** Resolves after `ms` milliseconds with the injected timer (the drain period before the listener closes). */
export function drainPeriod(
  ms: number,
  timers: { setTimeout: (fn: () => void, ms: number) => unknown } = globalThis,
): Promise<void> {
  return new Promise((resolve) => void timers.setTimeout(resolve, ms));
}
