/** Loading the configuration: defaults, the file, its keys and shorthands, the layers over it, and printing it. */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type Config,
  ConfigError,
  defaultConfig,
  formatConfig,
  loadConfig,
} from "../../src/config/config.ts";
import { assertLoadError, load, notFound } from "../helpers/load_config.ts";
import { limitsFrom } from "../../src/app/app.ts";

Deno.test("defaultConfig() has flexo's defaults and returns a fresh plain object each time", () => {
  const config = defaultConfig();
  assert.equal(config.cache_directory, "/var/cache/flexo/pkg");
  assert.equal(config.mirrorlist_fallback_file, "/var/cache/flexo/state/mirrorlist");
  assert.equal(
    config.mirrorlist_latency_test_results_file,
    "/var/cache/flexo/state/latency_test_results.json",
  );
  assert.equal(config.port, 7878);
  assert.deepEqual(config.listen_ip_address, ["127.0.0.1"]);
  assert.equal(config.mirror_selection_method, "auto");
  assert.deepEqual(config.mirrors_predefined, []);
  assert.equal(config.connect_timeout, 3000);
  assert.equal(config.low_speed_limit, 1);
  assert.equal(config.low_speed_time_secs, 5);
  assert.equal(config.low_speed_limit_formatted, undefined);
  assert.equal(config.client_timeout_secs, 60);
  assert.equal(config.sendfile, true);
  assert.equal(config.max_speed_limit, undefined);
  assert.equal(config.num_versions_retain, 3);
  assert.equal(config.refresh_latency_tests_after, "8 days");
  assert.deepEqual(config.custom_repo, []);
  assert.equal(config.max_cache_size, undefined);
  assert.deepEqual(config.allowed_clients, []);
  assert.equal(config.log_level, "info");
  assert.deepEqual(config.mirrors_auto, {
    mirrors_status_json_endpoint: "https://archlinux.org/mirrors/status/json/",
    mirrors_status_json_endpoint_fallbacks: [
      "https://raw.githubusercontent.com/nroi/archlinux-mirrors-status-fallback/main/mirrorlist.json",
    ],
    mirrors_blacklist: [],
    https_required: true,
    ipv4: true,
    ipv6: false,
    max_score: 2.5,
    num_mirrors: 8,
    mirrors_random_or_sort: "sort",
    timeout: 350,
    allowed_countries: [],
    min_completion_pct: 1.0,
    max_delay_secs: 3600,
  });
  config.mirrors_auto.allowed_countries.push("DE");
  config.listen_ip_address.push("::");
  assert.deepEqual(defaultConfig().mirrors_auto.allowed_countries, [], "defaults are not shared");
  assert.deepEqual(defaultConfig().listen_ip_address, ["127.0.0.1"]);
  assert.deepEqual(structuredClone(defaultConfig()), defaultConfig());
});

Deno.test("loadConfig() of conf/flexo.toml yields exactly defaultConfig() without warnings", async () => {
  const path = new URL("../../conf/flexo.toml", import.meta.url).pathname;
  const { config, warnings, sources } = await loadConfig({ configPath: path, configPathExplicit: true });
  assert.deepEqual(warnings, []);
  assert.deepEqual(config, defaultConfig());
  assert.deepEqual(sources, ["built-in defaults", `configuration file ${path}`]);
});

Deno.test("conf/flexo.toml documents every key, including the optional ones", async () => {
  const text = await Deno.readTextFile(new URL("../../conf/flexo.toml", import.meta.url));
  const keys = [
    ...Object.keys(defaultConfig()),
    ...Object.keys(defaultConfig().mirrors_auto),
    ...Object.keys(defaultConfig().prefetch),
  ].filter((key) => key !== "mirrors_auto" && key !== "prefetch" && key !== "custom_repo");
  for (const key of [...keys, "low_speed_limit_formatted", "max_speed_limit", "max_cache_size"]) {
    assert.match(text, new RegExp(`^#? ?${key} = `, "m"), key);
  }
  assert.match(text, /^# \[\[custom_repo\]\]$/m);
  assert.match(text, /^\[mirrors_auto\]$/m);
  assert.match(text, /^\[prefetch\]$/m);
});

Deno.test("loadConfig() uses the defaults when the default file is missing, and notes it", async () => {
  let readPath = "";
  const { config, warnings, sources } = await loadConfig({
    readTextFile: (path) => {
      readPath = path;
      return notFound();
    },
  });
  assert.equal(readPath, "/etc/flexo/flexo.toml");
  assert.deepEqual(config, defaultConfig());
  assert.deepEqual(warnings, []);
  assert.match(sources.join("\n"), /no configuration file at \/etc\/flexo\/flexo\.toml/);
});

Deno.test("loadConfig() fails when an explicitly given file is missing or unreadable", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const missing = join(dir, "nope.toml");
    await assert.rejects(
      loadConfig({ configPath: missing, configPathExplicit: true }),
      (error: unknown) => error instanceof ConfigError && error.message.includes(missing),
    );
    // The same path, not given explicitly, is fine.
    assert.deepEqual((await loadConfig({ configPath: missing })).config, defaultConfig());
    // A directory cannot be read as a file.
    await assert.rejects(
      loadConfig({ configPath: dir, configPathExplicit: true }),
      (error: unknown) =>
        error instanceof ConfigError && error.message.includes(`Cannot read the configuration file ${dir}`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfig() reports TOML syntax errors with line and column", async () => {
  const error = await assertLoadError('port = 7878\nlisten_ip_address = "::\n', [
    "/test/flexo.toml",
    "line 2",
    "column",
  ]);
  assert.equal(error.problems.length, 1);
  await assertLoadError("port = 7878\n[mirrors_auto\n", ["line 2"]);
});

Deno.test("loadConfig() reads every key from the file and normalises shorthands", async () => {
  const { config, warnings, sources } = await load(`
cache_directory = "/srv/flexo/pkg"
mirrorlist_fallback_file = "/srv/flexo/state/mirrorlist"
mirrorlist_latency_test_results_file = "/srv/flexo/state/latency.json"
refresh_latency_tests_after = "1h 30min"
listen_ip_address = ["0.0.0.0", "::"]
port = 8080
mirror_selection_method = "predefined"
mirrors_predefined = ["https://mirror.example.org/archlinux", "http://other.example/"]
connect_timeout = 1000
low_speed_limit_formatted = "500 KiB/s"
low_speed_time_secs = 10
client_timeout_secs = 30
sendfile = false
max_speed_limit = 102400
num_versions_retain = 0
max_cache_size = "50 GiB"
allowed_clients = ["192.168.0.0/16", "10.1.2.3", "fd00::/8", "::1"]
log_level = "WARN"

[[custom_repo]]
name = "archzfs"
url = "https://archzfs.com"

[[custom_repo]]
name = "arm_v7+extra"
url = ["https://a.example/arm", "https://b.example/arm"]

[mirrors_auto]
mirrors_status_json_endpoint = "https://status.example/json/"
mirrors_status_json_endpoint_fallbacks = []
mirrors_blacklist = ["https://slow.example/"]
https_required = false
ipv4 = false
ipv6 = true
max_score = 4
num_mirrors = 3
mirrors_random_or_sort = "random"
timeout = 500
allowed_countries = ["de", "AT"]
min_completion_pct = 0.95
max_delay_secs = 7200
`);
  assert.deepEqual(warnings, []);
  assert.deepEqual(sources, ["built-in defaults", "configuration file /test/flexo.toml"]);
  const expected: Config = {
    cache_directory: "/srv/flexo/pkg",
    mirrorlist_fallback_file: "/srv/flexo/state/mirrorlist",
    mirrorlist_latency_test_results_file: "/srv/flexo/state/latency.json",
    port: 8080,
    listen_ip_address: ["0.0.0.0", "::"],
    mirror_selection_method: "predefined",
    mirrors_predefined: ["https://mirror.example.org/archlinux/", "http://other.example/"],
    connect_timeout: 1000,
    low_speed_limit: 512_000,
    low_speed_limit_formatted: "500 KiB/s",
    low_speed_time_secs: 10,
    client_timeout_secs: 30,
    offline: false,
    sendfile: false,
    max_speed_limit: 102400,
    num_versions_retain: 0,
    refresh_latency_tests_after: "1h 30min",
    custom_repo: [
      { name: "archzfs", urls: ["https://archzfs.com"] },
      { name: "arm_v7+extra", urls: ["https://a.example/arm", "https://b.example/arm"] },
    ],
    mirrors_auto: {
      mirrors_status_json_endpoint: "https://status.example/json/",
      mirrors_status_json_endpoint_fallbacks: [],
      mirrors_blacklist: ["https://slow.example/"],
      https_required: false,
      ipv4: false,
      ipv6: true,
      max_score: 4,
      num_mirrors: 3,
      mirrors_random_or_sort: "random",
      timeout: 500,
      allowed_countries: ["DE", "AT"],
      min_completion_pct: 0.95,
      max_delay_secs: 7200,
    },
    prefetch: {
      enabled: false,
      interval: "6h",
      unaccessed_days: 30,
      max_bytes_per_run: 5 * 1024 ** 3,
      max_parallel: 1,
    },
    max_cache_size: 50 * 1024 ** 3,
    allowed_clients: ["192.168.0.0/16", "10.1.2.3/32", "fd00::/8", "::1/128"],
    cache_peers: [],
    trusted_proxies: [],
    shutdown_drain_secs: 3,
    log_level: "warning",
  };
  assert.deepEqual(config, expected);
  assert.deepEqual(structuredClone(config), expected);
});

Deno.test("loadConfig() accepts single IPv6 and IPv4 listen addresses", async () => {
  assert.deepEqual((await load('listen_ip_address = "::"')).config.listen_ip_address, ["::"]);
  assert.deepEqual((await load('listen_ip_address = "::1"')).config.listen_ip_address, ["::1"]);
  assert.deepEqual((await load('listen_ip_address = "0.0.0.0"')).config.listen_ip_address, ["0.0.0.0"]);
  await assertLoadError('listen_ip_address = ["::", "256.1.1.1"]', [
    "listen_ip_address[1]",
    '"256.1.1.1"',
    "IPv4 or IPv6",
  ]);
  await assertLoadError("listen_ip_address = []", ["listen_ip_address = []", "non-empty list"]);
});

Deno.test("loadConfig() accepts the listen addresses the Rust flexo binds: localhost and a bracketed IPv6 address", async () => {
  // The Rust flexo binds format!("{}:{}", listen_ip_address, port), so these start it; they must start this one.
  const listen = async (toml: string) => (await load(toml)).config.listen_ip_address;
  assert.deepEqual(await listen('listen_ip_address = "localhost"'), ["127.0.0.1"]);
  assert.deepEqual(await listen('listen_ip_address = "[::]"'), ["::"]);
  assert.deepEqual(await listen('listen_ip_address = ["[::1]", "LocalHost"]'), ["::1", "127.0.0.1"]);
  assert.deepEqual((await load("", { env: { FLEXO_LISTEN_IP_ADDRESS: "[::]" } })).config.listen_ip_address, [
    "::",
  ]);
  await assertLoadError('listen_ip_address = "[0.0.0.0]"', ["listen_ip_address[0]", "IPv4 or IPv6"]);
  await assertLoadError('listen_ip_address = "flexo.lan"', ["listen_ip_address[0]", "IPv4 or IPv6"]);
});

Deno.test("loadConfig() layers defaults < file < environment < command line", async () => {
  const toml = `
port = 1000
cache_directory = "/file/pkg"
connect_timeout = 1234
[mirrors_auto]
timeout = 500
num_mirrors = 2
`;
  const fileOnly = await load(toml);
  assert.equal(fileOnly.config.port, 1000);
  const withEnv = await load(toml, { env: { FLEXO_PORT: "2000", FLEXO_MIRRORS_AUTO_NUM_MIRRORS: "4" } });
  assert.equal(withEnv.config.port, 2000);
  assert.equal(withEnv.config.connect_timeout, 1234, "keys the environment does not set stay");
  assert.equal(withEnv.config.mirrors_auto.timeout, 500, "[mirrors_auto] merges key by key");
  assert.equal(withEnv.config.mirrors_auto.num_mirrors, 4);
  assert.equal(withEnv.config.mirrors_auto.max_score, 2.5);
  const all = await load(toml, {
    env: { FLEXO_PORT: "2000", FLEXO_CACHE_DIRECTORY: "/env/pkg", FLEXO_LOG: "debug" },
    overrides: { port: 3000, cacheDir: "/cli/pkg", listen: ["::"], logLevel: "warn" },
  });
  assert.equal(all.config.port, 3000);
  assert.equal(all.config.cache_directory, "/cli/pkg");
  assert.deepEqual(all.config.listen_ip_address, ["::"]);
  assert.equal(all.config.log_level, "warning");
  assert.deepEqual(all.sources, [
    "built-in defaults",
    "configuration file /test/flexo.toml",
    "environment variables FLEXO_CACHE_DIRECTORY, FLEXO_LOG, FLEXO_PORT",
    "command-line options --port, --listen, --cache-dir, --log-level",
  ]);
  const envOverFile = await load('custom_repo = [{ name = "a", url = "https://a.example" }]', {
    env: { FLEXO_CUSTOM_REPO: "b@https://b.example" },
  });
  assert.deepEqual(envOverFile.config.custom_repo, [{ name: "b", urls: ["https://b.example"] }]);
});

Deno.test("loadConfig() lets low_speed_limit_formatted win in one layer but not over a later layer", async () => {
  const same = await load('low_speed_limit = 100\nlow_speed_limit_formatted = "1 KiB/s"');
  assert.equal(same.config.low_speed_limit, 1024);
  assert.equal(same.warnings.length, 1);
  assert.match(same.warnings[0], /low_speed_limit_formatted .* takes precedence over low_speed_limit/);
  const later = await load('low_speed_limit_formatted = "1 KiB/s"', {
    env: { FLEXO_LOW_SPEED_LIMIT: "100" },
  });
  assert.equal(later.config.low_speed_limit, 100);
  assert.equal(later.config.low_speed_limit_formatted, undefined);
  const formattedLater = await load("low_speed_limit = 100", {
    env: { FLEXO_LOW_SPEED_LIMIT_FORMATTED: "8 KBit/s" },
  });
  assert.equal(formattedLater.config.low_speed_limit, 1000);
});

Deno.test("loadConfig() names the command-line option when an override is invalid", async () => {
  await assertLoadError("", ["port = 70000", "command-line option --port", "0 to 65535"], {
    overrides: { port: 70000 },
  });
  await assertLoadError("", ["log_level", '"chatty"', "command-line option --log-level"], {
    overrides: { logLevel: "chatty" },
  });
  await assertLoadError("", ["listen_ip_address[0]", '"flexo.lan"', "command-line option --listen"], {
    overrides: { listen: ["flexo.lan"] },
  });
});

Deno.test("formatConfig() prints TOML that loads back to the same configuration", async () => {
  const { config } = await load(`
port = 9000
listen_ip_address = ["0.0.0.0", "::"]
low_speed_limit_formatted = "2 MBit/s"
max_cache_size = "2 GiB"
[[custom_repo]]
name = "one"
url = "https://one.example"
[[custom_repo]]
name = "two"
url = ["https://a.example", "https://b.example"]
[mirrors_auto]
allowed_countries = ["DE"]
`);
  const text = formatConfig(config);
  assert.match(text, /^\[\[custom_repo\]\]$/m);
  assert.match(text, /^name = "one"\nurl = "https:\/\/one\.example"$/m);
  assert.match(text, /^url = \[ "https:\/\/a\.example", "https:\/\/b\.example" \]$/m);
  assert.match(text, /^# low_speed_limit_formatted = "2 MBit\/s" is 250000 bytes per second\.$/m);
  assert.match(text, /^\[mirrors_auto\]$/m);
  const reloaded = await load(text);
  assert.deepEqual(reloaded.warnings, []);
  assert.deepEqual(reloaded.config, config);
  const defaults = await load(formatConfig(defaultConfig()));
  assert.deepEqual(defaults.config, defaultConfig());
  assert.deepEqual(defaults.warnings, []);
});

Deno.test("loadConfig() makes relative paths absolute from the working directory, with a warning", async () => {
  // The service runs in /var/lib/flexo, flexo clean or import in the shell's directory: a relative cache_directory
  // was a different folder for each, and check-config did not say which.
  const { config, warnings } = await load(
    'cache_directory = "cache/pkg"\nmirrorlist_fallback_file = "./ml"',
    {
      cwd: "/srv/work",
      env: { FLEXO_MIRRORLIST_LATENCY_TEST_RESULTS_FILE: "state/latency.json" },
    },
  );
  assert.equal(config.cache_directory, "/srv/work/cache/pkg");
  assert.equal(config.mirrorlist_fallback_file, "/srv/work/ml");
  assert.equal(config.mirrorlist_latency_test_results_file, "/srv/work/state/latency.json");
  assert.equal(warnings.length, 3, warnings.join("\n"));
  assert.equal(
    warnings[0],
    'cache_directory = "cache/pkg" (file /test/flexo.toml) is a relative path, read from the directory flexo ' +
      "started in as /srv/work/cache/pkg; a command started in another directory (flexo clean, flexo import) " +
      "would use another one. Give an absolute path.",
  );
  assert.match(warnings[2], /environment variable FLEXO_MIRRORLIST_LATENCY_TEST_RESULTS_FILE/);
  const absolute = await load('cache_directory = "/srv/pkg"', { cwd: "/elsewhere" });
  assert.equal(absolute.config.cache_directory, "/srv/pkg");
  assert.deepEqual(absolute.warnings, []);
});

Deno.test("loadConfig() accepts 0 for low_speed_limit and max_speed_limit, as the Rust flexo does", async () => {
  // The Rust flexo hands both to curl, where 0 turns the check off and means no cap; a flexo.toml or FLEXO_*
  // variable with 0 started it and stopped this one with exit 78.
  const file = await load("low_speed_limit = 0\nmax_speed_limit = 0");
  assert.equal(file.config.low_speed_limit, 0);
  assert.equal(file.config.max_speed_limit, undefined, "0 is no cap");
  assert.deepEqual(file.warnings, []);
  const env = await load("", { env: { FLEXO_LOW_SPEED_LIMIT: "0", FLEXO_MAX_SPEED_LIMIT: "0" } });
  assert.equal(env.config.low_speed_limit, 0);
  assert.equal(env.config.max_speed_limit, undefined);
  assert.equal(limitsFrom(env.config).lowSpeedLimit, 0);
  assert.equal(limitsFrom(env.config).maxSpeedLimit, undefined);
});
