/**
 * Timers that fire only when a test moves their clock, for code that takes `now`, `setTimer` and `clearTimer`
 * (e.g. the cache cleaner): what is due runs at once, what is not never runs, whatever the machine's load.
 *
 * @module
 */

interface Timer {
  at: number;
  ms: number;
  callback: () => void;
}

/** A clock at 0 and no timers; {@linkcode FakeTimers.advance} moves the clock and fires the timers due. */
export class FakeTimers {
  #now = 0;
  #next = 1;
  #timers = new Map<number, Timer>();

  /** The fake clock, in milliseconds. */
  readonly now = (): number => this.#now;

  /** Starts a timer that fires when the clock has moved `ms` on; returns its id. */
  readonly setTimer = (callback: () => void, ms: number): unknown => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + ms, ms, callback });
    return id;
  };

  /** Cancels a timer (a fired or unknown one is ignored). */
  readonly clearTimer = (timer: unknown): void => {
    this.#timers.delete(timer as number);
  };

  /** `now`, `setTimer` and `clearTimer`, to spread into the options of the code under test. */
  readonly deps = { now: this.now, setTimer: this.setTimer, clearTimer: this.clearTimer };

  /** The delays the pending timers were set with, oldest first. */
  get pending(): number[] {
    return [...this.#timers.values()].map((timer) => timer.ms);
  }

  /** Moves the clock `ms` on, firing the timers due on the way in the order of their times. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = [...this.#timers.entries()].filter(([, timer]) => timer.at <= end)
        .sort(([a, x], [b, y]) => x.at - y.at || a - b)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.#now = Math.max(this.#now, due[1].at);
      due[1].callback();
    }
    this.#now = end;
  }
}
