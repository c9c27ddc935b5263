/**
 * The shipped conf/haproxy.cfg pointed at nodes on 127.0.0.1, for the cluster tests and the cluster benchmark
 * (scripts/bench_cluster.ts): only its bind address and server lines are replaced.
 *
 * @module
 */

const SHIPPED = new URL("../conf/haproxy.cfg", import.meta.url);

/**
 * conf/haproxy.cfg with its bind address and server lines pointed at 127.0.0.1 ports (`flexo1` at
 * `nodePorts[0]`, ...), and, with `statsPort`, a stats listener on 127.0.0.1 (`/stats;csv`).
 *
 * @throws {Error} when the shipped file no longer has the lines replaced.
 */
export async function haproxyConfig(port: number, nodePorts: number[], statsPort?: number): Promise<string> {
  const shipped = await Deno.readTextFile(SHIPPED);
  const serverLines = /^(\s*)server flexo\d+ \S+\n/gm;
  const indent = /^(\s*)server /m.exec(shipped)?.[1];
  let first = true;
  let config = shipped
    .replace(/^(\s*)bind :7878$/m, `$1bind 127.0.0.1:${port}`)
    .replace(serverLines, () => {
      if (!first) return "";
      first = false;
      return nodePorts.map((p, i) => `${indent}server flexo${i + 1} 127.0.0.1:${p}\n`).join("");
    });
  if (indent === undefined || config.includes("10.0.0.") || !config.includes(`bind 127.0.0.1:${port}`)) {
    throw new Error(`conf/haproxy.cfg changed: its bind or server lines were not replaced:\n${config}`);
  }
  if (statsPort !== undefined) {
    config += `\nlisten stats\n    bind 127.0.0.1:${statsPort}\n    stats enable\n    stats uri /stats\n`;
  }
  return config;
}
