/**
 * Comparison of computed values with reference values: relative tolerance plus an absolute
 * floor; NaN equals NaN and an infinity equals the same infinity, exactly.
 */
import { expect } from 'vitest'
import { decodeWireTensor, type WireEncoding, type WireTensor } from './wire.js'

export interface Tolerance {
  /** Relative tolerance on each element. */
  rtol: number
  /** Absolute floor; defaults to rtol x the largest finite |expected| (for sums that cancel). */
  atol?: number
}

/** Tolerances per dtype used across the suite: float64 kernels agree to ~1e-12, float32 to ~1e-5. */
export const TOL: Record<'float32' | 'float64', Tolerance> = {
  float64: { rtol: 1e-10 },
  float32: { rtol: 2e-5 }
}

export function firstMismatch (actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance): string | null {
  if (actual.length !== expected.length) return `length ${actual.length} != ${expected.length}`
  let scale = 0
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]
    if (Number.isFinite(e) && Math.abs(e) > scale) scale = Math.abs(e)
  }
  const atol = tol.atol ?? tol.rtol * scale
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]
    const e = expected[i]
    if (Number.isNaN(e) || !Number.isFinite(e)) {
      if (!Object.is(a, e)) return `element ${i}: got ${a}, expected ${e}`
      continue
    }
    if (!(Math.abs(a - e) <= atol + tol.rtol * Math.abs(e))) {
      return `element ${i}: got ${a}, expected ${e} (rtol ${tol.rtol}, atol ${atol})`
    }
  }
  return null
}

export function expectClose (actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance, label = ''): void {
  const msg = firstMismatch(actual, expected, tol)
  expect(msg, label).toBeNull()
}

/** A JSON null literal anywhere in a reply's text (base64 runs cannot match: they hold no brackets). */
export const NULL_LITERAL = /[:,[]\s*null\s*[,\]}]/

/**
 * A reply tensor against a fixture's expected one (flat data): exactly the keys shape, dtype and
 * data, the same shape and dtype, and values within `tol` (default: the dtype's tolerance).
 */
export function expectTensor (actual: unknown, expected: WireTensor, encoding: WireEncoding, tol: Tolerance | undefined, label: string): void {
  expect(actual, `${label} missing`).toBeTypeOf('object')
  const t = actual as WireTensor
  expect(Object.keys(t).sort(), `${label} keys`).toEqual(['data', 'dtype', 'shape'])
  expect(t.shape, `${label} shape`).toEqual(expected.shape)
  expect(t.dtype, `${label} dtype`).toBe(expected.dtype)
  expectClose(decodeWireTensor(t, encoding), decodeWireTensor(expected, 'flat'), tol ?? TOL[expected.dtype as 'float32' | 'float64'], label)
}
