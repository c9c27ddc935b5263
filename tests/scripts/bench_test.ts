import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { median, NGINX_BINARY, nginxConfig, run, serveTaskArgs } from "../../scripts/bench_tools.ts";
import { PERMISSIONS, V8_FLAGS_ARG } from "../../scripts/compile.ts";
import { packageSpecs } from "../../scripts/bench_pacman.ts";
import { GROUPS, parseSettings } from "../../scripts/bench_settings.ts";

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const HAVE_NGINX = (await run(NGINX_BINARY, ["-v"])).success;
const WRK = await run("wrk", ["--version"]);
const HAVE_WRK = WRK.spawned && WRK.output.startsWith("wrk ");
const HAVE_PACMAN = (await run("pacman", ["--version"])).success &&
  (await run("repo-add", ["--version"])).success;
const MISSING = [
  HAVE_NGINX ? "" : NGINX_BINARY,
  HAVE_WRK ? "" : "wrk",
  HAVE_PACMAN ? "" : "pacman or repo-add",
].filter((s) => s !== "").join(" and ");
const SKIP_NOTE = MISSING
  ? ` (skipped: ${MISSING} missing; apt-get install -y nginx-light wrk pacman-package-manager libarchive-tools zstd)`
  : "";

const FIGURES = [
  "warm_large_throughput",
  "warm_large_throughput_tuned",
  "warm_large_throughput_tuned_auto",
  "warm_large_cpu_per_gib",
  "warm_large_throughput_logged",
  "warm_large_throughput_tuned_logged",
  "warm_large_throughput_tuned_auto_logged",
  "warm_large_cpu_per_gib_logged",
  "warm_small_rate",
  "warm_small_rate_tuned",
  "warm_small_rate_tuned_auto",
  "warm_small_cpu_per_gib",
  "warm_small_rate_logged",
  "warm_small_rate_tuned_logged",
  "warm_small_rate_tuned_auto_logged",
  "warm_small_cpu_per_gib_logged",
  "cold_miss_first_byte_overhead",
  "shared_cold_upstream_requests",
  "shared_cold_first_byte",
  "shared_cold_done_after_first",
  "memory_peak_rss",
  "cold_disk_small_p99",
  "cold_disk_small_max",
  "cold_large_throughput",
  "cold_large_cpu_per_gib",
  "startup",
  "startup_deno_task",
  "startup_bundle",
  "pacman_p1_cold",
  "pacman_p1_cold_logged",
  "pacman_p1_warm",
  "pacman_p1_warm_logged",
  "pacman_p5_cold",
  "pacman_p5_cold_logged",
  "pacman_p5_warm",
  "pacman_p5_warm_logged",
];

/** Pids of running processes that the benchmark starts: its origin, nginx with its prefix, flexo with its config. */
async function benchProcesses(): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = (await Deno.readTextFile(`/proc/${entry.name}/cmdline`)).replaceAll("\0", " ");
      if (/bench_origin\.ts|flexo-bench-/.test(cmdline)) pids.push(Number(entry.name));
    } catch {
      // it ended while we looked
    }
  }
  return pids.sort((a, b) => a - b);
}

Deno.test("serveTaskArgs() runs flexo as deno task serve does: its permissions and V8 settings", async () => {
  const args = serveTaskArgs(await Deno.readTextFile(join(REPO_ROOT, "deno.json")), {
    mainPath: "/x/main.ts",
    extra: ["--config", "/x/flexo.toml"],
  });
  assert.equal(args[0], "run");
  assert.deepEqual(args.slice(-3), ["/x/main.ts", "--config", "/x/flexo.toml"]);
  assert.deepEqual(args.filter((a) => a.startsWith("--allow-")).sort(), [...PERMISSIONS].sort());
  assert.deepEqual(args.filter((a) => a.startsWith("--v8-flags")), [V8_FLAGS_ARG]);
});

Deno.test("serveTaskArgs() refuses a serve task it cannot run as is", () => {
  const task = (serve: unknown) => JSON.stringify({ tasks: { serve } });
  const options = { mainPath: "/x/main.ts", extra: [] };
  assert.deepEqual(serveTaskArgs(task("deno run --allow-net main.ts"), options), [
    "run",
    "--allow-net",
    "/x/main.ts",
  ]);
  for (
    const bad of ["deno run main.ts && echo", "FOO=1 deno run main.ts", "deno run -A other.ts", 7, undefined]
  ) {
    assert.throws(() => serveTaskArgs(task(bad), options), /serve task/, String(bad));
  }
});

Deno.test("median() takes the middle value, or the mean of the middle two", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
});

Deno.test({
  name: "nginxConfig() is a caching proxy with one worker that nginx -t accepts" +
    (HAVE_NGINX ? "" : ` (skipped: ${NGINX_BINARY} missing; apt-get install -y nginx-light)`),
  ignore: !HAVE_NGINX,
  async fn() {
    const prefix = await Deno.makeTempDir({ prefix: "flexo-bench-test-" });
    try {
      const config = nginxConfig(prefix, { port: 1, originPort: 2 });
      for (const line of ["worker_processes 1;", "daemon off;", "sendfile on;", "proxy_cache_lock on;"]) {
        assert.ok(config.includes(line), `missing "${line}"`);
      }
      assert.ok(config.includes("proxy_pass http://127.0.0.1:2;"));
      await Deno.writeTextFile(join(prefix, "nginx.conf"), config);
      const test = await run(NGINX_BINARY, [
        "-t",
        "-p",
        prefix,
        "-c",
        join(prefix, "nginx.conf"),
        "-e",
        join(prefix, "error.log"),
      ]);
      assert.ok(test.success, test.output);
    } finally {
      await Deno.remove(prefix, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "nginxConfig() with accessLog writes nginx's default access log below its prefix, and nginx -t accepts it" +
    (HAVE_NGINX ? "" : ` (skipped: ${NGINX_BINARY} missing; apt-get install -y nginx-light)`),
  ignore: !HAVE_NGINX,
  async fn() {
    const prefix = await Deno.makeTempDir({ prefix: "flexo-bench-test-" });
    try {
      assert.ok(nginxConfig(prefix, { port: 1, originPort: 2 }).includes("access_log off;"));
      const config = nginxConfig(prefix, { port: 1, originPort: 2, accessLog: true });
      assert.ok(config.includes(`access_log ${join(prefix, "access.log")} combined;`));
      await Deno.writeTextFile(join(prefix, "nginx.conf"), config);
      const test = await run(NGINX_BINARY, ["-t", "-p", prefix, "-c", join(prefix, "nginx.conf")]);
      assert.ok(test.success, test.output);
    } finally {
      await Deno.remove(prefix, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "nginxConfig() tuned as nginx's users tune it (open_file_cache), with workers auto, is accepted by nginx -t" +
    (HAVE_NGINX ? "" : ` (skipped: ${NGINX_BINARY} missing; apt-get install -y nginx-light)`),
  ignore: !HAVE_NGINX,
  async fn() {
    const prefix = await Deno.makeTempDir({ prefix: "flexo-bench-test-" });
    try {
      assert.ok(!nginxConfig(prefix, { port: 1, originPort: 2 }).includes("open_file_cache"));
      const config = nginxConfig(prefix, { port: 1, originPort: 2, tuned: true, workers: "auto" });
      for (
        const line of ["worker_processes auto;", "open_file_cache max=", "sendfile on;", "tcp_nopush on;"]
      ) {
        assert.ok(config.includes(line), `missing "${line}"`);
      }
      await Deno.writeTextFile(join(prefix, "nginx.conf"), config);
      const test = await run(NGINX_BINARY, ["-t", "-p", prefix, "-c", join(prefix, "nginx.conf")]);
      assert.ok(test.success, test.output);
    } finally {
      await Deno.remove(prefix, { recursive: true });
    }
  },
});

Deno.test("packageSpecs() spreads the pacman rows' packages between 4 and 124 KiB, each size once", () => {
  for (const count of [10, 60]) {
    const specs = packageSpecs(count);
    assert.equal(specs.length, count);
    assert.equal(new Set(specs.map((s) => s.name)).size, count);
    const files = specs.map((s) => s.size! + 1024).sort((a, b) => a - b);
    assert.equal(files[0], 4 * 1024);
    assert.equal(files.at(-1), 124 * 1024);
    assert.equal(new Set(files).size, count);
  }
  assert.throws(() => packageSpecs(1), /at least 2/);
});

Deno.test("parseSettings() measures every group by default, and --quick makes the files smaller and the runs fewer", () => {
  const full = parseSettings([]);
  const quick = parseSettings(["--quick", "--only", "small, pacman", "--runs", "3", "--no-install"]);
  assert.deepEqual(full.only, [...GROUPS]);
  assert.deepEqual([full.quick, full.runs, full.seconds, full.install], [false, 5, 5, true]);
  assert.deepEqual([quick.only, quick.quick, quick.runs, quick.seconds, quick.install], [
    ["small", "pacman"],
    true,
    3,
    1,
    false,
  ]);
  assert.ok(quick.largeBytes < full.largeBytes && quick.pacmanPackages < full.pacmanPackages);
  assert.ok(full.out.endsWith(join("bench", "latest.json")), full.out);
});

Deno.test("parseSettings() refuses an unknown group, a count that is not positive, and an unknown option", () => {
  assert.throws(() => parseSettings(["--only", "large,huge"]), /"huge" is not one of large, small/);
  assert.throws(() => parseSettings(["--runs", "0"]), /--runs 0: expected a positive number/);
  assert.throws(() => parseSettings(["--seconds", "soon"]), /--seconds soon: expected a positive number/);
  assert.throws(() => parseSettings(["--fast"]));
});

Deno.test({
  name: `bench.ts --quick measures every figure for nginx and flexo and writes well-formed JSON${SKIP_NOTE}`,
  ignore: MISSING !== "",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "flexo-bench-test-" });
    try {
      const out = join(dir, "result.json");
      const before = await benchProcesses();
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          join(REPO_ROOT, "scripts", "bench.ts"),
          "--quick",
          "--no-install",
          "--out",
          out,
        ],
        cwd: REPO_ROOT,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(120_000),
      });
      const result = await child.output();
      const stdout = new TextDecoder().decode(result.stdout);
      const stderr = new TextDecoder().decode(result.stderr);
      assert.equal(result.code, 0, `bench.ts failed:\n${stdout}\n${stderr}`);
      assert.match(stdout, /^figure\s+unit\s+direct\s+nginx\s+flexo\s+ratio\s+goal\s+result/m);

      const json = JSON.parse(await Deno.readTextFile(out));
      assert.equal(json.schema, "flexo-bench/1");
      assert.equal(json.settings.quick, true);
      assert.deepEqual(json.figures.map((f: { id: string }) => f.id), FIGURES);
      for (const figure of json.figures) {
        assert.equal(typeof figure.label, "string");
        assert.equal(typeof figure.goal, "string");
        assert.equal(typeof figure.pass, "boolean");
        assert.ok(Number.isFinite(figure.flexo), `${figure.id}: flexo is ${figure.flexo}`);
        assert.ok(
          figure.nginx === null || Number.isFinite(figure.nginx),
          `${figure.id}: nginx is ${figure.nginx}`,
        );
        assert.ok(
          figure.ratio === null || Number.isFinite(figure.ratio),
          `${figure.id}: ratio is ${figure.ratio}`,
        );
      }
      // Rows without a goal ("-") are for reference: they count neither as met nor as missed.
      const withGoal = json.figures.filter((f: { goal: string }) => f.goal !== "-");
      assert.equal(json.passed, withGoal.filter((f: { pass: boolean }) => f.pass).length);
      assert.equal(json.total, withGoal.length);
      const byId = Object.fromEntries(json.figures.map((f: { id: string }) => [f.id, f]));
      assert.ok(byId.warm_large_throughput.flexo > 0 && byId.warm_large_throughput.nginx > 0);
      assert.ok(byId.warm_small_rate.flexo > 0 && byId.warm_small_rate.nginx > 0);
      assert.ok(byId.memory_peak_rss.flexo > 0 && byId.memory_peak_rss.nginx > 0);
      assert.ok(byId.startup.flexo > 0 && byId.startup_deno_task.flexo > 0 && byId.startup_bundle.flexo > 0);
      // CPU seconds were counted for the serving processes of every proxy and run.
      for (
        const id of ["warm_large_cpu_per_gib", "warm_large_cpu_per_gib_logged", "cold_large_cpu_per_gib"]
      ) {
        assert.ok(byId[id].flexo > 0 && byId[id].nginx > 0, id);
      }
      // The large cold download: every source served every byte, and flexo checked them against the database
      // (it rejected the package the database gives a wrong SHA-256 for).
      const coldLarge = json.details.coldLarge;
      for (const source of ["direct", "nginx", "flexo"]) {
        assert.ok(
          coldLarge.runs[source].every((r: { bytes: number }) => r.bytes === coldLarge.bytes),
          source,
        );
      }
      assert.equal(coldLarge.canary.integrityRejectionsAfter, coldLarge.canary.integrityRejectionsBefore + 1);
      // Every shared download reached the origin at least once, and each of the 5 clients got the whole file.
      for (const proxy of ["nginx", "flexo"]) {
        for (const shared of json.details.shared[proxy]) {
          assert.ok(shared.upstreamRequests >= 1);
          assert.equal(shared.clients.length, 5);
          assert.ok(shared.clients.every((c: { bytes: number }) => c.bytes === 4 * 1024 * 1024));
        }
      }
      assert.ok(byId.warm_small_rate_logged.flexo > 0 && byId.warm_small_rate_logged.nginx > 0);
      // Every log was on: each proxy wrote at least a line per request.
      for (const logged of [json.details.smallLogged, json.details.largeLogged]) {
        for (const proxy of ["nginx", "nginx_tuned", "nginx_tuned_auto", "flexo"]) {
          const requests = logged.runs[proxy].reduce(
            (sum: number, r: { requests: number }) => sum + r.requests,
            0,
          );
          assert.ok(logged.logBytes[proxy] >= requests * 40, `${proxy}'s log is too small`);
        }
      }
      // The pacman rows: seconds and the difference from pacman straight from the mirror.
      for (const figure of json.figures.filter((f: { id: string }) => f.id.startsWith("pacman_"))) {
        assert.ok(figure.direct > 0 && figure.nginx > 0 && figure.flexo > 0, figure.id);
        assert.equal(figure.overDirect.flexo, figure.flexo - figure.direct);
        assert.equal(figure.overDirect.nginx, figure.nginx - figure.direct);
      }
      // Cold runs went to the mirror for every package, through each proxy; warm runs through a proxy never did.
      const pacman = json.details.pacman;
      assert.equal(pacman.packages.count, 10);
      type Phases = Record<"cold" | "warm", Record<string, { upstreamPackageRequests: number }[]>>;
      for (const phases of Object.values<Phases>(pacman.parallel)) {
        for (const source of ["direct", "nginx", "flexo", "nginx_logged", "flexo_logged"]) {
          assert.equal(phases.cold[source].length, 1);
          assert.equal(phases.cold[source][0].upstreamPackageRequests, 10, `${source}, cold`);
          assert.equal(
            phases.warm[source][0].upstreamPackageRequests,
            source === "direct" ? 10 : 0,
            `${source}, warm`,
          );
        }
      }
      assert.ok(pacman.logBytes.nginx_logged > 0 && pacman.logBytes.flexo_logged > 0);
      // Every process the benchmark started is gone (one running before may have ended meanwhile: another
      // test's `nginx -t` under its flexo-bench- prefix).
      assert.deepEqual((await benchProcesses()).filter((pid) => !before.includes(pid)), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
