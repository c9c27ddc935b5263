/**
 * A stand-in for the running proxy's parts that `/status`, `/metrics` and the page read: empty pools, no
 * downloads, fresh counters. A test overrides what it looks at; a field the status gains is added here once.
 *
 * @module
 */

import { Stats } from "../../src/status/stats.ts";
import type { StatusSource } from "../../src/status/status_source.ts";

/** An idle proxy's status source, with `overrides` in place. */
export function standInStatusSource(overrides: Partial<StatusSource> = {}): StatusSource {
  return {
    pool: {
      source: "stand-in",
      snapshot: () => [],
      hedgeBudget: { hedges: 0, wins: 0 },
      overtakes: { probes: 0, overtaken: 0 },
    },
    customPools: new Map(),
    store: { root: "/nowhere" },
    downloads: { list: () => [] },
    stats: new Stats(),
    startedAt: 0,
    nodeName: "stand-in-node",
    config: { cache_peers: [] },
    outage: { since: undefined },
    ...overrides,
  };
}
