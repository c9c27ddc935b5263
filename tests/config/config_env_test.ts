import assert from "node:assert/strict";
import { ConfigError, loadConfig, type LoadConfigResult } from "../../src/config/config.ts";
import { configLayerFromEnv, envVarName, formatProblem } from "../../src/config/config_env.ts";

/** Loads with no configuration file and the given environment. */
function loadEnv(env: Record<string, string>): Promise<LoadConfigResult> {
  return loadConfig({
    env,
    readTextFile: () => Promise.reject(new Deno.errors.NotFound("no file in this test")),
  });
}

/** Asserts that loading `env` fails with a ConfigError whose message contains every string in `parts`. */
async function assertEnvError(env: Record<string, string>, parts: string[]): Promise<ConfigError> {
  const error = await loadEnv(env).then(
    () => assert.fail(`expected a ConfigError for ${JSON.stringify(env)}`),
    (error: unknown) => error,
  );
  assert.ok(error instanceof ConfigError, String(error));
  for (const part of parts) assert.ok(error.message.includes(part), `${part} not in: ${error.message}`);
  return error;
}

Deno.test("loadConfig() reads numbers and booleans from FLEXO_* variables as TOML values", async () => {
  const { config, warnings } = await loadEnv({
    FLEXO_PORT: "7879",
    FLEXO_CONNECT_TIMEOUT: "5000",
    FLEXO_LOW_SPEED_LIMIT: "1048576",
    FLEXO_LOW_SPEED_TIME_SECS: "1",
    FLEXO_CLIENT_TIMEOUT_SECS: "0",
    FLEXO_SENDFILE: "false",
    FLEXO_NUM_VERSIONS_RETAIN: "0",
    FLEXO_MIRRORS_AUTO_HTTPS_REQUIRED: "false",
    FLEXO_MIRRORS_AUTO_IPV6: "true",
    FLEXO_MIRRORS_AUTO_MAX_SCORE: "3.5",
    FLEXO_MIRRORS_AUTO_NUM_MIRRORS: "4",
    FLEXO_MIRRORS_AUTO_TIMEOUT: "500",
    FLEXO_MIRRORS_AUTO_MIN_COMPLETION_PCT: "0.9",
    FLEXO_MIRRORS_AUTO_MAX_DELAY_SECS: "600",
  });
  assert.deepEqual(warnings, []);
  assert.equal(config.port, 7879);
  assert.equal(config.connect_timeout, 5000);
  assert.equal(config.low_speed_limit, 1048576);
  assert.equal(config.low_speed_time_secs, 1);
  assert.equal(config.client_timeout_secs, 0);
  assert.equal(config.sendfile, false);
  assert.equal(config.num_versions_retain, 0);
  assert.equal(config.mirrors_auto.https_required, false);
  assert.equal(config.mirrors_auto.ipv6, true);
  assert.equal(config.mirrors_auto.max_score, 3.5);
  assert.equal(config.mirrors_auto.num_mirrors, 4);
  assert.equal(config.mirrors_auto.timeout, 500);
  assert.equal(config.mirrors_auto.min_completion_pct, 0.9);
  assert.equal(config.mirrors_auto.max_delay_secs, 600);
});

Deno.test("loadConfig() takes string variables as they are", async () => {
  const { config } = await loadEnv({
    FLEXO_CACHE_DIRECTORY: "/tmp/var/cache/flexo/pkg",
    FLEXO_MIRRORLIST_FALLBACK_FILE: "/tmp/state/mirrorlist",
    FLEXO_MIRRORLIST_LATENCY_TEST_RESULTS_FILE: "/tmp/state/latency.json",
    FLEXO_MIRROR_SELECTION_METHOD: "predefined",
    FLEXO_MIRRORS_PREDEFINED: "['http://mirror-fast-mock']",
    FLEXO_REFRESH_LATENCY_TESTS_AFTER: "2 days",
    FLEXO_LOW_SPEED_LIMIT_FORMATTED: "2 MBit/s",
    FLEXO_MIRRORS_AUTO_MIRRORS_STATUS_JSON_ENDPOINT: "file:///root/mirrors.json",
    FLEXO_MIRRORS_AUTO_MIRRORS_RANDOM_OR_SORT: "random",
  });
  assert.equal(config.cache_directory, "/tmp/var/cache/flexo/pkg");
  assert.equal(config.mirrorlist_fallback_file, "/tmp/state/mirrorlist");
  assert.equal(config.mirrorlist_latency_test_results_file, "/tmp/state/latency.json");
  assert.equal(config.mirror_selection_method, "predefined");
  assert.deepEqual(config.mirrors_predefined, ["http://mirror-fast-mock/"]);
  assert.equal(config.refresh_latency_tests_after, "2 days");
  assert.equal(config.low_speed_limit_formatted, "2 MBit/s");
  assert.equal(config.low_speed_limit, 250_000);
  assert.equal(config.mirrors_auto.mirrors_status_json_endpoint, "file:///root/mirrors.json");
  assert.equal(config.mirrors_auto.mirrors_random_or_sort, "random");
});

Deno.test("loadConfig() reads the words of mirror_selection_method and mirrors_random_or_sort as log_level's", async () => {
  // An env file keeps a trailing blank (docker --env-file); log_level, paths and URLs were trimmed, these not.
  const { config, warnings } = await loadEnv({
    FLEXO_MIRROR_SELECTION_METHOD: "Predefined ",
    FLEXO_MIRRORS_PREDEFINED: "https://a.example/",
    FLEXO_MIRRORS_AUTO_MIRRORS_RANDOM_OR_SORT: " RANDOM",
  });
  assert.equal(config.mirror_selection_method, "predefined");
  assert.equal(config.mirrors_auto.mirrors_random_or_sort, "random");
  assert.deepEqual(warnings, []);
});

Deno.test("loadConfig() reads a string variable written with quotes as the text inside them, with a warning", async () => {
  // docker run --env-file and a compose list entry (- FLEXO_CACHE_DIRECTORY="/srv/pkg") keep the quotes: taken
  // as they are, the cache went to a folder named '"' below the working directory, and the cache seemed empty.
  const { config, warnings } = await loadEnv({
    FLEXO_CACHE_DIRECTORY: '"/srv/flexo/pkg"',
    FLEXO_MIRRORLIST_FALLBACK_FILE: "'/srv/flexo/state/mirrorlist'",
    FLEXO_MIRROR_SELECTION_METHOD: ' "auto" ',
  });
  assert.equal(config.cache_directory, "/srv/flexo/pkg");
  assert.equal(config.mirrorlist_fallback_file, "/srv/flexo/state/mirrorlist");
  assert.equal(config.mirror_selection_method, "auto");
  assert.equal(warnings.length, 3, warnings.join("\n"));
  assert.match(warnings[0], /^FLEXO_CACHE_DIRECTORY is written with quotes \("\/srv\/flexo\/pkg"\)/);
  assert.match(warnings[0], /leave them out/);
  // A quote inside the text is part of it.
  const inner = await loadEnv({ FLEXO_CACHE_DIRECTORY: '/srv/"x"' });
  assert.equal(inner.config.cache_directory, '/srv/"x"');
  assert.deepEqual(inner.warnings, []);
});

Deno.test("loadConfig() reads list variables as TOML arrays or comma-separated values", async () => {
  const { config } = await loadEnv({
    FLEXO_MIRRORS_PREDEFINED: "['http://a/', 'https://b.example/arch']",
    FLEXO_MIRRORS_AUTO_ALLOWED_COUNTRIES: "DE,AT, ch",
    FLEXO_MIRRORS_AUTO_MIRRORS_STATUS_JSON_ENDPOINT_FALLBACKS:
      "https://a.example/json,https://b.example/json",
    FLEXO_MIRRORS_AUTO_MIRRORS_BLACKLIST: "['https://slow.example/']",
    FLEXO_ALLOWED_CLIENTS: "192.168.0.0/16,fd00::/8",
  });
  assert.deepEqual(config.mirrors_predefined, ["http://a/", "https://b.example/arch/"]);
  assert.deepEqual(config.mirrors_auto.allowed_countries, ["DE", "AT", "CH"]);
  assert.deepEqual(config.mirrors_auto.mirrors_status_json_endpoint_fallbacks, [
    "https://a.example/json",
    "https://b.example/json",
  ]);
  assert.deepEqual(config.mirrors_auto.mirrors_blacklist, ["https://slow.example/"]);
  assert.deepEqual(config.allowed_clients, ["192.168.0.0/16", "fd00::/8"]);

  const commaList = await loadEnv({ FLEXO_MIRRORS_PREDEFINED: "http://a,http://b/" });
  assert.deepEqual(commaList.config.mirrors_predefined, ["http://a/", "http://b/"]);
  const emptyList = await loadEnv({ FLEXO_MIRRORS_AUTO_ALLOWED_COUNTRIES: "" });
  assert.deepEqual(emptyList.config.mirrors_auto.allowed_countries, []);
  assert.deepEqual(emptyList.warnings, []);
});

Deno.test("loadConfig() reads FLEXO_LISTEN_IP_ADDRESS as one address, a comma list or a TOML array", async () => {
  assert.deepEqual((await loadEnv({ FLEXO_LISTEN_IP_ADDRESS: "0.0.0.0" })).config.listen_ip_address, [
    "0.0.0.0",
  ]);
  assert.deepEqual((await loadEnv({ FLEXO_LISTEN_IP_ADDRESS: "::" })).config.listen_ip_address, ["::"]);
  assert.deepEqual(
    (await loadEnv({ FLEXO_LISTEN_IP_ADDRESS: "0.0.0.0,::" })).config.listen_ip_address,
    ["0.0.0.0", "::"],
  );
  assert.deepEqual(
    (await loadEnv({ FLEXO_LISTEN_IP_ADDRESS: "['127.0.0.1', '::1']" })).config.listen_ip_address,
    ["127.0.0.1", "::1"],
  );
});

Deno.test("loadConfig() reads FLEXO_CUSTOM_REPO as space-separated name@url entries", async () => {
  const { config } = await loadEnv({
    FLEXO_CUSTOM_REPO:
      "eschwartz@https://pkgbuild.com  archzfs@https://archzfs.com arm@https://a.example,https://b.example",
  });
  assert.deepEqual(config.custom_repo, [
    { name: "eschwartz", urls: ["https://pkgbuild.com"] },
    { name: "archzfs", urls: ["https://archzfs.com"] },
    { name: "arm", urls: ["https://a.example", "https://b.example"] },
  ]);
  assert.deepEqual((await loadEnv({ FLEXO_CUSTOM_REPO: "" })).config.custom_repo, []);
});

Deno.test("loadConfig() reports a FLEXO_CUSTOM_REPO entry without name@url", async () => {
  const error = await assertEnvError(
    { FLEXO_CUSTOM_REPO: "archzfs@https://archzfs.com justaname @https://x.example" },
    ["custom_repo", '"justaname"', '"@https://x.example"', "FLEXO_CUSTOM_REPO", "name@url"],
  );
  assert.equal(error.problems.length, 2);
});

Deno.test("loadConfig() says that RUST_LOG has no effect and names FLEXO_LOG_LEVEL, unless that is set", async () => {
  const rust = await loadEnv({ RUST_LOG: "debug" });
  assert.equal(rust.config.log_level, "info");
  assert.equal(rust.warnings.length, 1);
  assert.match(rust.warnings[0], /RUST_LOG \("debug"\) .* no effect .*FLEXO_LOG_LEVEL/);
  assert.deepEqual((await loadEnv({ RUST_LOG: "debug", FLEXO_LOG_LEVEL: "debug" })).warnings, []);
});

Deno.test("loadConfig() reads FLEXO_LOG and FLEXO_LOG_LEVEL as log_level", async () => {
  assert.equal((await loadEnv({ FLEXO_LOG: "debug" })).config.log_level, "debug");
  assert.equal((await loadEnv({ FLEXO_LOG_LEVEL: "warn" })).config.log_level, "warning");
  const both = await loadEnv({ FLEXO_LOG: "error", FLEXO_LOG_LEVEL: "trace" });
  assert.equal(both.config.log_level, "error");
  assert.equal(both.warnings.length, 1);
  assert.match(both.warnings[0], /FLEXO_LOG_LEVEL/);
  await assertEnvError({ FLEXO_LOG: "loud" }, ["log_level", '"loud"', "FLEXO_LOG", '"warning"']);
});

Deno.test("loadConfig() accepts bandwidths and sizes as text in the environment", async () => {
  const { config } = await loadEnv({ FLEXO_MAX_SPEED_LIMIT: "10 MBit/s", FLEXO_MAX_CACHE_SIZE: "50 GiB" });
  assert.equal(config.max_speed_limit, 1_250_000);
  assert.equal(config.max_cache_size, 50 * 1024 ** 3);
  const plain = await loadEnv({ FLEXO_MAX_SPEED_LIMIT: "102400", FLEXO_MAX_CACHE_SIZE: "1000" });
  assert.equal(plain.config.max_speed_limit, 102400);
  assert.equal(plain.config.max_cache_size, 1000);
});

Deno.test("loadConfig() moves misplaced FLEXO_* variables to the right table with a warning", async () => {
  const { config, warnings } = await loadEnv({
    FLEXO_MIRRORS_BLACKLIST: "[]",
    FLEXO_MIRRORS_AUTO_REFRESH_LATENCY_TESTS_AFTER: "3 days",
    FLEXO_MIRRORS_AUTO_MAX_SPEED_LIMIT: "102400",
    FLEXO_TIMEOUT: "900",
    FLEXO_MIRRORS_AUTO_TIMEOUT: "400",
    // Sorted by name, the misplaced one comes first here: the rule, not the order of names, must decide.
    FLEXO_MIRRORS_AUTO_PORT: "1",
    FLEXO_PORT: "7879",
  });
  assert.deepEqual(config.mirrors_auto.mirrors_blacklist, []);
  assert.equal(config.refresh_latency_tests_after, "3 days");
  assert.equal(config.max_speed_limit, 102400);
  assert.equal(config.mirrors_auto.timeout, 400, "the correctly named variable wins");
  assert.equal(config.port, 7879, "the correctly named variable wins, also when the other sorts first");
  const text = warnings.join("\n");
  assert.match(text, /FLEXO_MIRRORS_BLACKLIST: .*FLEXO_MIRRORS_AUTO_MIRRORS_BLACKLIST/);
  assert.match(text, /FLEXO_MIRRORS_AUTO_REFRESH_LATENCY_TESTS_AFTER: .*FLEXO_REFRESH_LATENCY_TESTS_AFTER/);
  assert.match(text, /FLEXO_MIRRORS_AUTO_MAX_SPEED_LIMIT/);
  assert.match(text, /FLEXO_TIMEOUT is ignored because environment variable FLEXO_MIRRORS_AUTO_TIMEOUT/);
  assert.match(text, /FLEXO_MIRRORS_AUTO_PORT is ignored because environment variable FLEXO_PORT/);
});

Deno.test("loadConfig() warns about unknown and empty FLEXO_* variables and ignores other variables", async () => {
  const { config, warnings } = await loadEnv({
    FLEXO_PROT: "1",
    FLEXO_MIRRORS_AUTO_FOO: "x",
    FLEXO_PORT: "",
    HOME: "/home/someone",
    PORT: "1234",
  });
  assert.equal(config.port, 7878);
  assert.equal(warnings.length, 3);
  assert.match(
    warnings.join("\n"),
    /Unknown environment variable FLEXO_PROT is ignored\. Did you mean FLEXO_PORT\?/,
  );
  assert.match(warnings.join("\n"), /Unknown environment variable FLEXO_MIRRORS_AUTO_FOO/);
  assert.match(warnings.join("\n"), /FLEXO_PORT is empty/);
});

Deno.test("loadConfig() accepts the environment of flexo's own Docker tests", async () => {
  const { config, warnings } = await loadEnv({
    FLEXO_CACHE_DIRECTORY: "/tmp/var/cache/flexo/pkg",
    FLEXO_PORT: "7878",
    FLEXO_MIRRORLIST_LATENCY_TEST_RESULTS_FILE: "/tmp/var/cache/flexo/state/latency_test_results.json",
    FLEXO_MIRRORLIST_FALLBACK_FILE: "/tmp/var/cache/flexo/state/mirrorlist",
    FLEXO_LISTEN_IP_ADDRESS: "0.0.0.0",
    FLEXO_CONNECT_TIMEOUT: "3000",
    FLEXO_MIRROR_SELECTION_METHOD: "predefined",
    FLEXO_MIRRORS_PREDEFINED: "['http://mirror-stalling-mock', 'http://mirror-fast-mock']",
    FLEXO_LOW_SPEED_TIME_SECS: "1",
    FLEXO_LOW_SPEED_LIMIT: "1048576",
    FLEXO_MIRRORS_BLACKLIST: "[]",
  });
  assert.deepEqual(config.mirrors_predefined, ["http://mirror-stalling-mock/", "http://mirror-fast-mock/"]);
  assert.deepEqual(config.listen_ip_address, ["0.0.0.0"]);
  assert.equal(warnings.length, 1, "only the misplaced FLEXO_MIRRORS_BLACKLIST");
});

Deno.test("loadConfig() names the variable, the value and the expected form for bad FLEXO_* values", async () => {
  await assertEnvError({ FLEXO_PORT: "abc" }, [
    "port",
    '"abc"',
    "environment variable FLEXO_PORT",
    "0 to 65535",
  ]);
  await assertEnvError({ FLEXO_PORT: "70000" }, ["port = 70000", "FLEXO_PORT", "0 to 65535"]);
  await assertEnvError(
    { FLEXO_MIRRORS_PREDEFINED: "['http://a/'" },
    ["mirrors_predefined", "\"['http://a/'\"", "FLEXO_MIRRORS_PREDEFINED", "TOML array"],
  );
  await assertEnvError(
    { FLEXO_MIRRORS_AUTO_IPV4: "yes" },
    ["mirrors_auto.ipv4", '"yes"', "FLEXO_MIRRORS_AUTO_IPV4", "true or false"],
  );
  await assertEnvError(
    { FLEXO_MIRRORS_AUTO_ALLOWED_COUNTRIES: "DE,Germany" },
    ["mirrors_auto.allowed_countries[1]", '"Germany"', "FLEXO_MIRRORS_AUTO_ALLOWED_COUNTRIES", "two-letter"],
  );
  const error = await assertEnvError(
    { FLEXO_PORT: "x", FLEXO_LISTEN_IP_ADDRESS: "127.0.0.256", FLEXO_LOW_SPEED_LIMIT_FORMATTED: "fast" },
    ["FLEXO_PORT", "FLEXO_LISTEN_IP_ADDRESS", "FLEXO_LOW_SPEED_LIMIT_FORMATTED"],
  );
  assert.equal(error.problems.length, 3, "every problem is reported");
});

Deno.test("configLayerFromEnv() records where each key came from", () => {
  const layer = configLayerFromEnv({ FLEXO_PORT: "1", FLEXO_MIRRORS_AUTO_IPV6: "true", OTHER: "x" });
  assert.deepEqual(layer.values, { port: 1, mirrors_auto: { ipv6: true } });
  assert.deepEqual(layer.origins, {
    "port": "environment variable FLEXO_PORT",
    "mirrors_auto.ipv6": "environment variable FLEXO_MIRRORS_AUTO_IPV6",
  });
  assert.equal(layer.label, "environment variables FLEXO_MIRRORS_AUTO_IPV6, FLEXO_PORT");
  assert.deepEqual(configLayerFromEnv({}).label, "");
});

Deno.test("envVarName() follows flexo's naming", () => {
  assert.equal(envVarName("port"), "FLEXO_PORT");
  assert.equal(envVarName("mirrors_auto.allowed_countries"), "FLEXO_MIRRORS_AUTO_ALLOWED_COUNTRIES");
  assert.equal(envVarName("log_level"), "FLEXO_LOG");
});

Deno.test("formatProblem() names key, value, origin and expected form", () => {
  assert.equal(
    formatProblem("port", "x", { origin: "file /f.toml", expected: "a number" }),
    'port = "x" (file /f.toml): expected a number',
  );
  assert.equal(
    formatProblem("custom_repo[0].url", undefined, { origin: "file /f.toml", expected: "a URL" }),
    "custom_repo[0].url is missing (file /f.toml): expected a URL",
  );
});

Deno.test("loadConfig() reads the [prefetch] table from FLEXO_PREFETCH_<KEY> variables", async () => {
  const { config, warnings, sources } = await loadEnv({
    FLEXO_PREFETCH_ENABLED: "true",
    FLEXO_PREFETCH_INTERVAL: "3s",
    FLEXO_PREFETCH_UNACCESSED_DAYS: "7",
    FLEXO_PREFETCH_MAX_BYTES_PER_RUN: "2 MiB",
    FLEXO_PREFETCH_MAX_PARALLEL: "2",
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(config.prefetch, {
    enabled: true,
    interval: "3s",
    unaccessed_days: 7,
    max_bytes_per_run: 2 * 1024 * 1024,
    max_parallel: 2,
  });
  assert.match(sources.join(" "), /FLEXO_PREFETCH_INTERVAL/);
  assert.equal(envVarName("prefetch.max_parallel"), "FLEXO_PREFETCH_MAX_PARALLEL");
});

Deno.test("loadConfig() names FLEXO_<SECTION>_<KEY> for unknown and misplaced table variables", async () => {
  const unknown = await loadEnv({ FLEXO_PREFETCH_INTERVALL: "1h" });
  assert.equal(unknown.warnings.length, 1);
  assert.match(unknown.warnings[0], /Did you mean FLEXO_PREFETCH_INTERVAL\?/);
  assert.match(unknown.warnings[0], /FLEXO_<SECTION>_<KEY>/);
  const misplaced = await loadEnv({ FLEXO_UNACCESSED_DAYS: "3" });
  assert.equal(misplaced.config.prefetch.unaccessed_days, 3);
  assert.match(misplaced.warnings[0], /belongs to \[prefetch\]; read as FLEXO_PREFETCH_UNACCESSED_DAYS/);
  await assertEnvError({ FLEXO_PREFETCH_INTERVAL: "soon" }, ["prefetch.interval", "FLEXO_PREFETCH_INTERVAL"]);
});
