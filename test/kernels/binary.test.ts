/**
 * binary's broadcasting against a naive reading of NumPy's rule: each result element's operands
 * found through src/kernels/shape.ts's broadcastOffsets (an independent index computation), for
 * random shapes that broadcast, every op and both kernel dtypes.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { binary, BINARY_OPS, binaryInfo, maximumOf, minimumOf, powC } from '../../src/kernels/binary.js'
import { broadcastOffsets } from '../../src/kernels/shape.js'
import type { FloatArray } from '../../src/kernels/types.js'

const LIMITS = { maxElements: 1 << 20, maxFlops: 1e9 }
const SCALAR: Record<string, (x: number, y: number) => number> = {
  add: (x, y) => x + y,
  sub: (x, y) => x - y,
  mul: (x, y) => x * y,
  div: (x, y) => x / y,
  pow: powC,
  maximum: maximumOf,
  minimum: minimumOf
}
const VALUES = [0, -0, 1, -1, 2, 0.5, -3.25, 1e-310, 1e300, Infinity, -Infinity, NaN]

describe('binary broadcasting', () => {
  it('every element is op(a[i], b[j]) at the indices NumPy broadcasting gives', () => {
    const axes = fc.array(fc.tuple(fc.integer({ min: 0, max: 4 }), fc.constantFrom('both', 'a', 'b')), { maxLength: 4 })
    fc.assert(fc.property(fc.constantFrom(...BINARY_OPS), axes, fc.nat(4), fc.nat(4), fc.boolean(), fc.nat(1000),
      (op, dims, dropA, dropB, single, seed) => {
        const aShape = dims.map(([d, who]) => who === 'b' ? 1 : d).slice(Math.min(dropA, dims.length))
        const bShape = dims.map(([d, who]) => who === 'a' ? 1 : d).slice(Math.min(dropB, dims.length))
        const info = binaryInfo(op, aShape, bShape, LIMITS)
        const array = (n: number, f: (i: number) => number): FloatArray =>
          single ? Float32Array.from({ length: n }, (_, i) => f(i)) : Float64Array.from({ length: n }, (_, i) => f(i))
        const a = array(aShape.reduce((p, d) => p * d, 1), i => VALUES[(i * 7 + seed) % VALUES.length])
        const b = array(bShape.reduce((p, d) => p * d, 1), i => VALUES[(i * 5 + seed * 3) % VALUES.length])
        const out = binary(array(info.outElements, () => 0), a, b, info)
        const ia = broadcastOffsets(info.outShape, aShape)
        const ib = broadcastOffsets(info.outShape, bShape)
        const want = array(info.outElements, i => SCALAR[op](a[ia[i]], b[ib[i]]))
        expect(Array.from(out)).toEqual(Array.from(want))
      }), { numRuns: 300, seed: 21 })
  })

  it('C\'s pow where JavaScript differs, and the ties of maximum and minimum', () => {
    expect([powC(1, NaN), powC(1, Infinity), powC(-1, -Infinity), powC(NaN, 0), powC(-0, -1), powC(-8, 1 / 3)]).toEqual([1, 1, 1, 1, -Infinity, NaN])
    expect(Object.is(maximumOf(-0, 0), -0) && Object.is(maximumOf(0, -0), 0)).toBe(true)
    expect(Object.is(minimumOf(-0, 0), -0) && Object.is(minimumOf(0, -0), 0)).toBe(true)
    expect([maximumOf(NaN, 1), maximumOf(1, NaN), minimumOf(NaN, 1), minimumOf(1, NaN)]).toEqual([NaN, NaN, NaN, NaN])
  })
})
