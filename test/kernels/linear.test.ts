import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ApiError } from '../../src/errors.js'
import { gelu, sigmoid, softmaxRows } from '../../src/kernels/activations.js'
import { linear, linearInfo } from '../../src/kernels/linear.js'
import type { Limits } from '../../src/kernels/types.js'
import { expectClose } from '../helpers/compare.js'

const LIMITS: Limits = { maxElements: 16777216, maxFlops: 2e11 }

function run (inShape: number[], input: number[], wShape: number[], w: number[], bias: number[] | null, activation: string) {
  const info = linearInfo(inShape, wShape, bias === null ? null : [bias.length], activation, LIMITS)
  const out = new Float64Array(info.outElements)
  linear(out, Float64Array.from(input), Float64Array.from(w), bias === null ? null : Float64Array.from(bias), info)
  return { shape: info.outShape, data: Array.from(out) }
}

function errorOf (fn: () => unknown): ApiError {
  try { fn() } catch (e) { return e as ApiError }
  throw new Error('expected an error')
}

describe('linear by hand', () => {
  // [1,2,3]·[[1,0],[0,1],[1,1]] = [4,5]; + bias [-5, 1] = [-1, 6]
  it('input=[1,3] weights=[3,2] bias=[2]: none and relu', () => {
    expect(run([1, 3], [1, 2, 3], [3, 2], [1, 0, 0, 1, 1, 1], [-5, 1], 'none')).toEqual({ shape: [1, 2], data: [-1, 6] })
    expect(run([1, 3], [1, 2, 3], [3, 2], [1, 0, 0, 1, 1, 1], [-5, 1], 'relu')).toEqual({ shape: [1, 2], data: [0, 6] })
  })
  it('input=[3] (1-D) gives [2]; input=[2,1,3] gives [2,1,2]', () => {
    expect(run([3], [1, 2, 3], [3, 2], [1, 0, 0, 1, 1, 1], null, 'none')).toEqual({ shape: [2], data: [4, 5] })
    expect(run([2, 1, 3], [1, 2, 3, 0, 0, 1], [3, 2], [1, 0, 0, 1, 1, 1], null, 'none').shape).toEqual([2, 1, 2])
  })
  it('softmax over the last axis: [0, ln 3] gives [1/4, 3/4]', () => {
    const r = run([1, 2], [0, Math.log(3)], [2, 2], [1, 0, 0, 1], null, 'softmax')
    expectClose(r.data, [0.25, 0.75], { rtol: 1e-15 })
  })
  it('sigmoid(0) = 1/2, tanh(0) = 0, gelu(0) = 0', () => {
    expect(run([1], [0], [1, 1], [1], null, 'sigmoid').data).toEqual([0.5])
    expect(run([1], [0], [1, 1], [1], null, 'tanh').data).toEqual([0])
    expect(run([1], [0], [1, 1], [1], null, 'gelu').data).toEqual([0])
  })
})

describe('activations at the extremes', () => {
  it('sigmoid never overflows: ±800 give 1 and a positive tiny value', () => {
    const x = Float64Array.from([800, -800, -30])
    sigmoid(x)
    expect(x[0]).toBe(1)
    expect(x[1]).toBe(0) // e^-800 underflows to 0 without a NaN
    expectClose([x[2]], [Math.exp(-30) / (1 + Math.exp(-30))], { rtol: 1e-15 })
  })
  it('gelu keeps relative accuracy in the negative tail: gelu(-10) = -10·Φ(-10) ≈ -7.6e-23', () => {
    const x = Float64Array.from([-10, 10, 1])
    gelu(x)
    // Φ(-10) = 7.619853024160527e-24 (erfc(10/√2)/2)
    expectClose([x[0]], [-7.619853024160528e-23], { rtol: 1e-13 })
    expect(x[1]).toBe(10)
    expectClose([x[2]], [0.8413447460685429], { rtol: 1e-15 }) // Φ(1)
  })
  it('softmax is stable for large logits, gives zeros for an all -Infinity row and NaN for a NaN row', () => {
    const x = Float64Array.from([1000, 1001, -Infinity, -Infinity, 1, NaN])
    softmaxRows(x, 3, 2)
    expectClose(Array.from(x.subarray(0, 2)), [1 / (1 + Math.E), Math.E / (1 + Math.E)], { rtol: 1e-15 })
    expect(Array.from(x.subarray(2, 4))).toEqual([0, 0])
    expect(x[4]).toBeNaN()
    expect(x[5]).toBeNaN()
  })
  it('softmax rows sum to 1 for random finite logits', () => {
    fc.assert(fc.property(fc.array(fc.double({ min: -1e4, max: 1e4, noNaN: true }), { minLength: 1, maxLength: 20 }), (row) => {
      const x = Float64Array.from(row)
      softmaxRows(x, 1, x.length)
      const sum = x.reduce((s, v) => s + v, 0)
      expect(Math.abs(sum - 1)).toBeLessThan(1e-12)
      for (const v of x) expect(v).toBeGreaterThanOrEqual(0)
    }), { numRuns: 300 })
  })
})

describe('linear shape errors', () => {
  it('input=[2,3] weights=[4,5]: names both shapes', () => {
    const e = errorOf(() => linearInfo([2, 3], [4, 5], null, 'none', LIMITS))
    expect(e.code).toBe('SHAPE_MISMATCH')
    expect(e.message).toContain('input [2,3]')
    expect(e.message).toContain('weights [4,5]')
  })
  it('bias of the wrong length, weights not 2-D, rank-0 input', () => {
    expect(errorOf(() => linearInfo([2, 3], [3, 5], [4], 'none', LIMITS)).message).toContain('bias [4]')
    expect(errorOf(() => linearInfo([2, 3], [3, 5, 1], null, 'none', LIMITS)).code).toBe('SHAPE_MISMATCH')
    expect(errorOf(() => linearInfo([], [3, 5], null, 'none', LIMITS)).code).toBe('SHAPE_MISMATCH')
  })
  it('an unknown activation is INVALID_ARGUMENT', () => {
    expect(errorOf(() => linearInfo([2, 3], [3, 5], null, 'swish', LIMITS)).code).toBe('INVALID_ARGUMENT')
  })
})
