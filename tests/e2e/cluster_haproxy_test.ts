/**
 * A cluster as docs/scaling.md describes it: the shipped conf/haproxy.cfg (only its bind address and server lines
 * replaced by ports on 127.0.0.1) in front of three flexo nodes and a local origin built with repo-add. The real
 * pacman client downloads signed packages through HAProxy; each file leaves the origin once, and a file and its
 * signature (packages and the database alike) are on the same node.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startFakeMirror } from "../helpers/fake_mirror.ts";
import { assertToolsAvailable, createGpgSigner, makeRepo, type PackageSpec } from "../helpers/make_repo.ts";
import { makePacmanRoot, runPacman } from "../helpers/pacman.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy_server.ts";
import { HAPROXY, type Haproxy, HAVE_HAPROXY, startHaproxy } from "../helpers/haproxy.ts";

const SKIPPED = HAVE_HAPROXY ? "" : ` (skipped: ${HAPROXY} missing; apt-get install -y haproxy)`;
const REPO_DIR = "flexotest/os/x86_64";

/** Which nodes hold `file` in their cache. */
async function holders(nodes: TestProxy[], file: string): Promise<number[]> {
  const found: number[] = [];
  for (const [i, node] of nodes.entries()) {
    if (await Deno.stat(join(node.dir, REPO_DIR, file)).then(() => true, () => false)) found.push(i);
  }
  return found;
}

Deno.test({
  name:
    "pacman through the shipped haproxy.cfg and three nodes: each file leaves the origin once, .sig beside its file" +
    SKIPPED,
  ignore: !HAVE_HAPROXY,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await assertToolsAvailable(["pacman", "repo-add", "bsdtar", "zstd", "gpg"]);
    const dir = await Deno.makeTempDir({ prefix: "flexo-cluster-" });
    const signer = await createGpgSigner(dir);
    let haproxy: Haproxy | undefined;
    const nodes: TestProxy[] = [];
    try {
      const packages: PackageSpec[] = Array.from({ length: 12 }, (_, i) => ({
        name: `pkg${i}`,
        version: "1.0-1",
        size: 2000 + i * 500,
      }));
      const repo = await makeRepo(join(dir, "mirror"), { repo: "flexotest", packages, sign: signer });
      await signer.sign(join(dir, "mirror", REPO_DIR, "flexotest.db"));
      await using origin = await startFakeMirror(join(dir, "mirror"));
      for (let i = 0; i < 3; i++) {
        nodes.push(
          await startTestProxy({ mirrors: [origin.url], config: { trusted_proxies: ["127.0.0.1/32"] } }),
        );
      }
      haproxy = await startHaproxy(dir, nodes.map((node) => node.port));
      const balancer = haproxy.url;

      await using root = await makePacmanRoot({
        serverUrl: `${balancer}/$repo/os/$arch`,
        repos: ["flexotest"],
        sigLevel: "Required",
        signer,
      });
      const result = await runPacman(root, ["-Syw", ...packages.map((p) => p.name)]);
      assertEquals(result.code, 0, `pacman failed:\n${result.stdout}\n${result.stderr}`);

      for (const pkg of repo.packages) {
        for (const file of [pkg.fileName, `${pkg.fileName}.sig`]) {
          assertEquals(
            origin.countRequests(`/${file}`, { method: "GET" }),
            1,
            `${file} left the origin more than once`,
          );
        }
        const at = await holders(nodes, pkg.fileName);
        assertEquals(at.length, 1, `${pkg.fileName} on nodes ${at}`);
        assertEquals(
          await holders(nodes, `${pkg.fileName}.sig`),
          at,
          `${pkg.fileName}.sig not beside its package`,
        );
      }
      const used = new Set(
        (await Promise.all(repo.packages.map((pkg) => holders(nodes, pkg.fileName)))).flat(),
      );
      assert(used.size >= 2, "the packages are spread over the nodes");
      // The balancer sends the database to one node; every node that stored a package fetched the database
      // first (database_first.ts), so that it verified the package against it.
      const db = await holders(nodes, "flexotest.db");
      for (const node of used) assert(db.includes(node), `node ${node} stored packages without the database`);
      const sig = await holders(nodes, "flexotest.db.sig");
      assertEquals(sig.length, 1, `flexotest.db.sig on nodes ${sig}`);
      assert(db.includes(sig[0]), "the database's signature on a node without the database");
    } finally {
      await haproxy?.close();
      for (const node of nodes) await node.close();
      await signer.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
