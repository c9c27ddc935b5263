/**
 * The shape of flexo's effective configuration.
 *
 * PLACEHOLDER: the config helper replaces this with a zod schema that produces exactly this type.
 * Keys are flexo's own TOML keys so that `check-config` prints what a user would write.
 *
 * @module
 */

/** One `[[custom_repo]]` entry: a repository served below `/custom_repo/NAME/`. */
export interface CustomRepo {
  /** The name used in the request path (`/custom_repo/NAME/...`) and as the cache folder. */
  name: string;
  /** Base URLs tried in order (flexo accepts one `url`; a list is accepted too). No trailing slash needed. */
  urls: string[];
}

/** Settings for `mirror_selection_method = "auto"` (the `[mirrors_auto]` table). */
export interface MirrorsAutoConfig {
  mirrors_status_json_endpoint: string;
  mirrors_status_json_endpoint_fallbacks: string[];
  mirrors_blacklist: string[];
  https_required: boolean;
  ipv4: boolean;
  ipv6: boolean;
  max_score: number;
  num_mirrors: number;
  mirrors_random_or_sort: "sort" | "random";
  /** Latency test timeout in milliseconds. */
  timeout: number;
  allowed_countries: string[];
  /** Mirrors whose `completion_pct` is below this are skipped (0..1). */
  min_completion_pct: number;
  /** Mirrors whose `delay` (seconds behind the master) exceeds this are skipped. */
  max_delay_secs: number;
}

/** The effective configuration after defaults, file, environment and command line are layered. */
export interface Config {
  cache_directory: string;
  mirrorlist_fallback_file: string;
  mirrorlist_latency_test_results_file: string;
  port: number;
  /** One or more addresses to listen on (IPv4 or IPv6). */
  listen_ip_address: string[];
  mirror_selection_method: "auto" | "predefined";
  /** Mirror base URLs, each ending with "/" (normalised), without `$repo/os/$arch`. */
  mirrors_predefined: string[];
  /** Milliseconds to wait for a connection and response headers from a mirror. */
  connect_timeout: number;
  /** Bytes per second below which a transfer counts as slow (resolved from `low_speed_limit_formatted` too). */
  low_speed_limit: number;
  low_speed_limit_formatted?: string;
  /** Seconds a transfer may stay below `low_speed_limit` before it is moved to another mirror. */
  low_speed_time_secs: number;
  /** Bytes per second cap for one transfer, or undefined for no cap. */
  max_speed_limit?: number;
  /** Newest versions of each package to keep; 0 keeps everything. */
  num_versions_retain: number;
  /** Humantime string such as "8 days". */
  refresh_latency_tests_after: string;
  custom_repo: CustomRepo[];
  mirrors_auto: MirrorsAutoConfig;
  /** Optional cache size bound in bytes. */
  max_cache_size?: number;
  /** CIDR ranges allowed to use the proxy; empty means everyone. */
  allowed_clients: string[];
  log_level: "trace" | "debug" | "info" | "warning" | "error" | "fatal";
}
