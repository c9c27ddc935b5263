/**
 * A real HAProxy for cluster tests: the shipped conf/haproxy.cfg with only its bind address and server lines
 * pointed at 127.0.0.1 ports (scripts/haproxy_config.ts), plus a stats listener from which a test reads what
 * HAProxy thinks of each node.
 *
 * @module
 */

import { join } from "node:path";
import { haproxyConfig } from "../../scripts/haproxy_config.ts";
import { waitFor } from "./wait.ts";

/** Where Debian's haproxy is. */
export const HAPROXY = "/usr/sbin/haproxy";

/** Whether HAProxy is installed (tests skip without it). */
export const HAVE_HAPROXY = await Deno.stat(HAPROXY).then(() => true, () => false);

/** A free port on 127.0.0.1 (for a listener whose port must be known before it starts). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  listener.close();
  return (listener.addr as Deno.NetAddr).port;
}

/** A running HAProxy. */
export interface Haproxy {
  /** `http://127.0.0.1:PORT`, the frontend. */
  url: string;
  /** What HAProxy's health checks say of each node now, by server name (`flexo1`: `UP`, `DOWN`, ...). */
  serverStates(): Promise<Map<string, string>>;
  /** Stops it. */
  close(): Promise<void>;
}

/**
 * Starts HAProxy in front of the nodes at `nodePorts` (config in `dir`) and resolves once its frontend answers
 * `/healthz` (one node is up).
 */
export async function startHaproxy(dir: string, nodePorts: number[]): Promise<Haproxy> {
  const port = freePort();
  const statsPort = freePort();
  const configPath = join(dir, `haproxy-${crypto.randomUUID()}.cfg`);
  await Deno.writeTextFile(configPath, await haproxyConfig(port, nodePorts, statsPort));
  const child = new Deno.Command(HAPROXY, { args: ["-db", "-f", configPath], stdout: "null", stderr: "null" })
    .spawn();
  const url = `http://127.0.0.1:${port}`;
  const haproxy: Haproxy = {
    url,
    async serverStates() {
      const csv = await (await fetch(`http://127.0.0.1:${statsPort}/stats;csv`)).text();
      // "# pxname,svname,qcur,...": the columns by name; one line per proxy and server.
      const [header, ...lines] = csv.trim().split("\n");
      const columns = header.replace(/^# /, "").split(",");
      const [proxy, server, status] = ["pxname", "svname", "status"].map((name) => columns.indexOf(name));
      const states = new Map<string, string>();
      for (const line of lines) {
        const cells = line.split(",");
        if (cells[proxy] === "flexo" && cells[server].startsWith("flexo")) {
          states.set(cells[server], cells[status]);
        }
      }
      return states;
    },
    async close() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already ended
      }
      await child.status;
    },
  };
  try {
    await waitFor("HAProxy to answer", async () => {
      const response = await fetch(`${url}/healthz`).catch(() => undefined);
      await response?.body?.cancel();
      return response?.status === 200;
    });
  } catch (error) {
    await haproxy.close();
    throw error;
  }
  return haproxy;
}
