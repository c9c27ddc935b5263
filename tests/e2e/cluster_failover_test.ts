/**
 * A cluster as docs/scaling.md describes it, with real processes: the shipped conf/haproxy.cfg in front of three
 * flexo nodes (`main.ts` as child processes) that list each other as cache peers, a local origin built with
 * repo-add, and the real pacman client. One node is killed with SIGKILL: clients keep getting whole, correct
 * files, HAProxy's health check on /healthz takes the node out, and only its share leaves the origin again. A
 * new, empty node then takes its place and fills itself from its peers: the origin sees no package download.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { type FlexoProcess, startFlexo, tomlString, writeConfig } from "../helpers/flexo_process.ts";
import { freePort, HAPROXY, HAVE_HAPROXY, startHaproxy } from "../helpers/haproxy.ts";
import { assertToolsAvailable, makeRepo, type PackageSpec, type RepoPackage } from "../helpers/make_repo.ts";
import { makePacmanRoot, runPacman } from "../helpers/pacman.ts";
import { waitFor } from "../helpers/wait.ts";

const SKIPPED = HAVE_HAPROXY ? "" : ` (skipped: ${HAPROXY} missing; apt-get install -y haproxy)`;
const REPO_DIR = "clustertest/os/x86_64";

/** Starts node `name` on `port` with an empty cache under `dir`, the origin as its mirror and `peers`. */
async function startNode(
  dir: string,
  options: { name: string; port: number; origin: string; peers: number[] },
): Promise<FlexoProcess> {
  const home = join(dir, options.name);
  await Deno.mkdir(join(home, "state"), { recursive: true });
  const config = await writeConfig(
    home,
    [
      `cache_directory = ${tomlString(join(home, "cache"))}`,
      `mirrorlist_fallback_file = ${tomlString(join(home, "state", "mirrorlist"))}`,
      `mirrorlist_latency_test_results_file = ${tomlString(join(home, "state", "latency.json"))}`,
      `port = ${options.port}`,
      'listen_ip_address = "127.0.0.1"',
      'mirror_selection_method = "predefined"',
      `mirrors_predefined = [${tomlString(options.origin)}]`,
      `cache_peers = [${options.peers.map((p) => tomlString(`http://127.0.0.1:${p}/`)).join(", ")}]`,
      'trusted_proxies = ["127.0.0.1/32"]',
      `node_name = ${tomlString(options.name)}`,
    ].join("\n"),
  );
  return await startFlexo(config);
}

/** Whether the node `name` under `dir` holds `file` in its cache. */
async function holds(dir: string, name: string, file: string): Promise<boolean> {
  return await Deno.stat(join(dir, name, "cache", REPO_DIR, file)).then(() => true, () => false);
}

/** What a client fetching every package over and over got, until `stop()`. */
function fetchLoop(url: string, packages: RepoPackage[], bytes: Map<string, Uint8Array>) {
  let running = true;
  const tally = { rounds: 0, whole: 0, broken: [] as string[], wrong: [] as string[] };
  const done = (async () => {
    while (running) {
      for (const pkg of packages) {
        try {
          const response = await fetch(`${url}/${REPO_DIR}/${pkg.fileName}`);
          const body = new Uint8Array(await response.arrayBuffer());
          const expected = bytes.get(pkg.fileName)!;
          if (response.status !== 200) tally.broken.push(`${pkg.fileName}: ${response.status}`);
          else if (body.length === expected.length && body.every((b, i) => b === expected[i])) tally.whole++;
          else tally.wrong.push(`${pkg.fileName}: ${body.length} bytes`);
        } catch (error) {
          // A body cut off by the kill is an error here, never silently short.
          tally.broken.push(`${pkg.fileName}: ${(error as Error).message}`);
        }
      }
      tally.rounds++;
    }
  })();
  return {
    tally,
    async stop() {
      running = false;
      await done;
    },
  };
}

Deno.test({
  name:
    "a cluster behind HAProxy survives kill -9 of a node, and a new, empty node fills itself from its peers" +
    SKIPPED,
  ignore: !HAVE_HAPROXY,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await assertToolsAvailable(["pacman", "repo-add", "bsdtar", "zstd"]);
    const dir = await Deno.makeTempDir({ prefix: "flexo-cluster-kill-" });
    const nodes = new Map<string, FlexoProcess>();
    const cleanups: (() => Promise<void>)[] = [];
    try {
      const packages: PackageSpec[] = Array.from({ length: 12 }, (_, i) => ({
        name: `pkg${i}`,
        version: "1.0-1",
        size: 20_000 + i * 5_000,
      }));
      const repo = await makeRepo(join(dir, "mirror"), { repo: "clustertest", packages });
      const bytes = new Map<string, Uint8Array>();
      for (const pkg of repo.packages) bytes.set(pkg.fileName, await Deno.readFile(pkg.path));
      const origin = await startFakeMirror(join(dir, "mirror"));
      cleanups.push(() => origin.close());
      const ports = [freePort(), freePort(), freePort()];
      const names = ["node1", "node2", "node3"];
      for (const [i, name] of names.entries()) {
        const peers = ports.filter((_, j) => j !== i);
        nodes.set(name, await startNode(dir, { name, port: ports[i], origin: origin.url, peers }));
      }
      const haproxy = await startHaproxy(dir, ports);
      cleanups.push(() => haproxy.close());
      const pacman = async () => {
        await using root = await makePacmanRoot({
          serverUrl: `${haproxy.url}/$repo/os/$arch`,
          repos: ["clustertest"],
        });
        const result = await runPacman(root, ["-Syw", ...packages.map((p) => p.name)]);
        assertEquals(result.code, 0, `pacman failed:\n${result.stdout}\n${result.stderr}`);
        // What pacman stored is exactly what the origin has.
        for (const pkg of repo.packages) {
          assertEquals(await Deno.readFile(join(root.cacheDir, pkg.fileName)), bytes.get(pkg.fileName));
        }
      };
      const originGets = (pkg: RepoPackage) => origin.countRequests(`/${pkg.fileName}`, { method: "GET" });

      await pacman();
      for (const pkg of repo.packages) assertEquals(originGets(pkg), 1, pkg.fileName);
      // The node with the largest share is the one to die.
      const shares = await Promise.all(names.map(async (name) => {
        const held = [];
        for (const pkg of repo.packages) if (await holds(dir, name, pkg.fileName)) held.push(pkg);
        return held;
      }));
      const victim = shares.indexOf(shares.reduce((a, b) => (b.length > a.length ? b : a)));
      const share = shares[victim];
      assert(
        share.length > 0 && share.length < repo.packages.length,
        `node shares ${shares.map((s) => s.length)}`,
      );

      await t.step(
        "kill -9 of a node: clients get whole files, /healthz checks take it out, only its share is fetched again",
        async () => {
          const loop = fetchLoop(haproxy.url, repo.packages, bytes);
          try {
            await waitFor("a first round of fetches", () => loop.tally.rounds >= 1, 30_000);
            await nodes.get(names[victim])!.stop("SIGKILL");
            // At once, before the health checks can have noticed (two failed checks a second apart): the dead
            // node's own files still come whole, HAProxy retrying the refused connection on another node.
            for (const pkg of share) {
              const response = await fetch(`${haproxy.url}/${REPO_DIR}/${pkg.fileName}`);
              assertEquals(response.status, 200, pkg.fileName);
              assertEquals(
                new Uint8Array(await response.arrayBuffer()),
                bytes.get(pkg.fileName),
                pkg.fileName,
              );
            }
            await waitFor(
              "HAProxy's health check to take the killed node out",
              async () =>
                (await haproxy.serverStates()).get(`flexo${victim + 1}`)?.startsWith("DOWN") ?? false,
              15_000,
            );
            const before = { rounds: loop.tally.rounds, broken: loop.tally.broken.length };
            await waitFor(
              "two rounds of fetches with the node out",
              () => loop.tally.rounds >= before.rounds + 3,
              30_000,
            );
            assertEquals(loop.tally.broken.slice(before.broken), [], "failures once the node was out");
          } finally {
            await loop.stop();
          }
          assertEquals(loop.tally.wrong, [], "a file served short or different");
          // Only a transfer running at the moment of the kill may break off (and is then an error, not short).
          assert(loop.tally.broken.length <= 1, `broken answers: ${loop.tally.broken.join("; ")}`);
          await pacman();
          for (const pkg of repo.packages) {
            const expected = share.includes(pkg) ? 2 : 1;
            assertEquals(
              originGets(pkg),
              expected,
              `${pkg.fileName} left the origin ${originGets(pkg)} times`,
            );
          }
        },
      );

      await t.step(
        "a new, empty node in the killed one's place fills itself from its peers: no package leaves the origin",
        async () => {
          origin.clearRequests();
          const name = "node4";
          const peers = ports.filter((_, j) => j !== victim);
          nodes.set(name, await startNode(dir, { name, port: ports[victim], origin: origin.url, peers }));
          await waitFor(
            "HAProxy to take the new node in",
            async () => (await haproxy.serverStates()).get(`flexo${victim + 1}`) === "UP",
            15_000,
          );
          await pacman();
          for (const pkg of repo.packages) {
            assertEquals(originGets(pkg), 0, `${pkg.fileName} left the origin`);
          }
          for (const pkg of share) {
            assert(await holds(dir, name, pkg.fileName), `${pkg.fileName} not on the new node`);
          }
          const status = await (await fetch(`${nodes.get(name)!.url}/status`)).json();
          assertEquals(status.node, {
            name,
            cachePeers: peers.map((p) => `http://127.0.0.1:${p}/`),
            peerHits: share.length,
            peerLoops: 0,
          });
        },
      );
    } finally {
      for (const node of nodes.values()) await node.stop("SIGKILL");
      for (const cleanup of cleanups.reverse()) await cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
