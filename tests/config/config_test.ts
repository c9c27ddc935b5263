import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type Config,
  ConfigError,
  defaultConfig,
  formatConfig,
  loadConfig,
  type LoadConfigOptions,
  type LoadConfigResult,
} from "../../src/config/config.ts";

/** Loads `toml` as the configuration file, with further options. */
function load(toml: string, options: LoadConfigOptions = {}): Promise<LoadConfigResult> {
  return loadConfig({
    configPath: "/test/flexo.toml",
    readTextFile: () => Promise.resolve(toml),
    ...options,
  });
}

/** Asserts that loading fails with a ConfigError mentioning every string in `parts`. */
async function assertLoadError(
  toml: string,
  parts: string[],
  options: LoadConfigOptions = {},
): Promise<ConfigError> {
  const error = await load(toml, options).then(
    () => assert.fail(`expected a ConfigError for:\n${toml}`),
    (error: unknown) => error,
  );
  assert.ok(error instanceof ConfigError, String(error));
  for (const part of parts) assert.ok(error.message.includes(part), `${part} not in: ${error.message}`);
  return error;
}

const notFound = () => Promise.reject(new Deno.errors.NotFound("missing"));

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
  await assertLoadError("", ["listen_ip_address[0]", '"localhost"', "command-line option --listen"], {
    overrides: { listen: ["localhost"] },
  });
});

Deno.test("loadConfig() names key, value, source and expected form for every bad file value", async () => {
  const cases: [string, string[]][] = [
    ['port = "7878"', ["port", '"7878"', "file /test/flexo.toml", "whole number from 0 to 65535"]],
    ["port = 1.5", ["port = 1.5", "whole number"]],
    ['cache_directory = ""', ["cache_directory", '""', "non-empty file system path"]],
    ["mirrorlist_fallback_file = 3", ["mirrorlist_fallback_file = 3", "path"]],
    ['mirror_selection_method = "fastest"', [
      "mirror_selection_method",
      '"fastest"',
      '"auto" or "predefined"',
    ]],
    ['mirrors_predefined = ["ftp://x/"]', ["mirrors_predefined[0]", '"ftp://x/"', "http:// or https://"]],
    ['mirrors_predefined = ["mirror.example"]', ["mirrors_predefined[0]", '"mirror.example"', "mirror URL"]],
    ['mirror_selection_method = "predefined"', ["mirrors_predefined", "at least one mirror URL"]],
    ["connect_timeout = 0", ["connect_timeout = 0", "milliseconds"]],
    ["low_speed_limit = -5", ["low_speed_limit = -5", "bytes per second"]],
    ['low_speed_limit_formatted = "2 MBit"', ["low_speed_limit_formatted", '"2 MBit"', '"500 KiB/s"']],
    ['low_speed_limit_formatted = "1 Bit/s"', ["low_speed_limit_formatted", "at least 1 byte per second"]],
    ['low_speed_time_secs = "5s"', ["low_speed_time_secs", '"5s"', "seconds"]],
    ["client_timeout_secs = -1", ["client_timeout_secs = -1", "0 turns the timeout off"]],
    ["client_timeout_secs = 1.5", ["client_timeout_secs = 1.5", "whole number of seconds"]],
    ['sendfile = "yes"', ['sendfile = "yes"', "true or false"]],
    ['max_speed_limit = "fast"', ["max_speed_limit", '"fast"', "bytes per second"]],
    ["num_versions_retain = -1", ["num_versions_retain = -1", "0 keeps every version"]],
    ['refresh_latency_tests_after = "8 dayz"', ["refresh_latency_tests_after", '"8 dayz"', '"8 days"']],
    ['max_cache_size = "lots"', ["max_cache_size", '"lots"', '"50 GiB"']],
    ["max_cache_size = 0", ["max_cache_size = 0", "at least 1 byte"]],
    ['allowed_clients = ["10.0.0.0/33"]', ["allowed_clients[0]", '"10.0.0.0/33"', "CIDR"]],
    ['allowed_clients = ["everyone"]', ["allowed_clients[0]", '"everyone"', "CIDR"]],
    ['log_level = "loud"', ["log_level", '"loud"', '"warning" (or "warn")']],
    ["mirrors_auto = 5", ["mirrors_auto = 5", "[mirrors_auto]"]],
    ['[mirrors_auto]\nhttps_required = "yes"', ["mirrors_auto.https_required", '"yes"', "true or false"]],
    ["[mirrors_auto]\nmax_score = -1", ["mirrors_auto.max_score = -1", "0 or more"]],
    ["[mirrors_auto]\nnum_mirrors = 0", ["mirrors_auto.num_mirrors = 0", "at least 1"]],
    ['[mirrors_auto]\nmirrors_random_or_sort = "best"', [
      "mirrors_random_or_sort",
      '"best"',
      '"sort" or "random"',
    ]],
    ["[mirrors_auto]\ntimeout = 0", ["mirrors_auto.timeout = 0", "milliseconds"]],
    ['[mirrors_auto]\nallowed_countries = ["DEU"]', ["allowed_countries[0]", '"DEU"', "two-letter"]],
    ["[mirrors_auto]\nmin_completion_pct = 95", ["min_completion_pct = 95", "from 0 to 1"]],
    ["[mirrors_auto]\nmax_delay_secs = -1", ["max_delay_secs = -1", "seconds"]],
    ['[mirrors_auto]\nmirrors_status_json_endpoint = "json"', [
      "mirrors_status_json_endpoint",
      '"json"',
      "file://",
    ]],
    ['[mirrors_auto]\nmirrors_status_json_endpoint_fallbacks = ["x"]', ["fallbacks[0]", '"x"', "URL"]],
    ['[mirrors_auto]\nmirrors_blacklist = [""]', ["mirrors_blacklist[0]", '""', "mirror URLs"]],
    ['[[custom_repo]]\nname = "my repo"\nurl = "https://x.example"', [
      "custom_repo[0].name",
      '"my repo"',
      "letters",
    ]],
    ['[[custom_repo]]\nname = "-x"\nurl = "https://x.example"', [
      "custom_repo[0].name",
      '"-x"',
      "starts with",
    ]],
    ['[[custom_repo]]\nname = "x"', ["custom_repo[0].url is missing", "http:// or https://"]],
    ['[[custom_repo]]\nname = "x"\nurl = "ftp://x"', ["custom_repo[0].url[0]", '"ftp://x"', "https://"]],
    ['[[custom_repo]]\nname = "x"\nurl = []', ["custom_repo[0].url = []", "non-empty list"]],
    ['custom_repo = ["x"]', ["custom_repo[0]", '"x"', "[[custom_repo]] table"]],
    [
      '[[custom_repo]]\nname = "x"\nurl = "https://a"\n[[custom_repo]]\nname = "x"\nurl = "https://b"',
      ["custom_repo[1].name", '"x"', "not used by another"],
    ],
  ];
  for (const [toml, parts] of cases) {
    const error = await assertLoadError(toml, parts);
    assert.equal(error.problems.length, 1, `${toml}: ${error.message}`);
  }
});

Deno.test("loadConfig() collects every problem instead of stopping at the first", async () => {
  const error = await assertLoadError(
    'port = -1\nlog_level = "x"\nmirror_selection_method = "predefined"\n[mirrors_auto]\nipv4 = 1',
    ["port", "log_level", "mirrors_predefined", "mirrors_auto.ipv4"],
    { env: { FLEXO_CONNECT_TIMEOUT: "soon" } },
  );
  assert.equal(error.problems.length, 5);
  assert.match(error.message, /^Invalid configuration \(5 problems\):\n {2}- /);
  assert.match(error.message, /connect_timeout = "soon" \(environment variable FLEXO_CONNECT_TIMEOUT\)/);
});

Deno.test("loadConfig() moves keys placed in the wrong table, with a warning", async () => {
  // flexo's own sample places these two inside [mirrors_auto].
  const { config, warnings } = await load(`
mirrors_blacklist = ["https://slow.example/"]
[mirrors_auto]
max_speed_limit = 102400
refresh_latency_tests_after = "2 days"
timeout = 400
`);
  assert.equal(config.max_speed_limit, 102400);
  assert.equal(config.refresh_latency_tests_after, "2 days");
  assert.deepEqual(config.mirrors_auto.mirrors_blacklist, ["https://slow.example/"]);
  assert.equal(config.mirrors_auto.timeout, 400);
  assert.equal(warnings.length, 3);
  assert.match(warnings[0], /max_speed_limit is a top-level key but appears inside \[mirrors_auto\]/);
  assert.match(warnings[1], /refresh_latency_tests_after is a top-level key/);
  assert.match(warnings[2], /mirrors_blacklist belongs to the \[mirrors_auto\] table/);

  const both = await load(
    'refresh_latency_tests_after = "1 day"\n[mirrors_auto]\nrefresh_latency_tests_after = "9 days"',
  );
  assert.equal(both.config.refresh_latency_tests_after, "1 day");
  assert.match(
    both.warnings.join("\n"),
    /both at the top level and inside \[mirrors_auto\]; the top-level value/,
  );

  const misplacedBad = await assertLoadError('[mirrors_auto]\nmax_speed_limit = "x"', [
    "max_speed_limit",
    "inside [mirrors_auto]",
  ]);
  assert.equal(misplacedBad.problems.length, 1);
});

Deno.test("loadConfig() warns about unknown keys and suggests close matches", async () => {
  const { config, warnings } = await load(`
prot = 1
[mirrors_auto]
num_mirror = 3
colour = "blue"
[[custom_repo]]
name = "x"
url = "https://x.example"
urll = "https://y.example"
`);
  assert.equal(config.port, 7878);
  assert.equal(config.mirrors_auto.num_mirrors, 8);
  assert.deepEqual(config.custom_repo, [{ name: "x", urls: ["https://x.example"] }]);
  assert.deepEqual(warnings, [
    "/test/flexo.toml: unknown key prot is ignored. Did you mean port?",
    "/test/flexo.toml: unknown key mirrors_auto.num_mirror is ignored. Did you mean num_mirrors?",
    "/test/flexo.toml: unknown key mirrors_auto.colour is ignored.",
    "/test/flexo.toml: unknown key custom_repo[0].urll is ignored. Did you mean url?",
  ]);
  const single = await load('[custom_repo]\nname = "x"\nurl = "https://x.example"');
  assert.deepEqual(single.config.custom_repo, [{ name: "x", urls: ["https://x.example"] }]);
  assert.match(single.warnings.join("\n"), /use \[\[custom_repo\]\]/);
});

Deno.test("loadConfig() warns that inactive keys have no effect yet when they change something", async () => {
  const inactiveKeys = ["max_cache_size", "mirrors_auto.min_completion_pct", "allowed_clients"];
  const set = await load('max_cache_size = "1 GiB"\n[mirrors_auto]\nmin_completion_pct = 0.5', {
    inactiveKeys,
  });
  assert.deepEqual(set.warnings, [
    "max_cache_size is accepted but has no effect yet (set in file /test/flexo.toml).",
    "mirrors_auto.min_completion_pct is accepted but has no effect yet (set in file /test/flexo.toml).",
  ]);
  const env = await load("", { inactiveKeys, env: { FLEXO_ALLOWED_CLIENTS: "10.0.0.0/8" } });
  assert.deepEqual(env.warnings, [
    "allowed_clients is accepted but has no effect yet (set in environment variable FLEXO_ALLOWED_CLIENTS).",
  ]);
  const defaults = await load("allowed_clients = []\n[mirrors_auto]\nmin_completion_pct = 1.0", {
    inactiveKeys,
  });
  assert.deepEqual(defaults.warnings, [], "repeating a default changes nothing");
  assert.deepEqual((await load("", { inactiveKeys })).warnings, []);
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
