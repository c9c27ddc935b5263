import assert from "node:assert/strict";
import type { Config, CustomRepo, MirrorsAutoConfig } from "../../src/config/config_schema.ts";

// The schema's inferred types must stay exactly the documented shapes.
interface ExpectedCustomRepo {
  name: string;
  urls: string[];
}
interface ExpectedMirrorsAuto {
  mirrors_status_json_endpoint: string;
  mirrors_status_json_endpoint_fallbacks: string[];
  mirrors_blacklist: string[];
  https_required: boolean;
  ipv4: boolean;
  ipv6: boolean;
  max_score: number;
  num_mirrors: number;
  mirrors_random_or_sort: "sort" | "random";
  timeout: number;
  allowed_countries: string[];
  min_completion_pct: number;
  max_delay_secs: number;
}
interface ExpectedConfig {
  cache_directory: string;
  mirrorlist_fallback_file: string;
  mirrorlist_latency_test_results_file: string;
  port: number;
  listen_ip_address: string[];
  mirror_selection_method: "auto" | "predefined";
  mirrors_predefined: string[];
  connect_timeout: number;
  low_speed_limit: number;
  low_speed_limit_formatted?: string;
  low_speed_time_secs: number;
  client_timeout_secs: number;
  offline: boolean;
  sendfile: boolean;
  max_connections?: number;
  max_speed_limit?: number;
  num_versions_retain: number;
  refresh_latency_tests_after: string;
  custom_repo: ExpectedCustomRepo[];
  mirrors_auto: ExpectedMirrorsAuto;
  prefetch: {
    enabled: boolean;
    interval: string;
    unaccessed_days: number;
    max_bytes_per_run: number;
    max_parallel: number;
  };
  max_cache_size?: number;
  allowed_clients: string[];
  cache_peers: string[];
  trusted_proxies: string[];
  node_name?: string;
  shutdown_drain_secs: number;
  log_level: "trace" | "debug" | "info" | "warning" | "error" | "fatal";
}
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
const typesMatch: [
  Equals<Config, ExpectedConfig>,
  Equals<CustomRepo, ExpectedCustomRepo>,
  Equals<MirrorsAutoConfig, ExpectedMirrorsAuto>,
] = [true, true, true];

Deno.test("Config types are exactly the documented interfaces", () => {
  assert.deepEqual(typesMatch, [true, true, true]);
});
