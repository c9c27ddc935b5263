/**
 * The last 24 hours of traffic for the status page's chart: bytes sent from the cache, bytes fetched from
 * upstream and requests, in 5-minute buckets. A fixed ring of numbers (288 buckets of three counts, about
 * 7 KiB), whatever the traffic: old buckets are overwritten as time moves on.
 *
 * @module
 */

/** What is counted per bucket. */
export type TrafficKind = "fromCacheBytes" | "fromUpstreamBytes" | "requests";

const KINDS: readonly TrafficKind[] = ["fromCacheBytes", "fromUpstreamBytes", "requests"];

/** The traffic of the last buckets, oldest first, as the status report carries it. */
export interface TrafficSnapshot {
  /** Length of one bucket in milliseconds. */
  bucketMs: number;
  /** When the newest bucket ends (milliseconds since the epoch); it is the one filling now. */
  endsAt: number;
  /** Bytes sent to clients from the cache (and from downloads they joined), per bucket. */
  fromCacheBytes: number[];
  /** Bytes sent to clients as they came from upstream, per bucket. */
  fromUpstreamBytes: number[];
  /** Requests answered, per bucket. */
  requests: number[];
}

/** Options for {@linkcode TrafficHistory}. */
export interface TrafficHistoryOptions {
  /** The clock in milliseconds (default `Date.now`). */
  now?: () => number;
  /** Bucket length in milliseconds (default 5 minutes). */
  bucketMs?: number;
  /** Number of buckets kept (default 288: 24 hours of 5 minutes). */
  buckets?: number;
}

/** Counts of the recent buckets in a fixed ring. */
export class TrafficHistory {
  readonly #now: () => number;
  readonly #bucketMs: number;
  readonly #buckets: number;
  /** Three counts per bucket, in the order of KINDS; bucket n of time lives at n % buckets. */
  readonly #counts: Float64Array;
  /** The bucket number (time / bucketMs) of the newest bucket written. */
  #newest: number;

  /** An empty history. */
  constructor(options: TrafficHistoryOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#bucketMs = options.bucketMs ?? 5 * 60_000;
    this.#buckets = options.buckets ?? 288;
    this.#counts = new Float64Array(this.#buckets * KINDS.length);
    this.#newest = Math.floor(this.#now() / this.#bucketMs);
  }

  /** Adds `amount` of `kind` to the bucket of now. */
  add(kind: TrafficKind, amount: number): void {
    const slot = this.#advance(this.#now());
    this.#counts[slot * KINDS.length + KINDS.indexOf(kind)] += amount;
  }

  /** The buckets of the last 24 hours (or the configured span), oldest first, up to now. */
  snapshot(): TrafficSnapshot {
    const now = this.#now();
    this.#advance(now);
    const series = KINDS.map(() => [] as number[]);
    for (let n = this.#newest - this.#buckets + 1; n <= this.#newest; n++) {
      const slot = ((n % this.#buckets) + this.#buckets) % this.#buckets;
      for (let k = 0; k < KINDS.length; k++) series[k].push(this.#counts[slot * KINDS.length + k]);
    }
    return {
      bucketMs: this.#bucketMs,
      endsAt: (this.#newest + 1) * this.#bucketMs,
      fromCacheBytes: series[0],
      fromUpstreamBytes: series[1],
      requests: series[2],
    };
  }

  /** Moves the ring on to the bucket of `now`, clearing the buckets passed over; returns its slot. */
  #advance(now: number): number {
    const bucket = Math.floor(now / this.#bucketMs);
    if (bucket > this.#newest) {
      const from = Math.max(this.#newest + 1, bucket - this.#buckets + 1);
      for (let n = from; n <= bucket; n++) {
        const slot = n % this.#buckets;
        this.#counts.fill(0, slot * KINDS.length, (slot + 1) * KINDS.length);
      }
      this.#newest = bucket;
    }
    // A clock that went back counts into the newest bucket.
    return this.#newest % this.#buckets;
  }
}
