/**
 * The shipped systemd files: the unit has the hardening and restart behaviour the documentation promises, and
 * systemd's own tools accept the unit, the sysusers and the tmpfiles snippets (when they are installed).
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";

const CONF = new URL("../../conf/", import.meta.url);
const UNIT_TEXT = await Deno.readTextFile(new URL("flexo.service", CONF));

/** Reads a unit file into section → key → values (a key may repeat). Continuation lines are joined. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, " ").split("\n");
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = line.match(/^\[([A-Za-z]+)\]$/);
    if (section) {
      current = new Map();
      sections.set(section[1], current);
      continue;
    }
    const entry = line.match(/^([A-Za-z][A-Za-z0-9]*)=(.*)$/);
    assert(entry, `line ${i + 1} is not "Key=value": ${raw}`);
    assert(current, `line ${i + 1} comes before any [Section]`);
    current.set(entry[1], [...(current.get(entry[1]) ?? []), entry[2].trim()]);
  }
  return sections;
}

function has(command: string): boolean {
  try {
    return new Deno.Command(command, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

const HAS_ANALYZE = has("systemd-analyze");
const HAS_SYSUSERS = has("systemd-sysusers") && has("systemd-tmpfiles");
const IS_ROOT = Deno.uid() === 0;
if (!HAS_ANALYZE) console.log("skipped: systemd-analyze verify: systemd-analyze is not installed");
if (!HAS_SYSUSERS || !IS_ROOT) {
  console.log("skipped: sysusers/tmpfiles check: needs systemd-sysusers, systemd-tmpfiles and root");
}

Deno.test("flexo.service has its own user, its directories, hardening and restart rules", () => {
  const unit = parseUnit(UNIT_TEXT);
  const service = unit.get("Service")!;
  assert(service, "no [Service] section");
  const one = (key: string) => {
    const values = service.get(key);
    assert(values && values.length === 1, `${key}= should be set exactly once, found ${values?.length ?? 0}`);
    return values[0];
  };
  assertEquals(one("ExecStart"), "/usr/bin/flexo");
  const dynamic = service.get("DynamicUser")?.[0] === "yes";
  assert(dynamic || one("User") === "flexo", "runs as its own user (User=flexo or DynamicUser=yes)");
  assertEquals(one("CacheDirectory"), "flexo");
  assertEquals(one("StateDirectory"), "flexo");
  assertEquals(one("ProtectSystem"), "strict");
  assertEquals(one("ProtectHome"), "yes");
  assertEquals(one("NoNewPrivileges"), "yes");
  assertEquals(one("PrivateTmp"), "yes");
  assertEquals(one("RestrictAddressFamilies").split(/\s+/).sort(), ["AF_INET", "AF_INET6", "AF_UNIX"]);
  assertEquals(one("Restart"), "on-failure");
  assertEquals(one("RestartPreventExitStatus"), "78", "exit status 78 (invalid configuration) must not loop");
  assertEquals(one("CapabilityBoundingSet"), "", "no capabilities: the default port needs none");
  assert(!service.has("MemoryDenyWriteExecute"), "the JavaScript engine needs writable executable memory");
  assertEquals(service.get("SystemCallFilter"), ["@system-service @pkey mincore", "~@privileged @resources"]);
  assertEquals(one("SystemCallErrorNumber"), "EPERM", "a refused call fails instead of killing flexo");
  assertEquals(one("ProcSubset"), "pid");
  assertEquals(one("UMask"), "0027");
  // The stop timeout must leave room for the 10 s grace period of a graceful shutdown.
  const stop = one("TimeoutStopSec").match(/^(\d+)s?$/);
  assert(
    stop && Number(stop[1]) > 10,
    `TimeoutStopSec=${one("TimeoutStopSec")} should exceed the grace period`,
  );
  assertEquals(unit.get("Install")?.get("WantedBy"), ["multi-user.target"]);
  assert(unit.get("Unit")?.get("After")?.[0].includes("network-online.target"));
});

Deno.test("parseUnit() refuses lines that are not settings (so the directive check can fail)", () => {
  assert(parseUnit("[Service]\nUser=flexo\n").get("Service")?.get("User")?.[0] === "flexo");
  for (const bad of ["User=flexo\n", "[Service]\nProtectSystem strict\n"]) {
    let failed = false;
    try {
      parseUnit(bad);
    } catch {
      failed = true;
    }
    assert(failed, `should refuse ${JSON.stringify(bad)}`);
  }
});

Deno.test({
  name:
    "systemd-analyze verify accepts flexo.service without a warning, with an exposure level of at most 1.5",
  ignore: !HAS_ANALYZE,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "flexo-unit-" });
    try {
      // verify checks that ExecStart exists; /usr/bin/flexo is not installed here, so point it at a stand-in.
      const stub = join(dir, "flexo");
      await Deno.writeTextFile(stub, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
      const unitPath = join(dir, "flexo.service");
      await Deno.writeTextFile(unitPath, UNIT_TEXT.replace("ExecStart=/usr/bin/flexo", `ExecStart=${stub}`));
      const verify = await new Deno.Command("systemd-analyze", {
        args: ["verify", unitPath],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const messages = new TextDecoder().decode(verify.stderr) + new TextDecoder().decode(verify.stdout);
      // Only warnings about this unit count: a machine's other units may be broken in their own ways.
      const ours = messages.split("\n").filter((line) => line.includes("flexo"));
      assert(verify.success, `systemd-analyze verify failed:\n${messages}`);
      assertEquals(ours, [], `systemd-analyze verify warned:\n${messages}`);

      const security = await new Deno.Command("systemd-analyze", {
        args: ["security", "--offline=yes", unitPath],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const report = new TextDecoder().decode(security.stdout);
      const level = report.match(/Overall exposure level for flexo\.service: ([\d.]+)/);
      if (!level) {
        const reason = "skipped: systemd-analyze security --offline is not supported by this systemd";
        console.log(reason);
        await t.step({ name: reason, ignore: true, fn: () => {} });
        return;
      }
      // 3.0 before SystemCallFilter=, ProcSubset=, UMask=0027 and private mounts and users (docs/operations.md).
      assert(Number(level[1]) <= 1.5, `exposure level ${level[1]} should be at most 1.5:\n${report}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "flexo.sysusers creates the flexo user and flexo.tmpfiles its directories (in a scratch root)",
  ignore: !HAS_SYSUSERS || !IS_ROOT,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "flexo-root-" });
    try {
      await Deno.mkdir(join(root, "etc"));
      const run = async (command: string, args: string[]) => {
        const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
        const text = new TextDecoder().decode(out.stderr);
        assert(out.success, `${command} ${args.join(" ")} failed:\n${text}`);
        assert(!/ignoring|unknown|invalid/i.test(text), `${command} complained:\n${text}`);
      };
      await run("systemd-sysusers", [`--root=${root}`, new URL("flexo.sysusers", CONF).pathname]);
      const passwd = await Deno.readTextFile(join(root, "etc/passwd"));
      const user = passwd.split("\n").find((line) => line.startsWith("flexo:"))?.split(":");
      assert(user, `no flexo user in:\n${passwd}`);
      assertEquals(user[5], "/var/lib/flexo");
      await run("systemd-tmpfiles", [`--root=${root}`, "--create", new URL("flexo.tmpfiles", CONF).pathname]);
      for (const dir of ["var/cache/flexo/pkg", "var/cache/flexo/state", "var/lib/flexo"]) {
        const info = await Deno.stat(join(root, dir));
        assert(info.isDirectory, dir);
        assertEquals(info.uid, Number(user[2]), `${dir} should belong to flexo`);
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
