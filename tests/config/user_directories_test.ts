import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError, defaultConfig } from "../../src/config/config.ts";
import {
  canWriteDirectory,
  canWriteDirectoryWithoutChanges,
  resolveUserDirectories,
} from "../../src/config/user_directories.ts";

Deno.test("resolveUserDirectories() moves unwritable default directories to XDG_CACHE_HOME or HOME", async () => {
  const asked: string[] = [];
  const isWritable = (dir: string) => {
    asked.push(dir);
    return Promise.resolve(!dir.startsWith("/var/cache/flexo"));
  };
  const config = defaultConfig();
  const xdg = await resolveUserDirectories(config, {
    env: { XDG_CACHE_HOME: "/home/u/.xdg", HOME: "/home/u" },
    isWritable,
  });
  assert.equal(xdg.config.cache_directory, "/home/u/.xdg/flexo/pkg");
  assert.equal(xdg.config.mirrorlist_fallback_file, "/home/u/.xdg/flexo/state/mirrorlist");
  assert.equal(
    xdg.config.mirrorlist_latency_test_results_file,
    "/home/u/.xdg/flexo/state/latency_test_results.json",
  );
  assert.equal(xdg.warnings.length, 1);
  assert.match(xdg.warnings[0], /\/var\/cache\/flexo is not writable.*\/home\/u\/\.xdg\/flexo/);
  assert.deepEqual(asked.sort(), ["/var/cache/flexo/pkg", "/var/cache/flexo/state"]);
  assert.deepEqual(config, defaultConfig(), "the input is not modified");

  const home = await resolveUserDirectories(config, {
    env: { HOME: "/home/u", XDG_CACHE_HOME: "" },
    isWritable,
  });
  assert.equal(home.config.cache_directory, "/home/u/.cache/flexo/pkg");
  assert.equal(home.config.mirrorlist_fallback_file, "/home/u/.cache/flexo/state/mirrorlist");
});

Deno.test("resolveUserDirectories() keeps writable defaults and never moves configured paths", async () => {
  const writable = await resolveUserDirectories(defaultConfig(), {
    env: { HOME: "/home/u" },
    isWritable: () => Promise.resolve(true),
  });
  assert.deepEqual(writable, { config: defaultConfig(), warnings: [] });

  const configured = { ...defaultConfig(), cache_directory: "/srv/pkg" };
  const asked: string[] = [];
  const partly = await resolveUserDirectories(configured, {
    env: { HOME: "/home/u" },
    isWritable: (dir) => {
      asked.push(dir);
      return Promise.resolve(false);
    },
  });
  assert.equal(partly.config.cache_directory, "/srv/pkg");
  assert.equal(partly.config.mirrorlist_fallback_file, "/home/u/.cache/flexo/state/mirrorlist");
  assert.deepEqual(asked, ["/var/cache/flexo/state"]);
  assert.doesNotMatch(partly.warnings[0], /cache_directory/);

  const allConfigured = {
    ...defaultConfig(),
    cache_directory: "/srv/pkg",
    mirrorlist_fallback_file: "/srv/state/m",
    mirrorlist_latency_test_results_file: "/srv/state/l.json",
  };
  const untouched = await resolveUserDirectories(allConfigured, {
    env: {},
    isWritable: () => Promise.reject(new Error("must not be asked")),
  });
  assert.deepEqual(untouched, { config: allConfigured, warnings: [] });
});

Deno.test("resolveUserDirectories() fails clearly without XDG_CACHE_HOME and HOME", async () => {
  await assert.rejects(
    resolveUserDirectories(defaultConfig(), { env: {}, isWritable: () => Promise.resolve(false) }),
    (error: unknown) =>
      error instanceof ConfigError && /neither XDG_CACHE_HOME nor HOME is set/.test(error.message) &&
      error.message.includes("cache_directory"),
  );
});

Deno.test("canWriteDirectory() creates writable directories and rejects impossible ones", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const nested = join(dir, "a", "b");
    assert.equal(await canWriteDirectory(nested), true);
    assert.equal((await Deno.stat(nested)).isDirectory, true);
    assert.deepEqual([...Deno.readDirSync(nested)], [], "the probe file is removed");
    const file = join(dir, "file");
    await Deno.writeTextFile(file, "");
    assert.equal(await canWriteDirectory(join(file, "sub")), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("canWriteDirectoryWithoutChanges() asks about the nearest existing folder and makes nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const asked: string[] = [];
    const canWrite = (path: string) => {
      asked.push(path);
      return path === dir;
    };
    assert.equal(await canWriteDirectoryWithoutChanges(join(dir, "a", "b"), canWrite), true);
    assert.deepEqual(asked, [dir], "a missing folder is answered for where mkdir -p would start");
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing is made");
    await Deno.mkdir(join(dir, "ro"));
    assert.equal(await canWriteDirectoryWithoutChanges(join(dir, "ro"), canWrite), false);
    const file = join(dir, "file");
    await Deno.writeTextFile(file, "");
    assert.equal(
      await canWriteDirectoryWithoutChanges(join(file, "sub"), () => true),
      false,
      "a file in the way",
    );
    assert.equal(await canWriteDirectoryWithoutChanges(dir), true, "without access(2): the folder's mode");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
