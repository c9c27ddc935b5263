/**
 * Problems in a configuration and how loading reports them: every bad value with its key, source and expected
 * form, all problems at once, keys in the wrong table, unknown keys with suggestions, keys without effect yet.
 */

import assert from "node:assert/strict";
import { assertLoadError, load } from "../helpers/load_config.ts";
import type { LoadConfigOptions } from "../../src/config/config.ts";

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
    ["shutdown_drain_secs = 9", ["shutdown_drain_secs = 9", "from 0 to 8"]],
    ["max_connections = 0", ["max_connections = 0", "at least 1"]],
    ['node_name = "a b"', ["node_name", '"a b"', "letters, digits"]],
    ['cache_peers = ["peer:7878"]', ["cache_peers[0]", '"peer:7878"', "http:// or https://"]],
    ['[prefetch]\ninterval = "0s"', ["prefetch.interval", '"0s"', "at least 1 second"]],
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

  const autoBoth = await load("timeout = 1\n[mirrors_auto]\ntimeout = 400");
  assert.equal(autoBoth.config.mirrors_auto.timeout, 400, "the value inside [mirrors_auto] wins");
  assert.match(autoBoth.warnings.join("\n"), /the value inside \[mirrors_auto\] is used/);

  const misplacedBad = await assertLoadError('[mirrors_auto]\nmax_speed_limit = "x"', [
    "max_speed_limit",
    "inside [mirrors_auto]",
  ]);
  assert.equal(misplacedBad.problems.length, 1);
});

Deno.test("loadConfig() reads settings appended below [prefetch], the shipped file's last table, where they belong", async () => {
  // Appending a line to conf/flexo.toml puts it inside [prefetch]; it must not be dropped as an unknown key.
  const shipped = await Deno.readTextFile(new URL("../../conf/flexo.toml", import.meta.url));
  const appended = await load(`${shipped}\nmax_cache_size = "10 GiB"\nlisten_ip_address = "0.0.0.0"\n`);
  assert.equal(appended.config.max_cache_size, 10 * 1024 ** 3);
  assert.deepEqual(appended.config.listen_ip_address, ["127.0.0.1"], "the correctly placed one wins");
  assert.deepEqual(appended.warnings, [
    "/test/flexo.toml: max_cache_size is a top-level key but appears inside [prefetch]; it is used as a " +
    "top-level setting. Move it above the [prefetch] line.",
    "/test/flexo.toml: listen_ip_address appears both at the top level and inside [prefetch]; the top-level " +
    "value is used. Remove the one inside [prefetch].",
  ]);

  const auto = await load('[prefetch]\nenabled = true\nallowed_countries = ["DE"]');
  assert.deepEqual(auto.config.mirrors_auto.allowed_countries, ["DE"]);
  assert.equal(auto.config.prefetch.enabled, true);
  assert.deepEqual(auto.warnings, [
    "/test/flexo.toml: allowed_countries belongs to the [mirrors_auto] table but appears inside [prefetch]; " +
    "it is used as mirrors_auto.allowed_countries. Move it below the [mirrors_auto] line.",
  ]);
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

Deno.test("loadConfig() hides the password of a URL in its problems, which are logged", async () => {
  const error = await assertLoadError(
    '[[custom_repo]]\nname = "x"\nurl = "ftp://me:s3cret@repo.example/"',
    [
      "custom_repo[0].url[0]",
      '"ftp://me:***@repo.example/"',
      "mirrors_predefined[0]",
      "htp://u:***@m.example/",
    ],
    { env: { FLEXO_MIRRORS_PREDEFINED: "htp://u:pw2@m.example/" } },
  );
  assert.equal(error.problems.length, 2, error.message);
  assert.ok(!error.message.includes("s3cret") && !error.message.includes("pw2"), error.message);
  assert.ok(!error.problems.join("\n").includes("s3cret"), error.problems.join("\n"));
});

Deno.test("loadConfig() refuses a URL with a space in it, such as two URLs in one string", async () => {
  // new URL() takes "https://a.example/ https://b.example/" as one URL with %20 in its path: every download
  // from that "mirror" would fail.
  const twoInOne = "https://a.example/ https://b.example/";
  const cases: [string, LoadConfigOptions, string][] = [
    ["", { env: { FLEXO_MIRRORS_PREDEFINED: twoInOne } }, "mirrors_predefined[0]"],
    [`mirrors_predefined = ["${twoInOne}"]`, {}, "mirrors_predefined[0]"],
    [`cache_peers = ["${twoInOne}"]`, {}, "cache_peers[0]"],
    [`[[custom_repo]]\nname = "x"\nurl = "${twoInOne}"`, {}, "custom_repo[0].url[0]"],
    [`[mirrors_auto]\nmirrors_status_json_endpoint = "${twoInOne}"`, {}, "mirrors_status_json_endpoint"],
  ];
  for (const [toml, options, key] of cases) {
    const error = await assertLoadError(toml, [key, "without spaces", "separated by commas"], options);
    assert.equal(error.problems.length, 1, error.message);
  }
});

Deno.test("loadConfig() refuses a mirror URL whose password has a % that starts no escape, and says how to write it", async () => {
  // flexo decodes the user name and password for the mirror's Authorization header: "%zz" failed every request
  // to that mirror with "URI malformed".
  const bad = "https://me:50%zz@mirror.example/archlinux/";
  const cases: [string, string][] = [
    [`mirrors_predefined = ["${bad}"]`, "mirrors_predefined[0]"],
    [`cache_peers = ["${bad}"]`, "cache_peers[0]"],
    [`[[custom_repo]]\nname = "x"\nurl = "${bad}"`, "custom_repo[0].url[0]"],
  ];
  for (const [toml, key] of cases) {
    const error = await assertLoadError(toml, [key, "%25"], {});
    assert.equal(error.problems.length, 1, error.message);
    assert.ok(!error.message.includes("50%zz"), `the password stays hidden: ${error.message}`);
  }
  // An escaped % is a password like any other.
  const { config } = await load(`mirrors_predefined = ["https://me:50%25@m.example/"]`);
  assert.deepEqual(config.mirrors_predefined, ["https://me:50%25@m.example/"]);
});
