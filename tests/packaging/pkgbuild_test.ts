/**
 * scripts/PKGBUILD with the real makepkg: the package it makes from a stand-in executable, and its metadata
 * (`makepkg --repackage` runs package() without build(), whose `deno compile` needs dl.deno.land).
 * Skips with a message when makepkg, fakeroot or bsdtar is missing.
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
      // A copy of what the PKGBUILD reads from its checkout, so makepkg's src/ and pkg/ stay out of the tree.
      for (const path of ["deno.json", "README.md", "scripts/PKGBUILD", "docs", "conf"]) {
        await Deno.mkdir(join(dir, path, ".."), { recursive: true });
        const copied = await new Deno.Command("cp", { args: ["-r", join(ROOT, path), join(dir, path)] })
          .output();
        assert(copied.success, `cp ${path}`);
      }
      // docs/operations.md may be absent in a checkout that predates it; the PKGBUILD installs it.
      await Deno.writeTextFile(join(dir, "docs/operations.md"), "", { append: true });
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
      const version = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).version;
      for (
        const line of [
          `pkgver = ${version}-1`,
          "backup = etc/flexo/flexo.toml",
          "makedepend = deno",
          "provides = flexo",
          "conflict = flexo",
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
