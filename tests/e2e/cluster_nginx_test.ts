/**
 * The shipped conf/nginx-cluster.conf, run by Debian's nginx in front of three stand-in nodes on 127.0.0.1: a
 * file and its `.sig` land on the same node (the hash key strips `.sig`), different files spread over the nodes,
 * and the nodes get the client's address in `X-Forwarded-For` (for their `trusted_proxies`).
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { freePort } from "../helpers/haproxy.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { waitFor } from "../helpers/wait.ts";
import { parseResponse, rawExchange } from "../helpers/sockets.ts";
import { listenForClients } from "../../src/server/client_connections.ts";

const NGINX = "/usr/sbin/nginx";
const ROOT = new URL("../..", import.meta.url).pathname;
const skip = await Deno.stat(NGINX).then(() => false, () => true);

/** Three servers that answer which of them was asked, and with which X-Forwarded-For. */
function standInNodes() {
  return [0, 1, 2].map((n) =>
    Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (req) =>
        Response.json({ node: n, path: new URL(req.url).pathname, xff: req.headers.get("x-forwarded-for") }),
    )
  );
}

/** The shipped configuration with the nodes' and the listener's addresses of this test. */
async function shippedConfig(ports: number[], listen: number, dir: string): Promise<string> {
  let conf = await Deno.readTextFile(join(ROOT, "conf", "nginx-cluster.conf"));
  let i = 0;
  conf = conf.replace(/server 10\.0\.0\.\d+:7878/g, () => `server 127.0.0.1:${ports[i++]}`);
  assertEquals(i, 3, "the shipped configuration names three nodes");
  conf = conf.replace("listen 7878;", `listen 127.0.0.1:${listen};`);
  const main = [
    "daemon off;",
    "worker_processes 1;",
    `pid ${join(dir, "nginx.pid")};`,
    `error_log ${join(dir, "error.log")};`,
    "events { worker_connections 64; }",
    "http {",
    `  access_log off; client_body_temp_path ${dir}; proxy_temp_path ${dir};`,
    `  fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};`,
    conf,
    "}",
  ].join("\n");
  const path = join(dir, "nginx.conf");
  await Deno.writeTextFile(path, main);
  return path;
}

Deno.test({
  name:
    "conf/nginx-cluster.conf sends a file and its .sig to one node, spreads files over the nodes and passes X-Forwarded-For",
  ignore: skip,
  async fn() {
    await withTempDir(async (dir) => {
      const nodes = standInNodes();
      const listen = freePort();
      const config = await shippedConfig(nodes.map((n) => n.addr.port), listen, dir);
      const nginx = new Deno.Command(NGINX, {
        args: ["-c", config, "-p", dir],
        stdout: "null",
        stderr: "piped",
      })
        .spawn();
      const ask = async (path: string) => {
        const response = await fetch(`http://127.0.0.1:${listen}${path}`);
        return await response.json() as { node: number; path: string; xff: string | null };
      };
      try {
        await waitFor("nginx to listen", async () => {
          try {
            await ask("/");
            return true;
          } catch {
            return false;
          }
        }, 10_000);
        const used = new Set<number>();
        for (let i = 0; i < 40; i++) {
          const file = `/core/os/x86_64/p${i}-1.0-1-x86_64.pkg.tar.zst`;
          const pkg = await ask(file);
          const sig = await ask(`${file}.sig`);
          assertEquals(sig.node, pkg.node, `${file} and its .sig on one node`);
          assertEquals([pkg.path, sig.path], [file, `${file}.sig`], "the path reaches the node as asked");
          assertEquals(pkg.xff, "127.0.0.1");
          used.add(pkg.node);
        }
        const db = await ask("/core/os/x86_64/core.db");
        assertEquals(
          (await ask("/core/os/x86_64/core.db.sig")).node,
          db.node,
          "a database and its .sig on one node",
        );
        assert(used.size >= 2, `40 files went to ${used.size} node(s) only`);
      } finally {
        nginx.kill("SIGTERM");
        const status = await nginx.status;
        await nginx.stderr.cancel().catch(() => {});
        for (const node of nodes) await node.shutdown();
        assert(
          status.code === 0 || status.signal === "SIGTERM",
          `nginx ended with ${JSON.stringify(status)}`,
        );
      }
    });
  },
});

Deno.test({
  name: "conf/nginx-cluster.conf passes an HTTP/1.0 request without Host to flexo's server as one it accepts",
  ignore: skip,
  async fn() {
    await withTempDir(async (dir) => {
      // flexo's own HTTP/1.1 layer as the nodes: it refuses an HTTP/1.1 request without Host (RFC 9112 3.2), and
      // nginx forwards every request as HTTP/1.1 (proxy_http_version 1.1).
      const nodes = [0, 1, 2].map(() =>
        listenForClients((req) => new Response(`host ${req.headers.get("host")}`), {
          hostname: "127.0.0.1",
          port: 0,
          timeoutMs: 5_000,
          onError: () => new Response("failed", { status: 500 }),
        })
      );
      const listen = freePort();
      const config = await shippedConfig(nodes.map((n) => n.addr.port), listen, dir);
      const nginx = new Deno.Command(NGINX, {
        args: ["-c", config, "-p", dir],
        stdout: "null",
        stderr: "null",
      })
        .spawn();
      try {
        // An HTTP/1.0 client (a monitoring probe, an old script) may send no Host, as HTTP/1.0 allows.
        const ask = async () =>
          parseResponse(await rawExchange(listen, "GET /core/os/x86_64/core.db HTTP/1.0\r\n\r\n"));
        await waitFor("nginx to listen", () => ask().then(() => true, () => false), 10_000);
        const answer = await ask();
        assertEquals(answer.status, 200, answer.body);
        const withHost = parseResponse(
          await rawExchange(
            listen,
            "GET /core/os/x86_64/core.db HTTP/1.1\r\nHost: Mirror.Lan:7878\r\nConnection: close\r\n\r\n",
          ),
        );
        assertEquals(withHost.status, 200, withHost.body);
      } finally {
        nginx.kill("SIGTERM");
        await nginx.status;
        for (const node of nodes) await node.shutdown();
      }
    });
  },
});
