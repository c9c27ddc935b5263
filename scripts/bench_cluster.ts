/**
 * The cluster's capacity on this machine: requests per second for cached small packages through HAProxy (the
 * shipped conf/haproxy.cfg) with three flexo nodes against the same HAProxy with one node, and one node without
 * HAProxy as a reference. wrk asks for many paths in turn, so that the balancer's hash spreads them over the
 * nodes; every file is fetched twice before measuring, so every answer is a cache hit. Setups alternate run
 * after run so that drift on a shared machine hits them alike; medians are printed as a Markdown table for
 * docs/scaling.md.
 *
 *   deno run --allow-all scripts/bench_cluster.ts [--runs 3] [--seconds 10] [--files 60] [--connections 32]
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { Children, freePort, median, runWrk, waitForOk } from "./bench_tools.ts";
import { startFlexo, startOrigin } from "./bench_proxies.ts";
import { haproxyConfig } from "./haproxy_config.ts";

const HAPROXY = "/usr/sbin/haproxy";
const FILE_SIZE = 4096;

/** One way to reach the nodes, measured. */
interface Setup {
  name: string;
  url: string;
  rates: number[];
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      runs: { type: "string", default: "3" },
      seconds: { type: "string", default: "10" },
      files: { type: "string", default: "60" },
      connections: { type: "string", default: "32" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno run --allow-all scripts/bench_cluster.ts [--runs 3] [--seconds 10] [--files 60] " +
        "[--connections 32]\nRequests/s for cached small packages: HAProxy with 3 flexo nodes, with 1, and 1 " +
        "node alone.",
    );
    return 0;
  }
  const [runs, seconds, files, connections] = [values.runs, values.seconds, values.files, values.connections]
    .map(Number);
  const work = await Deno.makeTempDir({ prefix: "flexo-bench-cluster-" });
  const children = new Children();
  try {
    const root = join(work, "origin");
    const dir = join(root, "core", "os", "x86_64");
    await Deno.mkdir(dir, { recursive: true });
    const paths: string[] = [];
    for (let i = 0; i < files; i++) {
      const name = `small${i}-1.0-1-x86_64.pkg.tar.zst`;
      await Deno.writeFile(join(dir, name), crypto.getRandomValues(new Uint8Array(FILE_SIZE)));
      paths.push(`/core/os/x86_64/${name}`);
    }
    const origin = await startOrigin(children, { root, latencyMs: 0, rate: 0 });
    const nodes = [];
    for (let i = 1; i <= 3; i++) {
      const node = await startFlexo(children, { dir: join(work, `node${i}`), originPort: origin.port });
      await waitForOk(`${node.base}healthz`, { timeoutMs: 30_000, child: node.child });
      nodes.push(node);
    }
    const ports = nodes.map((node) => Number(new URL(node.base).port));
    const balancer = async (nodePorts: number[]) => {
      const port = freePort();
      const config = join(work, `haproxy-${nodePorts.length}.cfg`);
      await Deno.writeTextFile(config, await haproxyConfig(port, nodePorts));
      const child = children.spawn(HAPROXY, ["-db", "-f", config]);
      const url = `http://127.0.0.1:${port}`;
      await waitForOk(`${url}/healthz`, { timeoutMs: 30_000, child });
      return url;
    };
    const setups: Setup[] = [
      { name: "1 node, no HAProxy", url: nodes[0].base.slice(0, -1), rates: [] },
      { name: "HAProxy, 1 node", url: await balancer(ports.slice(0, 1)), rates: [] },
      { name: "HAProxy, 3 nodes", url: await balancer(ports), rates: [] },
    ];
    for (const setup of setups) {
      for (let round = 0; round < 2; round++) {
        for (const path of paths) {
          const response = await fetch(setup.url + path);
          await response.body?.cancel();
          if (response.status !== 200) throw new Error(`${setup.name}: ${path} answered ${response.status}`);
        }
      }
    }
    for (let run = 1; run <= runs; run++) {
      for (const setup of setups) {
        const result = await runWrk(setup.url + paths[0], {
          connections,
          threads: 2,
          seconds,
          workDir: work,
          paths,
        });
        if (result.errors > 0) throw new Error(`${setup.name}: ${result.errors} errors under wrk`);
        setup.rates.push(result.requestsPerSecond);
        console.error(`run ${run}: ${setup.name}: ${Math.round(result.requestsPerSecond)} requests/s`);
      }
    }
    const one = median(setups[1].rates);
    console.log(`| setup | requests/s (median of ${runs}) | runs | vs HAProxy, 1 node |`);
    console.log("| --- | --- | --- | --- |");
    for (const setup of setups) {
      const rate = median(setup.rates);
      const each = setup.rates.map((r) => Math.round(r)).join(", ");
      console.log(`| ${setup.name} | ${Math.round(rate)} | ${each} | ${(rate / one).toFixed(2)} x |`);
    }
    console.log(
      `\n${new Date().toISOString()}, ${navigator.hardwareConcurrency} CPUs, load average ` +
        `${
          Deno.loadavg().map((l) => l.toFixed(1)).join(" ")
        }; ${files} files of ${FILE_SIZE} bytes, wrk -t 2 ` +
        `-c ${connections} -d ${seconds}s per run.`,
    );
    return 0;
  } finally {
    await children.killAll();
    await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    console.error(`bench_cluster: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(1);
  }
}
