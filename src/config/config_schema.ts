/**
 * The zod schema of flexo's configuration and the types inferred from it.
 *
 * Keys are flexo's own TOML keys so that `check-config` prints what a user would write. The schema fills in
 * every default, normalises the accepted shorthands (a single listen address, a single custom repo URL,
 * "warn" for "warning", sizes and bandwidths as text) and resolves `low_speed_limit_formatted`. Every error
 * message is the expected form of the value, phrased to follow "expected ...".
 *
 * @module
 */

import { z } from "zod";
import {
  cidrOf,
  hasDecodableUserinfo,
  hasNoSpace,
  isUrl,
  listenAddressOf,
  listOf,
  logLevelOf,
  parsedOrRaw,
  succeeds,
  wordOf,
} from "./_value_checks.ts";
import {
  BANDWIDTH_FORM,
  DURATION_FORM,
  parseBandwidth,
  parseDuration,
  parseSize,
  SIZE_FORM,
} from "./units.ts";

/** Where flexo looks for its configuration file unless told otherwise. */
export const DEFAULT_CONFIG_PATH = "/etc/flexo/flexo.toml";
/** Default `cache_directory`. */
export const DEFAULT_CACHE_DIRECTORY = "/var/cache/flexo/pkg";
/** Default `mirrorlist_fallback_file`. */
export const DEFAULT_MIRRORLIST_FALLBACK_FILE = "/var/cache/flexo/state/mirrorlist";
/** Default `mirrorlist_latency_test_results_file`. */
export const DEFAULT_LATENCY_TEST_RESULTS_FILE = "/var/cache/flexo/state/latency_test_results.json";
/** Default `mirrors_auto.mirrors_status_json_endpoint`. */
export const DEFAULT_MIRRORS_STATUS_JSON_ENDPOINT = "https://archlinux.org/mirrors/status/json/";
/** Default `mirrors_auto.mirrors_status_json_endpoint_fallbacks` (flexo's list). */
export const DEFAULT_MIRRORS_STATUS_JSON_ENDPOINT_FALLBACKS: readonly string[] = [
  "https://raw.githubusercontent.com/nroi/archlinux-mirrors-status-fallback/main/mirrorlist.json",
];
/** Accepted values of `log_level` ("warn" is also accepted and read as "warning"). */
export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

/** Pattern every `[[custom_repo]]` name must match (it becomes a path segment and a folder name). */
export const CUSTOM_REPO_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

/** A list of CIDR ranges (a bare address means that host), empty by default: allowed_clients, trusted_proxies. */
function cidrList() {
  return z.preprocess(
    listOf,
    z.array(
      z.preprocess(cidrOf, z.union([z.cidrv4(), z.cidrv6()], { error: CIDR })),
      { error: ALLOWED_CLIENTS },
    ),
  ).default(() => []);
}

const PATH = 'a non-empty file system path such as "/var/cache/flexo/pkg"';
const PORT = "a whole number from 0 to 65535 such as 7878 (0 picks a free port)";
const LISTEN = 'an IPv4 or IPv6 address such as "127.0.0.1", "0.0.0.0" or "::" (or "localhost"), or a ' +
  "non-empty list of them";
const SELECTION = '"auto" or "predefined"';
const MIRROR_URL = "an http:// or https:// mirror URL without the $repo/os/$arch part, such as " +
  '"https://mirror.example.org/archlinux/"';
const USERINFO =
  "a user name and password in which every % starts an escape such as %25 (a % itself) or %40 " +
  "(an @)";
const ONE_URL = "one URL without spaces (several URLs go in a TOML list, or are separated by commas in a " +
  "FLEXO_* variable)";
const MIRROR_LIST = `a list of mirror URLs, each ${MIRROR_URL}`;
const CONNECT_TIMEOUT = "a whole number of milliseconds, at least 1, such as 3000";
const LOW_SPEED_LIMIT = "a whole number of bytes per second, 0 or more, such as 1048576 (0: never too slow)";
const LOW_SPEED_LIMIT_FORMATTED = `${BANDWIDTH_FORM}, at least 1 byte per second`;
const LOW_SPEED_TIME = "a whole number of seconds, at least 1, such as 5";
const CLIENT_TIMEOUT = "a whole number of seconds, 0 or more, such as 60 (0 turns the timeout off)";
const MAX_CONNECTIONS = "a whole number of connections, at least 1, such as 1000";
const MAX_SPEED_LIMIT = `a whole number of bytes per second (0 or more; 0 is no cap) or ${BANDWIDTH_FORM}`;
const NUM_VERSIONS = "a whole number, 0 or more, such as 3 (0 keeps every version)";
const REPO_NAME = 'a name of letters, digits, ".", "_", "+" and "-" that starts with a letter or digit, ' +
  'such as "archzfs"';
const REPO_URL = 'an http:// or https:// URL such as "https://archzfs.com", or a non-empty list of them';
const CUSTOM_REPOS = "a list of [[custom_repo]] tables, each with a unique name and a url";
const CUSTOM_REPO = 'a [[custom_repo]] table with a name and a url, such as { name = "archzfs", ' +
  'url = "https://archzfs.com" }';
const MAX_CACHE_SIZE = `${SIZE_FORM}, at least 1 byte`;
const ALLOWED_CLIENTS = 'a list of CIDR ranges such as ["192.168.0.0/16", "fd00::/8"] (a bare address ' +
  "stands for that one host)";
const CIDR = 'a CIDR range such as "192.168.0.0/16" or "fd00::/8", or a single IP address';
const LOG_LEVEL = '"trace", "debug", "info", "warning" (or "warn"), "error" or "fatal"';
const STATUS_URL = "an http://, https:// or file:// URL of the mirror status JSON, such as " +
  `"${DEFAULT_MIRRORS_STATUS_JSON_ENDPOINT}"`;
const STATUS_URL_LIST = `a list of URLs, each ${STATUS_URL}`;
const BLACKLIST =
  'a list of mirror URLs as they appear in the mirror status JSON, such as ["https://a.example/"]';
const BOOLEAN = "true or false";
const NODE_NAME = 'a name of letters, digits and "._:-", such as "flexo-1:7878"';
const DRAIN = "a whole number of seconds from 0 to 8";
const MAX_SCORE = "a number, 0 or more, such as 2.5";
const NUM_MIRRORS = "a whole number, at least 1, such as 8";
const RANDOM_OR_SORT = '"sort" or "random"';
const LATENCY_TIMEOUT = "a whole number of milliseconds, at least 1, such as 350";
const COUNTRIES = 'a list of two-letter ISO country codes such as ["DE", "AT"] (empty means all countries)';
const COUNTRY = 'a two-letter ISO country code such as "DE"';
const COMPLETION =
  "a number from 0 to 1 such as 1.0 (the share of the main mirror's files a mirror must have)";
const DELAY = "a whole number of seconds, 0 or more, such as 3600";

const mirrorUrl = z.string({ error: MIRROR_URL }).trim()
  .refine(hasNoSpace, { error: ONE_URL, abort: true })
  .refine(hasDecodableUserinfo, { error: USERINFO, abort: true })
  .refine((s) => isUrl(s, ["http:", "https:"]), { error: MIRROR_URL })
  .transform((s) => (s.endsWith("/") ? s : `${s}/`));

const statusUrl = z.string({ error: STATUS_URL }).trim()
  .refine(hasNoSpace, { error: ONE_URL, abort: true })
  .refine((s) => isUrl(s, ["http:", "https:", "file:"]), { error: STATUS_URL });

/** The `[mirrors_auto]` table. */
export const mirrorsAutoSchema = z.object({
  mirrors_status_json_endpoint: statusUrl.default(DEFAULT_MIRRORS_STATUS_JSON_ENDPOINT)
    .describe(
      "URL of the official mirror list with the status of every mirror (http://, https:// or file://).",
    ),
  mirrors_status_json_endpoint_fallbacks: z.preprocess(
    listOf,
    z.array(statusUrl, { error: STATUS_URL_LIST }),
  ).default(() => [...DEFAULT_MIRRORS_STATUS_JSON_ENDPOINT_FALLBACKS])
    .describe(
      "URLs tried in order when mirrors_status_json_endpoint fails or returns something flexo cannot read.",
    ),
  mirrors_blacklist: z.preprocess(
    listOf,
    z.array(z.string({ error: BLACKLIST }).trim().min(1), { error: BLACKLIST }),
  ).default(() => [])
    .describe("Mirrors never to use, by their URL as listed in the mirror status."),
  https_required: z.boolean({ error: BOOLEAN }).default(true)
    .describe("Only use mirrors that offer HTTPS."),
  ipv4: z.boolean({ error: BOOLEAN }).default(true).describe("Only use mirrors reachable over IPv4."),
  ipv6: z.boolean({ error: BOOLEAN }).default(false)
    .describe(
      "Only use mirrors reachable over IPv6 (this filters the mirror list and excludes many mirrors).",
    ),
  max_score: z.number({ error: MAX_SCORE }).min(0).default(2.5)
    .describe(
      "The worst mirror score accepted; lower is better (see https://archlinux.org/mirrors/status/).",
    ),
  num_mirrors: z.number({ error: NUM_MIRRORS }).int().min(1).default(8)
    .describe("How many mirrors the latency test keeps; more means a slower start but more choice."),
  mirrors_random_or_sort: z.preprocess(wordOf, z.enum(["sort", "random"], { error: RANDOM_OR_SORT }))
    .default("sort")
    .describe('How the mirrors to test are picked: "sort" takes the best scores, "random" spreads the load.'),
  timeout: z.number({ error: LATENCY_TIMEOUT }).int().min(1).default(350)
    .describe("Milliseconds a mirror may take to answer the latency test; slower mirrors are not used."),
  allowed_countries: z.preprocess(
    listOf,
    z.array(
      z.string({ error: COUNTRY }).trim().regex(/^[A-Za-z]{2}$/).toUpperCase(),
      { error: COUNTRIES },
    ),
  ).default(() => [])
    .describe(
      'Two-letter country codes of the mirrors to test, such as ["DE", "AT"]; empty tests every country.',
    ),
  min_completion_pct: z.number({ error: COMPLETION }).min(0).max(1).default(1.0)
    .describe(
      "Skip mirrors with less than this share of the main mirror's files (1.0 = complete, 0.9 = 90%).",
    ),
  max_delay_secs: z.number({ error: DELAY }).int().min(0).default(3600)
    .describe("Skip mirrors that are more than this many seconds behind the main mirror."),
});

const PREFETCH_INTERVAL = `${DURATION_FORM}, at least 1 second`;
const UNACCESSED_DAYS = "a whole number of days, at least 1, such as 30";
const PREFETCH_BUDGET = `${SIZE_FORM}, at least 1 byte`;
const MAX_PARALLEL = "a whole number, at least 1, such as 1";

/** The `[prefetch]` table: downloading new versions of the packages clients use before they ask. */
export const prefetchSchema = z.object({
  enabled: z.boolean({ error: BOOLEAN }).default(false)
    .describe("Download new versions of the packages clients fetched recently before the clients ask."),
  interval: z.string({ error: PREFETCH_INTERVAL }).trim()
    .refine((s) => succeeds(() => parseDuration(s)) && parseDuration(s) >= 1000)
    .default("6h")
    .describe(
      'Time between prefetch runs, such as "6h", "1h 30min" or "3s", from the end of one to the start of the ' +
        "next, across restarts too (a run due while flexo was stopped comes a minute after the start); the first " +
        "run ever starts one interval after the start.",
    ),
  unaccessed_days: z.number({ error: UNACCESSED_DAYS }).int().min(1).default(30)
    .describe("Packages no client fetched for this many days are not prefetched any more."),
  max_bytes_per_run: z.preprocess(
    parsedOrRaw(parseSize),
    z.number({ error: PREFETCH_BUDGET }).int().min(1),
  ).default(5 * 1024 ** 3)
    .describe(
      'Most bytes one run downloads, such as "5 GiB"; packages that would exceed it wait for a later run.',
    ),
  max_parallel: z.number({ error: MAX_PARALLEL }).int().min(1).default(1)
    .describe("How many packages a run downloads at the same time; client requests never wait for them."),
});

/** One `[[custom_repo]]` entry; `url` may be one URL or a list, the output always has `urls`. */
export const customRepoSchema = z.object({
  name: z.string({ error: REPO_NAME }).trim().regex(CUSTOM_REPO_NAME_PATTERN)
    .describe(
      'Unique name of the repository, served below /custom_repo/NAME/; letters, digits, ".", "_", "+", "-".',
    ),
  url: z.preprocess(
    listOf,
    z.array(
      z.string({ error: REPO_URL }).trim().refine(hasNoSpace, { error: ONE_URL, abort: true })
        .refine(hasDecodableUserinfo, { error: USERINFO, abort: true })
        .refine((s) => isUrl(s, ["http:", "https:"])),
      { error: REPO_URL },
    ).min(1),
  ).describe(
    "Base URL of the repository (without the parts pacman appends), or a list of URLs tried in order.",
  ),
}, { error: CUSTOM_REPO }).transform((repo) => ({ name: repo.name, urls: repo.url }));

/** The top-level keys before the cross-key rules; its `shape` lists every known top-level key. */
export const configObjectSchema = z.object({
  cache_directory: z.string({ error: PATH }).trim().min(1).default(DEFAULT_CACHE_DIRECTORY)
    .describe("Directory where downloaded packages are stored; the user running flexo needs write access."),
  mirrorlist_fallback_file: z.string({ error: PATH }).trim().min(1).default(DEFAULT_MIRRORLIST_FALLBACK_FILE)
    .describe(
      "The mirrors of the last ranking, one URL a line as the original flexo writes it; without a saved " +
        "ranking, a start uses them (before mirrors_predefined and the built-in list) until the mirrors are " +
        "ranked again, and keeps them while the status JSON cannot be fetched.",
    ),
  mirrorlist_latency_test_results_file: z.string({ error: PATH }).trim().min(1)
    .default(DEFAULT_LATENCY_TEST_RESULTS_FILE)
    .describe(
      "Saved mirror latency test results, reused after a restart; delete it to test all mirrors again.",
    ),
  port: z.number({ error: PORT }).int().min(0).max(65535).default(7878)
    .describe(
      "TCP port to listen on (0 picks a free port); clients use Server = http://HOST:PORT/$repo/os/$arch.",
    ),
  listen_ip_address: z.preprocess(
    listOf,
    z.array(z.preprocess(listenAddressOf, z.union([z.ipv4(), z.ipv6()], { error: LISTEN })), {
      error: LISTEN,
    })
      .min(1),
  ).default(() => ["127.0.0.1"])
    .describe(
      'Address or list of addresses to listen on: "127.0.0.1" serves this machine, "0.0.0.0" or "::" all.',
    ),
  mirror_selection_method: z.preprocess(wordOf, z.enum(["auto", "predefined"], { error: SELECTION }))
    .default("auto")
    .describe(
      '"auto" picks fast official mirrors by the rules of [mirrors_auto]; "predefined" uses mirrors_predefined.',
    ),
  mirrors_predefined: z.preprocess(listOf, z.array(mirrorUrl, { error: MIRROR_LIST })).default(() => [])
    .describe(
      'Mirror base URLs without $repo/os/$arch, tried in order; required with "predefined", with "auto" ' +
        "used only when no mirror list can be fetched or loaded.",
    ),
  connect_timeout: z.number({ error: CONNECT_TIMEOUT }).int().min(1).default(3000)
    .describe("Milliseconds to wait for a mirror to accept the connection and answer."),
  low_speed_limit: z.number({ error: LOW_SPEED_LIMIT }).int().min(0).default(1)
    .describe(
      "Bytes per second: a download slower than this for low_speed_time_secs moves to another mirror; " +
        "ignored when low_speed_limit_formatted is set. 0 (as for the Rust flexo's curl): never for slowness, " +
        "only when no data comes at all for 30 s or more.",
    ),
  low_speed_limit_formatted: z.string({ error: LOW_SPEED_LIMIT_FORMATTED })
    .refine((s) => succeeds(() => parseBandwidth(s)) && parseBandwidth(s) >= 1)
    .optional()
    .describe('low_speed_limit with a unit, such as "2 MBit/s" or "500 KiB/s"; wins over low_speed_limit.'),
  low_speed_time_secs: z.number({ error: LOW_SPEED_TIME }).int().min(1).default(5)
    .describe(
      "Seconds a download may stay below the low speed limit before flexo switches to another mirror.",
    ),
  client_timeout_secs: z.number({ error: CLIENT_TIMEOUT }).int().min(0).default(60)
    .describe(
      "Seconds a client connection may take to send a complete request, counted from when it connected or " +
        "from the end of its previous response, and a client may take no bytes of its response; then flexo " +
        "closes it. 0 turns the timeout off (connections are then never closed for waiting).",
    ),
  offline: z.boolean({ error: BOOLEAN }).default(false)
    .describe(
      "Never contact mirrors (like apt-cacher-ng's Offlinemode): serve what is cached, databases as they are, " +
        "and answer anything else at once with 503 and the reason; prefetch does not run.",
    ),
  sendfile: z.boolean({ error: BOOLEAN }).default(true)
    .describe(
      "Send cached files and followed downloads with the kernel's sendfile (a quarter of the CPU of copying " +
        "them through JavaScript). Needs Linux, glibc and Deno's ffi permission for libc; otherwise files are " +
        "copied through JavaScript.",
    ),
  max_connections: z.number({ error: MAX_CONNECTIONS }).int().min(1).optional()
    .describe(
      "Most client connections open at once; beyond it a new one replaces the one waiting longest for a " +
        "request, or is closed when all are answering (counted: flexo_connections_refused_total). Not set: the " +
        "open-files limit less a quarter (at least 64) for cache files and mirrors.",
    ),
  max_speed_limit: z.preprocess(
    parsedOrRaw(parseBandwidth),
    // 0 is no cap, as for the Rust flexo's curl (max_recv_speed).
    z.number({ error: MAX_SPEED_LIMIT }).int().min(0).transform((n) => n === 0 ? undefined : n),
  ).optional()
    .describe(
      'Caps the download speed from mirrors, in bytes per second or such as "10 MBit/s"; not set or 0: no cap.',
    ),
  num_versions_retain: z.number({ error: NUM_VERSIONS }).int().min(0).default(3)
    .describe(
      "How many versions of each package the cache keeps in each repository folder (older ones are deleted; " +
        "`core` and `core-testing`, or a custom repository, count apart); 0 keeps every version.",
    ),
  refresh_latency_tests_after: z.string({ error: DURATION_FORM }).trim()
    .refine((s) => succeeds(() => parseDuration(s)))
    .default("8 days")
    .describe('How long saved latency test results stay valid, such as "8 days", "36h" or "1h 30min".'),
  custom_repo: z.array(customRepoSchema, { error: CUSTOM_REPOS })
    .superRefine((repos, ctx) => {
      const seen = new Set<string>();
      repos.forEach((repo, index) => {
        if (seen.has(repo.name)) {
          ctx.addIssue({
            code: "custom",
            path: [index, "name"],
            input: repo.name,
            message: `a name not used by another [[custom_repo]] entry (${
              JSON.stringify(repo.name)
            } is taken)`,
          });
        }
        seen.add(repo.name);
      });
    })
    .default(() => [])
    .describe("Repositories that are not on the official mirrors, served below /custom_repo/NAME/."),
  mirrors_auto: mirrorsAutoSchema.prefault({})
    .describe('The rules for mirror_selection_method = "auto".'),
  prefetch: prefetchSchema.prefault({})
    .describe("Prefetch: new versions of the packages clients use, downloaded before they ask."),
  max_cache_size: z.preprocess(
    parsedOrRaw(parseSize),
    z.number({ error: MAX_CACHE_SIZE }).int().min(1),
  ).optional()
    .describe(
      'Largest size the package cache may grow to, such as "50 GiB" or a number of bytes; not set: no limit. ' +
        "Beyond it the least recently used versions go first, by the files' access times: on a file system " +
        "mounted noatime that is the least recently downloaded, and relatime updates an access time at most once " +
        "a day.",
    ),
  allowed_clients: cidrList()
    .describe(
      'Client address ranges allowed to use flexo, such as ["192.168.0.0/16"]; empty allows every client.',
    ),
  cache_peers: z.preprocess(listOf, z.array(mirrorUrl, { error: MIRROR_LIST })).default(() => [])
    .describe(
      'Base URLs of the other flexo nodes of a cluster, such as ["http://10.0.0.2:7878"]. On a miss of a ' +
        "package or its signature they are asked first, in parallel, with Cache-Control: only-if-cached, for " +
        "half a second; the file comes from the first that has it (verified like any download), else from the " +
        "mirrors. Databases always come from the mirrors.",
    ),
  trusted_proxies: cidrList()
    .describe(
      'Address ranges of balancers in front of flexo, such as ["127.0.0.1/32"]. For connections from them ' +
        "the client address (for allowed_clients and the request log) is taken from Forwarded or " +
        "X-Forwarded-For; from any other connection those headers are ignored.",
    ),
  node_name: z.string({ error: NODE_NAME }).regex(/^[A-Za-z0-9._:\[\]-]+$/, { error: NODE_NAME }).optional()
    .describe(
      "This node's name in the Via header of its requests to mirrors and peers; a request that already " +
        'carries it is a loop and is answered with 508. Default: "HOSTNAME-PORT-RANDOM", unique per listener on one host and new at each start; set it to ' +
        "see stable names in the Via headers upstream.",
    ),
  shutdown_drain_secs: z.number({ error: DRAIN }).int().min(0).max(8).default(3)
    .describe(
      "Seconds between SIGTERM and closing the listener during which /healthz answers 503 while requests are " +
        "still served, so that a balancer drains the node; then running transfers get 10 s more. At most 8, " +
        "so the whole stop fits TimeoutStopSec=20s.",
    ),
  log_level: z.preprocess(logLevelOf, z.enum(LOG_LEVELS, { error: LOG_LEVEL })).default("info")
    .describe('How much flexo logs: "trace", "debug", "info", "warning" (or "warn"), "error" or "fatal".'),
});

/**
 * The whole configuration: validates raw TOML-like input, fills in defaults and produces a {@link Config}.
 *
 * `low_speed_limit_formatted`, when given, decides `low_speed_limit`. Selecting `"predefined"` mirrors
 * with an empty `mirrors_predefined` list is rejected.
 */
export const configSchema = configObjectSchema
  .refine(
    (config) => config.mirror_selection_method !== "predefined" || config.mirrors_predefined?.length !== 0,
    {
      path: ["mirrors_predefined"],
      error: 'at least one mirror URL when mirror_selection_method = "predefined" (add mirrors such as ' +
        '["https://mirror.example.org/archlinux/"], or set mirror_selection_method = "auto")',
      // Also check when other keys are invalid, so that every problem is reported at once.
      when: (payload) => {
        const value = payload.value as Record<string, unknown>;
        return wordOf(value.mirror_selection_method) === "predefined" &&
          Array.isArray(value.mirrors_predefined);
      },
    },
  )
  .transform((config) => {
    const formatted = config.low_speed_limit_formatted;
    return formatted === undefined ? config : { ...config, low_speed_limit: parseBandwidth(formatted) };
  });

/** One `[[custom_repo]]` entry: a repository served below `/custom_repo/NAME/`. */
export type CustomRepo = z.output<typeof customRepoSchema>;

/** Settings for `mirror_selection_method = "auto"` (the `[mirrors_auto]` table). */
export type MirrorsAutoConfig = z.output<typeof mirrorsAutoSchema>;

/** The effective configuration after defaults, file, environment and command line are layered. */
export type Config = z.output<typeof configSchema>;

/** One of the accepted log levels. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A top-level key of the configuration file. */
export type TopLevelKey = keyof typeof configObjectSchema.shape;

/** Settings of the `[prefetch]` table. */
export type PrefetchConfig = z.output<typeof prefetchSchema>;

/** A key of the `[prefetch]` table. */
export type PrefetchKey = keyof typeof prefetchSchema.shape;

/** Every key of the `[prefetch]` table. */
export const PREFETCH_KEYS: readonly PrefetchKey[] = Object.keys(prefetchSchema.shape) as PrefetchKey[];

/** A key of the `[mirrors_auto]` table. */
export type MirrorsAutoKey = keyof typeof mirrorsAutoSchema.shape;

/** Every top-level key, in the order the schema declares them. */
export const TOP_LEVEL_KEYS: readonly TopLevelKey[] = Object.keys(configObjectSchema.shape) as TopLevelKey[];

/** Every key of the `[mirrors_auto]` table. */
export const MIRRORS_AUTO_KEYS: readonly MirrorsAutoKey[] = Object.keys(
  mirrorsAutoSchema.shape,
) as MirrorsAutoKey[];

/** Every key of a `[[custom_repo]]` entry. */
export const CUSTOM_REPO_KEYS: readonly string[] = ["name", "url"];
