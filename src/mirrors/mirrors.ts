/**
 * The mirror pool: the ranked list of upstream mirrors (providers) and what flexo has learnt about each.
 *
 * The ranking comes from outside (the predefined list, the built-in list, or automatic selection); the pool adds
 * what it sees on real transfers: in-flight counts for spreading parallel downloads, throughput and time to first
 * byte, and failures that decay over time so a mirror is retried later instead of banned forever.
 *
 * @module
 */

import { HedgeBudget, TtfbSamples } from "./hedge_measures.ts";

/** What a download is for; it decides how mirrors are ordered. */
export type OrderPurpose = "database" | "package" | "other";

/** What the pool knows about one mirror, as shown on the status page. */
export interface MirrorStats {
  /** Base URL, ending with "/". */
  url: string;
  /** Position in the ranking (0 is the primary). */
  rank: number;
  /** Transfers from this mirror running now. */
  inFlight: number;
  /** Completed transfers. */
  successes: number;
  /** Failed transfers (timeouts, errors, too slow, bad data). */
  failures: number;
  /** Failure weight after decay (one failure adds 1); from 0.5 up the mirror is tried after the healthy ones. */
  penalty: number;
  /** Bytes received from this mirror. */
  bytes: number;
  /** Moving average of measured throughput in bytes per second, if any transfer was measured. */
  throughputBps?: number;
  /** Moving average of time to response headers in milliseconds. */
  ttfbMs?: number;
  /** Latency measured by a latency test, if known. */
  latencyMs?: number;
  /** The last failure's reason and time. */
  lastError?: { message: string; at: number };
  /** When the last transfer from this mirror completed (milliseconds), if any did. */
  lastSuccessAt?: number;
  /** Whether the mirror's snapshot was found older than the cache's lately; see {@linkcode SnapshotMark}. */
  snapshot: SnapshotMark;
}

/**
 * What the pool knows about a mirror's snapshot: "lagging" after it served a file older than the cached copy
 * (its sync is behind), until `until`; it is then ranked behind the up-to-date mirrors.
 */
export type SnapshotMark =
  | { type: "up_to_date" }
  | { type: "lagging"; since: number; until: number; reason: string };

/** Options for {@linkcode MirrorPool}. */
export interface MirrorPoolOptions {
  /** Clock in milliseconds (injected for tests). */
  now?: () => number;
  /** A failure's weight halves after this many milliseconds. Default 10 minutes. */
  failureHalfLifeMs?: number;
  /** How many of the best healthy mirrors share parallel package downloads. Default 3. */
  spreadOver?: number;
  /** How long a mirror stays marked lagging after it served an older snapshot. Default 30 minutes. */
  laggingHoldMs?: number;
  /** Called whenever the first mirror of the ranking changes. */
  onPrimaryChange?: (url: string | undefined, source: string) => void;
}

interface MirrorState extends MirrorStats {
  penaltyAt: number;
}

const EWMA_WEIGHT = 0.3;

/** Ranked upstream mirrors with live health information. */
export class MirrorPool {
  #mirrors: MirrorState[] = [];
  /**
   * Mirrors a new ranking left out, with what they counted: a transfer running then still counts, and a mirror
   * ranked again goes on from its counts (the counters of `/metrics` never go down). One entry per URL ever
   * ranked, so bounded by the mirror lists flexo was given.
   */
  readonly #former = new Map<string, MirrorState>();
  #now: () => number;
  #halfLife: number;
  #spreadOver: number;
  #laggingHold: number;
  #onPrimaryChange?: (url: string | undefined, source: string) => void;
  #source = "none";
  readonly #ttfb = new Map<string, TtfbSamples>();
  /** The budget of hedged requests to the mirrors of this pool (see `src/download/hedge.ts`). */
  readonly hedgeBudget: HedgeBudget = new HedgeBudget();
  /** The last probe of each mirror by an overtaker: the rate it showed and when (`src/download/overtake.ts`). */
  readonly lastProbes = new Map<string, { bytesPerSecond: number; at: number }>();
  /**
   * Probes of a next mirror while a package trickled from one of this pool, and transfers they overtook
   * (`src/download/overtake.ts`), for `/metrics`.
   */
  readonly overtakes = { probes: 0, overtaken: 0 };
  /** Called with the new primary when a new ranking has another one (requests in flight move on to it). */
  readonly #newPrimaryListeners = new Set<(primary: string) => void>();

  /** Creates an empty pool; call {@linkcode MirrorPool.setMirrors} to fill it. */
  constructor(options: MirrorPoolOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#halfLife = options.failureHalfLifeMs ?? 10 * 60_000;
    this.#spreadOver = options.spreadOver ?? 3;
    this.#laggingHold = options.laggingHoldMs ?? 30 * 60_000;
    this.#onPrimaryChange = options.onPrimaryChange;
  }

  /** Where the current ranking came from ("predefined", "built-in", "latency test", ...). */
  get source(): string {
    return this.#source;
  }

  /**
   * Replaces the ranking, keeping what was learnt about mirrors that stay.
   *
   * @param urls Base URLs, best first; each is normalised to end with "/".
   * @param source Where the ranking comes from, for the log and the status page.
   */
  setMirrors(urls: readonly string[], source: string): void {
    const before = this.primary();
    const known = new Map([...this.#former, ...this.#mirrors.map((m) => [m.url, m] as const)]);
    const seen = new Set<string>();
    const next: MirrorState[] = [];
    for (const raw of urls) {
      const url = raw.endsWith("/") ? raw : `${raw}/`;
      if (seen.has(url)) continue;
      seen.add(url);
      const state = known.get(url) ?? newState(url);
      state.rank = next.length;
      next.push(state);
    }
    for (const m of this.#mirrors) if (!seen.has(m.url)) this.#former.set(m.url, m);
    for (const m of next) this.#former.delete(m.url);
    this.#mirrors = next;
    this.#source = source;
    const after = this.primary();
    if (after === before) return;
    this.#onPrimaryChange?.(after, source);
    if (after === undefined) return;
    for (const listener of [...this.#newPrimaryListeners]) listener(after);
  }

  /**
   * Calls `listener` with the new primary mirror each time a new ranking ({@linkcode MirrorPool.setMirrors})
   * has another one, until the returned function is called.
   */
  onNewPrimary(listener: (primary: string) => void): () => void {
    this.#newPrimaryListeners.add(listener);
    return () => this.#newPrimaryListeners.delete(listener);
  }

  /** The first mirror of the ranking, used for databases so that they come from one sync state. */
  primary(): string | undefined {
    return this.#mirrors[0]?.url;
  }

  /** Number of mirrors in the ranking. */
  get size(): number {
    return this.#mirrors.length;
  }

  /**
   * The mirrors to try for one order, best first.
   *
   * Databases follow the ranking (primary first) so that every client sees one sync state; packages are spread
   * over the best healthy mirrors, fewest in-flight transfers first. Mirrors marked lagging come after the
   * healthy up-to-date ones, and penalised mirrors always come last.
   */
  plan(purpose: OrderPurpose): string[] {
    const now = this.#now();
    const healthy: MirrorState[] = [];
    const lagging: MirrorState[] = [];
    const penalised: MirrorState[] = [];
    for (const m of this.#mirrors) {
      if (this.#decayedPenalty(m, now) >= 0.5) penalised.push(m);
      else if (this.#markOf(m, now).type === "lagging") lagging.push(m);
      else healthy.push(m);
    }
    penalised.sort((a, b) => this.#decayedPenalty(a, now) - this.#decayedPenalty(b, now) || a.rank - b.rank);
    if (purpose === "package") {
      const top = healthy.slice(0, this.#spreadOver);
      top.sort((a, b) => a.inFlight - b.inFlight || a.rank - b.rank);
      return [...top, ...healthy.slice(this.#spreadOver), ...lagging, ...penalised].map((m) => m.url);
    }
    return [...healthy, ...lagging, ...penalised].map((m) => m.url);
  }

  /**
   * Marks a mirror lagging: it served a file older than the cached copy (an older snapshot of the repository).
   * It is ranked behind the up-to-date mirrors for `laggingHoldMs` from now.
   */
  markLagging(url: string, reason: string): void {
    const m = this.#find(url);
    if (!m) return;
    const now = this.#now();
    m.snapshot = { type: "lagging", since: now, until: now + this.#laggingHold, reason };
  }

  /** The snapshot mark of a mirror now ("up_to_date" for an unknown one). */
  snapshotMark(url: string): SnapshotMark {
    const m = this.#find(url);
    return m ? this.#markOf(m, this.#now()) : { type: "up_to_date" };
  }

  /** Marks the start of a transfer from `url`; call the returned function when it ends. */
  begin(url: string): () => void {
    const m = this.#find(url);
    if (!m) return () => {};
    m.inFlight++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      m.inFlight--;
    };
  }

  /** Records a finished transfer and what it measured. */
  recordSuccess(url: string, measured: { bytes: number; durationMs: number; ttfbMs?: number }): void {
    const m = this.#find(url);
    if (!m) return;
    m.successes++;
    m.lastSuccessAt = this.#now();
    m.bytes += measured.bytes;
    // Only transfers long enough to measure say anything about throughput.
    if (measured.bytes >= 256 * 1024 && measured.durationMs >= 50) {
      const bps = measured.bytes / (measured.durationMs / 1000);
      m.throughputBps = m.throughputBps === undefined ? bps : ewma(m.throughputBps, bps);
    }
    if (measured.ttfbMs !== undefined) {
      m.ttfbMs = m.ttfbMs === undefined ? measured.ttfbMs : ewma(m.ttfbMs, measured.ttfbMs);
    }
  }

  /** Records one time to a response head from `url` (any answer but an error), for its p95. */
  recordTtfb(url: string, ms: number): void {
    if (!this.#find(url)) return;
    let samples = this.#ttfb.get(url);
    if (!samples) this.#ttfb.set(url, samples = new TtfbSamples());
    samples.add(ms);
  }

  /** The 95th percentile of the recent times to a response head of `url`; undefined before any. */
  ttfbP95(url: string): number | undefined {
    return this.#ttfb.get(url)?.p95();
  }

  /** Records bytes received from a mirror whose transfer did not complete (for the byte counters). */
  recordBytes(url: string, bytes: number): void {
    const m = this.#find(url);
    if (m) m.bytes += bytes;
  }

  /**
   * Records a failed attempt: it counts, and its message becomes the mirror's last error. With `penalise`
   * (the default) the mirror is also tried after healthy ones until the penalty decays; without it the ranking
   * is left as it is (when every mirror failed, see FailureTally) and {@linkcode MirrorPool.penalise} may
   * follow once the blame is clear.
   */
  recordFailure(url: string, message: string, options: { penalise?: boolean } = {}): void {
    const m = this.#find(url);
    if (!m) return;
    const now = this.#now();
    m.failures++;
    m.lastError = { message, at: now };
    if (options.penalise ?? true) this.penalise(url);
  }

  /** Adds one failure's weight to the mirror's penalty: it is tried after healthy ones until that decays. */
  penalise(url: string): void {
    const m = this.#find(url);
    if (!m) return;
    const now = this.#now();
    m.penalty = this.#decayedPenalty(m, now) + 1;
    m.penaltyAt = now;
  }

  /** Records a latency test result for the status page. */
  recordLatency(url: string, latencyMs: number): void {
    const m = this.#find(url);
    if (m) m.latencyMs = latencyMs;
  }

  /** A copy of what is known about each mirror, in ranking order. */
  snapshot(): MirrorStats[] {
    const now = this.#now();
    return this.#mirrors.map(({ penaltyAt: _penaltyAt, ...m }) => ({
      ...m,
      penalty: this.#decayedPenalty({ ...m, penaltyAt: _penaltyAt }, now),
      snapshot: this.#markOf({ ...m, penaltyAt: _penaltyAt }, now),
    }));
  }

  /** A mark dated after `now` is over too: the clock was set back since, by more than it has held. */
  #markOf(m: MirrorState, now: number): SnapshotMark {
    const mark = m.snapshot;
    return mark.type === "lagging" && (now >= mark.until || now < mark.since) ? { type: "up_to_date" } : mark;
  }

  #find(url: string): MirrorState | undefined {
    return this.#mirrors.find((m) => m.url === url) ?? this.#former.get(url);
  }

  /**
   * A penalty dated after `now` has decayed: the clock was set back since, for how long is unknown, and holding
   * a mirror back until the clock is there again could take days (a forward jump ends penalties early, too).
   */
  #decayedPenalty(m: MirrorState, now: number): number {
    if (m.penalty === 0 || now < m.penaltyAt) return 0;
    return m.penalty * Math.pow(0.5, (now - m.penaltyAt) / this.#halfLife);
  }
}

function newState(url: string): MirrorState {
  return {
    url,
    rank: 0,
    inFlight: 0,
    successes: 0,
    failures: 0,
    penalty: 0,
    penaltyAt: 0,
    bytes: 0,
    snapshot: { type: "up_to_date" },
  };
}

function ewma(previous: number, sample: number): number {
  return previous * (1 - EWMA_WEIGHT) + sample * EWMA_WEIGHT;
}

/**
 * Well-known Arch Linux mirrors used until a ranking exists (no config, no network yet).
 * Tier-1 mirrors and global CDNs, chosen for availability.
 */
export const BUILT_IN_MIRRORS: readonly string[] = [
  "https://geo.mirror.pkgbuild.com/",
  "https://fastly.mirror.pkgbuild.com/",
  "https://mirror.rackspace.com/archlinux/",
  "https://mirrors.kernel.org/archlinux/",
  "https://mirror.leaseweb.net/archlinux/",
  "https://ftp.halifax.rwth-aachen.de/archlinux/",
];
