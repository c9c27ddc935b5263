/**
 * The cost of the cache's "nothing there" check on a miss (src/cache/surely_missing.ts): microseconds per probe
 * of a missing and of a present path, for the C library's `access` (what the server uses), node's `existsSync`
 * (what it used before, loading `node:fs`) and the caught `Deno.statSync` fallback. Rounds interleave the three;
 * the medians of the rounds are printed.
 *
 * Usage: deno run --allow-all scripts/bench_path_probe.ts [--probes 10000] [--rounds 7]
 *
 * @module
 */

import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { statPathProbe } from "../src/cache/surely_missing.ts";
import { libcPathProbe, openLibc } from "../src/server/libc.ts";

const USAGE = "Usage: deno run --allow-all scripts/bench_path_probe.ts [--probes 10000] [--rounds 7]\n" +
  "  --probes N  probes of each path per round (default 10000)\n" +
  "  --rounds N  rounds, each probing with every implementation in turn (default 7)";

function positive(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`--${name} must be a positive whole number, not "${text}"`);
  }
  return value;
}

/** Microseconds per probe for each implementation and path, by round. */
export function measureProbes(probes: number, rounds: number): Map<string, number[]> {
  const loaded = openLibc();
  if (!loaded.ok) throw new Error(`cannot measure the libc probe: ${loaded.reason}`);
  const implementations: [string, (path: string) => boolean][] = [
    ["libc access", libcPathProbe(loaded.libc)],
    ["node existsSync", (path) => !existsSync(path)],
    ["Deno.statSync", statPathProbe],
  ];
  const dir = Deno.makeTempDirSync({ prefix: "flexo-probe-" });
  try {
    Deno.mkdirSync(`${dir}/core/os/x86_64`, { recursive: true });
    const present = `${dir}/core/os/x86_64/present-1-1-x86_64.pkg.tar.zst`;
    Deno.writeFileSync(present, new Uint8Array(1));
    const paths: [string, string, boolean][] = [
      ["missing", `${dir}/core/os/x86_64/a-1-1-x86_64.pkg.tar.zst`, true],
      ["present", present, false],
    ];
    const results = new Map<string, number[]>();
    for (let round = 0; round < rounds; round++) {
      for (const [name, probe] of implementations) {
        for (const [kind, path, missing] of paths) {
          const start = performance.now();
          for (let i = 0; i < probes; i++) {
            if (probe(path) !== missing) throw new Error(`${name} gave a wrong answer for the ${kind} path`);
          }
          const key = `${name}, ${kind}`;
          results.set(key, [...results.get(key) ?? [], (performance.now() - start) * 1000 / probes]);
        }
      }
    }
    return results;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      probes: { type: "string", default: "10000" },
      rounds: { type: "string", default: "7" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(USAGE);
  } else {
    const results = measureProbes(positive("probes", values.probes), positive("rounds", values.rounds));
    for (const [key, times] of results) {
      const sorted = times.toSorted((a, b) => a - b);
      const median = sorted[Math.floor(sorted.length / 2)];
      console.log(
        `${key.padEnd(26)} median ${median.toFixed(2)} us/probe (rounds ${sorted[0].toFixed(2)}-${
          sorted.at(-1)!.toFixed(2)
        })`,
      );
    }
  }
}
