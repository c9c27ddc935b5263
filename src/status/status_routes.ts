/**
 * What an administrator looks at: `GET /` (the status page), `GET /status` (the same data as JSON) and
 * `GET /metrics` (Prometheus). All three read the live state of the app; none of them touches the disk.
 *
 * @module
 */

import { Hono } from "hono";
import type { Metrics } from "./metrics.ts";
import { SpeedMeter, statusReport } from "./status_report.ts";
import type { statusPage } from "./status_page.ts";
import type { StatusOptions, StatusSource } from "./status_source.ts";

/**
 * The routes `GET /`, `GET /status` and `GET /metrics`, to mount before the proxy's catch-all route.
 *
 * @param app The running proxy's parts that are reported (app.ts's `FlexoApp` is passed as it is).
 * @param options The clock and the cache's size.
 */
export function statusRoutes(app: StatusSource, options: StatusOptions): Hono {
  const speeds = new SpeedMeter();
  // prom-client, with the Node compatibility modules it needs, is loaded at the first scrape: about 7 MiB of
  // memory that a proxy nobody scrapes does not need (see BENCHMARKS.md).
  let metrics: Promise<Metrics> | undefined;
  // The page's HTML and script (about 27 KB of source) are loaded at its first view, after start-up.
  let page: Promise<typeof statusPage> | undefined;
  const hono = new Hono();
  hono.get("/", async (c) => {
    page ??= import("./status_page.ts").then((module) => module.statusPage);
    const render = await page;
    const nonce = crypto.randomUUID().replaceAll("-", "");
    c.header(
      "Content-Security-Policy",
      `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; ` +
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    c.header("Cache-Control", "no-store");
    c.header("X-Content-Type-Options", "nosniff");
    c.header("Referrer-Policy", "no-referrer");
    return c.html(render(statusReport(app, { ...options, speeds }), { nonce }));
  });
  hono.get("/status", (c) => {
    c.header("Cache-Control", "no-store");
    return c.json(statusReport(app, { ...options, speeds }));
  });
  hono.get("/metrics", async (c) => {
    metrics ??= import("./metrics.ts").then((module) => module.createMetrics(app, options));
    const loaded = await metrics;
    c.header("Cache-Control", "no-store");
    c.header("Content-Type", loaded.contentType);
    return c.body(await loaded.render());
  });
  return hono;
}
