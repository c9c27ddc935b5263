/**
 * Assertions for tests, from node:assert (the @std assertions are not reachable here).
 *
 * @module
 */

import nodeAssert from "node:assert/strict";

/** Fails with `message` unless `value` is truthy. */
export function assert(value: unknown, message?: string): asserts value {
  nodeAssert.ok(value, message);
}

/** Fails unless `actual` deeply equals `expected`; byte arrays are compared without printing them whole. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  if (actual instanceof Uint8Array && expected instanceof Uint8Array) {
    if (actual.length !== expected.length) {
      nodeAssert.fail(message ?? `byte length ${actual.length} !== ${expected.length}`);
    }
    for (let i = 0; i < actual.length; i++) {
      if (actual[i] !== expected[i]) nodeAssert.fail(message ?? `bytes differ first at offset ${i}`);
    }
    return;
  }
  nodeAssert.deepStrictEqual(actual, expected, message);
}

/**
 * Fails unless `run()` rejects (with an instance of `type`, when given); returns the error for further checks.
 *
 * @example
 * ```ts
 * const error = await assertRejects(() => fetch("http://127.0.0.1:9/"), TypeError);
 * ```
 */
export async function assertRejects<E extends Error = Error>(
  run: () => Promise<unknown>,
  type?: new (...args: never[]) => E,
): Promise<E> {
  try {
    await run();
  } catch (error) {
    if (type && !(error instanceof type)) nodeAssert.fail(`rejected with ${error}, not a ${type.name}`);
    return error as E;
  }
  return nodeAssert.fail("did not reject");
}
