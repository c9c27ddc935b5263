/**
 * What hedged requests need to know about mirrors: a small sample of each mirror's recent times to first byte
 * (for its p95) and the budget that keeps extra requests to a fraction of the requests made.
 *
 * @module
 */

/** How many recent times to first byte are kept per mirror. */
export const TTFB_SAMPLE_SIZE = 32;

/** The last {@linkcode TTFB_SAMPLE_SIZE} times to first byte of one mirror, in milliseconds. */
export class TtfbSamples {
  readonly #values: number[] = [];
  #next = 0;

  /** Adds a sample, replacing the oldest once the sample is full. */
  add(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    if (this.#values.length < TTFB_SAMPLE_SIZE) this.#values.push(ms);
    else this.#values[this.#next] = ms;
    this.#next = (this.#next + 1) % TTFB_SAMPLE_SIZE;
  }

  /** Number of samples held. */
  get size(): number {
    return this.#values.length;
  }

  /** The 95th percentile (nearest rank) of the samples; undefined without any. */
  p95(): number | undefined {
    if (this.#values.length === 0) return undefined;
    const sorted = [...this.#values].sort((a, b) => a - b);
    return sorted[Math.ceil(0.95 * sorted.length) - 1];
  }
}

/** Options for {@linkcode HedgeBudget}. */
export interface HedgeBudgetOptions {
  /** Extra requests allowed per request made. Default 0.1 (10 %). */
  ratio?: number;
  /** Most credit saved up for a burst (e.g. the first requests after a mirror fell silent). Default 3. */
  burst?: number;
}

/**
 * A token bucket for hedges: each request earns `ratio` of a hedge, each hedge spends one. Over any run of
 * requests the hedges stay below `ratio` x requests + `burst`.
 */
export class HedgeBudget {
  readonly #ratio: number;
  readonly #burst: number;
  #credit: number;
  /** Requests counted so far. */
  requests = 0;
  /** Hedges spent so far (hedged requests started). */
  hedges = 0;
  /** Hedges that won their race: the hedged mirror's head came first and was used. */
  wins = 0;

  /** A full budget: the first `burst` hedges are allowed at once. */
  constructor(options: HedgeBudgetOptions = {}) {
    this.#ratio = options.ratio ?? 0.1;
    this.#burst = options.burst ?? 3;
    this.#credit = this.#burst;
  }

  /** Counts one request (one order or pass-through asking upstream). */
  earn(): void {
    this.requests++;
    this.#credit = Math.min(this.#burst, this.#credit + this.#ratio);
  }

  /** Spends one hedge if the budget allows it; false when it does not. */
  spend(): boolean {
    if (this.#credit < 1) return false;
    this.#credit -= 1;
    this.hedges++;
    return true;
  }

  /** Counts a hedge that won its race (the mirror asked second answered first). */
  won(): void {
    this.wins++;
  }
}
