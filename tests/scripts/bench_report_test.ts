/**
 * The benchmark's report (`scripts/bench_report.ts`) and what it reads from flexo: rows with the logs on count
 * only when flexo wrote every line, as nginx does.
 */

import { figuresOf, type LoggedLoad } from "../../scripts/bench_report.ts";
import type { LoadResult } from "../../scripts/bench_measure.ts";
import { metricValue } from "../../scripts/bench_proxies.ts";
import { assert, assertEquals } from "../helpers/assert.ts";

function load(requestsPerSecond: number): LoadResult {
  const seconds = 5;
  const requests = requestsPerSecond * seconds;
  return {
    requests,
    bytes: requests * 4400,
    seconds,
    errors: 0,
    requestsPerSecond,
    bytesPerSecond: requests * 4400 / seconds,
    cpuSeconds: 1,
  };
}

function logged(flexoLogLinesDropped: number): LoggedLoad {
  return {
    runs: { nginx: [load(20_000)], nginx_tuned: [load(20_000)], flexo: [load(40_000)] },
    logBytes: { nginx: 1, nginx_tuned: 1, flexo: 1 },
    logSettleMs: {},
    flexoPeakRssBytes: 1,
    flexoLogLinesDropped,
  };
}

Deno.test("figuresOf(): a logs-on row where flexo dropped log lines does not meet its goal, and says why", () => {
  const ok = figuresOf({ smallLogged: logged(0) }).filter((f) => f.goal !== "-");
  assert(ok.length > 0);
  assert(ok.every((f) => f.pass), JSON.stringify(ok));
  const dropped = figuresOf({ smallLogged: logged(12) }).filter((f) => f.goal !== "-");
  assertEquals(dropped.map((f) => f.pass), dropped.map(() => false));
  assert(dropped.every((f) => f.label.includes("flexo dropped 12 log lines")), dropped[0].label);
});

Deno.test("metricValue() reads an unlabelled counter from Prometheus text, undefined when it is absent", () => {
  const text = "# HELP flexo_log_lines_dropped_total Log lines dropped.\n" +
    "# TYPE flexo_log_lines_dropped_total counter\nflexo_log_lines_dropped_total 42\n" +
    'flexo_requests_total{result="hit"} 7\n';
  assertEquals(metricValue(text, "flexo_log_lines_dropped_total"), 42);
  assertEquals(metricValue(text, "flexo_requests"), undefined);
  assertEquals(metricValue(text, "flexo_missing_total"), undefined);
});
