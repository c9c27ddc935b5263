/**
 * scripts/PKGBUILD with the real makepkg: the package it makes from a stand-in executable, and its metadata
 * (`makepkg --repackage` runs package() without build(), whose `deno compile` needs dl.deno.land);
 * `makepkg --printsrcinfo` as an unprivileged user: the release tarball with its checksum, an SPDX license and
 * a check() that runs the unit tests. Skips with a message when makepkg, fakeroot or bsdtar is missing.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

function has(command: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${command}`], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

const missing = ["makepkg", "fakeroot", "bsdtar", ...(Deno.uid() === 0 ? ["runuser"] : [])].filter((c) =>
  !has(c)
);
if (missing.length > 0) console.log(`skipped: PKGBUILD check: ${missing.join(", ")} not installed`);

/** Runs a command as an unprivileged user (makepkg refuses to run as root). */
async function asUser(args: string[], options: { cwd: string; env: Record<string, string> }) {
  const [command, ...rest] = Deno.uid() === 0
    ? [
      "runuser",
      "-u",
      "nobody",
      "--",
      "env",
      ...Object.entries(options.env).map(([k, v]) => `${k}=${v}`),
      ...args,
    ]
    : args;
  const out = await new Deno.Command(command, {
    args: rest,
    cwd: options.cwd,
    env: options.env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    success: out.success,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test({
  name:
    "PKGBUILD packages the executable, the unit, sysusers, tmpfiles and the configuration as a backup file",
  ignore: missing.length > 0,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "flexo-pkg-" });
    try {
      // What package() reads from the unpacked release tarball (src/flexo-deno-VERSION/), copied there, so that
      // makepkg's src/ and pkg/ stay out of the tree.
      const version = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).version;
      const unpacked = join(dir, "scripts/src", `flexo-deno-${version}`);
      await Deno.mkdir(join(dir, "scripts"), { recursive: true });
      await Deno.copyFile(join(ROOT, "scripts/PKGBUILD"), join(dir, "scripts/PKGBUILD"));
      for (const path of ["README.md", "LICENSE", "docs", "conf"]) {
        await Deno.mkdir(join(unpacked, path, ".."), { recursive: true });
        const copied = await new Deno.Command("cp", { args: ["-r", join(ROOT, path), join(unpacked, path)] })
          .output();
        assert(copied.success, `cp ${path}`);
      }
      const arch = Deno.build.arch;
      const standIn = join(dir, "scripts/src/dist", `flexo-${arch}-unknown-linux-gnu`);
      await Deno.mkdir(join(standIn, ".."), { recursive: true });
      await Deno.writeTextFile(standIn, "#!/bin/sh\necho flexo stand-in\n", { mode: 0o755 });
      // makepkg must own its folders; as root, they are handed to the user it runs as.
      if (Deno.uid() === 0) await new Deno.Command("chown", { args: ["-R", "nobody", dir] }).output();
      const env = { HOME: dir, PKGDEST: dir, PATH: "/usr/bin:/bin:/usr/sbin:/sbin", CARCH: arch };
      const scripts = join(dir, "scripts");

      const made = await asUser(["makepkg", "--repackage", "--nodeps", "--skipinteg"], { cwd: scripts, env });
      assert(made.success, `${made.stdout}\n${made.stderr}`);
      const pkg = [...Deno.readDirSync(dir)].map((e) => e.name).find((n) => /\.pkg\.tar/.test(n));
      assert(pkg, `no package in ${dir}:\n${made.stdout}`);
      const list = await new Deno.Command("bsdtar", { args: ["-tvf", join(dir, pkg)], stdout: "piped" })
        .output();
      const entries = new TextDecoder().decode(list.stdout).split("\n");
      const modeOf = (path: string) => entries.find((e) => e.endsWith(` ${path}`))?.split(/\s+/)[0];
      assertEquals(modeOf("usr/bin/flexo"), "-rwxr-xr-x");
      for (
        const path of [
          "usr/share/licenses/flexo-deno/LICENSE",
          "usr/lib/systemd/system/flexo.service",
          "usr/lib/sysusers.d/flexo.conf",
          "usr/lib/tmpfiles.d/flexo.conf",
          "etc/flexo/flexo.toml",
          "usr/share/doc/flexo/operations.md",
        ]
      ) {
        assertEquals(modeOf(path), "-rw-r--r--", `${path} in the package`);
      }
      const extracted = join(dir, "extracted");
      await Deno.mkdir(extracted);
      const x = await new Deno.Command("bsdtar", { args: ["-xf", join(dir, pkg), "-C", extracted] }).output();
      assert(x.success);
      assertEquals(
        await Deno.readTextFile(join(extracted, "etc/flexo/flexo.toml")),
        await Deno.readTextFile(join(ROOT, "conf/flexo.toml")),
      );
      const pkginfo = await Deno.readTextFile(join(extracted, ".PKGINFO"));
      for (
        const line of [
          `pkgver = ${version}-1`,
          "backup = etc/flexo/flexo.toml",
          "makedepend = deno",
          "provides = flexo",
          "conflict = flexo",
          "license = MIT",
        ]
      ) {
        assert(pkginfo.includes(`\n${line}\n`), `.PKGINFO lacks "${line}":\n${pkginfo}`);
      }
      // A deno compile executable must not be stripped: the program is appended to the runtime.
      assert(/^options=\([^)]*'!strip'/m.test(await Deno.readTextFile(join(ROOT, "scripts/PKGBUILD"))));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "makepkg --printsrcinfo (as an unprivileged user) shows the release tarball, its checksum and the license",
  ignore: missing.length > 0,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "flexo-srcinfo-" });
    try {
      await Deno.copyFile(join(ROOT, "scripts/PKGBUILD"), join(dir, "PKGBUILD"));
      if (Deno.uid() === 0) await new Deno.Command("chown", { args: ["-R", "nobody", dir] }).output();
      const env = { HOME: dir, PATH: "/usr/bin:/bin:/usr/sbin:/sbin" };
      const info = await asUser(["makepkg", "--printsrcinfo"], { cwd: dir, env });
      assert(info.success, `${info.stdout}\n${info.stderr}`);
      const version = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).version;
      const fields = (key: string) =>
        [...info.stdout.matchAll(new RegExp(`^\\t${key} = (.*)$`, "gm"))].map((match) => match[1]);
      assertEquals(fields("pkgver"), [version], "the version of deno.json");
      assertEquals(fields("license"), ["MIT"], "an SPDX identifier (the LICENSE file)");
      assertEquals(fields("source"), [`flexo-deno-${version}.tar.gz`]);
      const sums = fields("sha256sums");
      assertEquals(sums.length, 1);
      assert(/^[0-9a-f]{64}$/.test(sums[0]), `a real SHA-256, not SKIP: ${sums[0]}`);

      // check() runs the unit tests of the unpacked tarball.
      const check = await asUser(["bash", "-c", "source ./PKGBUILD && declare -f check"], { cwd: dir, env });
      assert(check.success, check.stderr);
      assert(/deno test --allow-all --frozen/.test(check.stdout), check.stdout);
      assert(/tests\/\s*$/m.test(check.stdout), `check() runs the tests folder:\n${check.stdout}`);

      // Once the release is tagged, the checksum is the tag's tarball (git archive, as docs/operations.md says).
      const tag = `v${version}`;
      const tagged = await new Deno.Command("git", { args: ["-C", ROOT, "rev-parse", "-q", "--verify", tag] })
        .output();
      if (!tagged.success) {
        const reason = `skipped: the checksum against the release tarball: no tag ${tag} in this checkout`;
        console.log(reason);
        await t.step({ name: reason, ignore: true, fn: () => {} });
        return;
      }
      const tarball = await new Deno.Command("git", {
        args: ["-C", ROOT, "archive", `--prefix=flexo-deno-${version}/`, "--format=tar.gz", tag],
        stdout: "piped",
      }).output();
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", tarball.stdout));
      assertEquals(sums[0], [...digest].map((b) => b.toString(16).padStart(2, "0")).join(""));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
