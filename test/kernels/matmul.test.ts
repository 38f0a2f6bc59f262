import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ApiError } from '../../src/errors.js'
import { matmul, matmulInfo } from '../../src/kernels/matmul.js'
import { dot, dotInfo } from '../../src/kernels/dot.js'
import { allocate, type DType, type Limits } from '../../src/kernels/types.js'
import { expectClose, TOL } from '../helpers/compare.js'

const LIMITS: Limits = { maxElements: 16777216, maxFlops: 2e11 }

function run (aShape: number[], a: number[], bShape: number[], b: number[], dtype: DType = 'float64') {
  const info = matmulInfo(aShape, bShape, LIMITS)
  const A = dtype === 'float32' ? Float32Array.from(a) : Float64Array.from(a)
  const B = dtype === 'float32' ? Float32Array.from(b) : Float64Array.from(b)
  return { shape: info.outShape, data: Array.from(matmul(allocate(dtype, info.outElements), A, B, info)) }
}

function errorOf (fn: () => unknown): ApiError {
  try { fn() } catch (e) { return e as ApiError }
  throw new Error('expected an error')
}

describe('matmul by hand', () => {
  it('a=[2,2] b=[2,2]: [[1,2],[3,4]]·[[5,6],[7,8]] = [[19,22],[43,50]]', () => {
    expect(run([2, 2], [1, 2, 3, 4], [2, 2], [5, 6, 7, 8])).toEqual({ shape: [2, 2], data: [19, 22, 43, 50] })
  })

  it('a=[2,1,2] b=[2,2,1]: a batch of two (n,m,p)·(n,p,q)', () => {
    // [[1,2]]·[[1],[1]] = 3 ; [[3,4]]·[[2],[0]] = 6
    expect(run([2, 1, 2], [1, 2, 3, 4], [2, 2, 1], [1, 1, 2, 0])).toEqual({ shape: [2, 1, 1], data: [3, 6] })
  })

  it('a=[2] b=[2]: vectors give a rank-0 result', () => {
    expect(run([2], [1, 2], [2], [3, 4])).toEqual({ shape: [], data: [11] })
  })

  it('a=[2] b=[2,3] and a=[2,3] b=[3]: 1-D promotion drops the added dimension', () => {
    expect(run([2], [1, 2], [2, 3], [1, 2, 3, 4, 5, 6])).toEqual({ shape: [3], data: [9, 12, 15] })
    expect(run([2, 3], [1, 2, 3, 4, 5, 6], [3], [1, 0, -1])).toEqual({ shape: [2], data: [-2, -2] })
  })

  it('a=[1,2,2] b=[3,2,1]: batch dimensions broadcast', () => {
    const r = run([1, 2, 2], [1, 0, 0, 1], [3, 2, 1], [1, 2, 3, 4, 5, 6])
    expect(r).toEqual({ shape: [3, 2, 1], data: [1, 2, 3, 4, 5, 6] })
  })

  it('a=[2,0] b=[0,3]: k = 0 gives zeros; a=[0,2] b=[2,3] gives an empty result', () => {
    expect(run([2, 0], [], [0, 3], [])).toEqual({ shape: [2, 3], data: [0, 0, 0, 0, 0, 0] })
    expect(run([0, 2], [], [2, 3], [1, 2, 3, 4, 5, 6])).toEqual({ shape: [0, 3], data: [] })
  })

  it('NaN and Infinity propagate as in IEEE arithmetic', () => {
    const r = run([1, 2], [Infinity, 1], [2, 2], [1, 0, 0, 1])
    expect(r.data[0]).toBe(Infinity)
    expect(r.data[1]).toBeNaN() // Infinity·0 = NaN
  })
})

describe('matmul shape errors', () => {
  it('rank 0 is refused', () => {
    expect(errorOf(() => matmulInfo([], [2], LIMITS)).code).toBe('SHAPE_MISMATCH')
  })
  it('a=[2,3] b=[4,5]: names both shapes and the dimensions', () => {
    const e = errorOf(() => matmulInfo([2, 3], [4, 5], LIMITS))
    expect(e.code).toBe('SHAPE_MISMATCH')
    expect(e.message).toContain('a [2,3]')
    expect(e.message).toContain('b [4,5]')
    expect(e.message).toContain('dimension 1 (3)')
  })
  it('a=[2,2,3] b=[3,3,4]: batch dimensions that do not broadcast', () => {
    const e = errorOf(() => matmulInfo([2, 2, 3], [3, 3, 4], LIMITS))
    expect(e.code).toBe('SHAPE_MISMATCH')
    expect(e.message).toContain('batch')
  })
  it('a=[5000,5000] over MAX_ELEMENTS, a=[4000,4000] b=[4000,4000] over MAX_FLOPS: refused from shapes', () => {
    expect(errorOf(() => matmulInfo([5000, 5000], [5000, 5000], LIMITS)).code).toBe('TOO_LARGE')
    // with the default element limit a matmul stays under 2·E^1.5 ≈ 1.4e11 flops, so use a lower flop limit
    const e = errorOf(() => matmulInfo([4000, 4000], [4000, 4000], { maxElements: 16777216, maxFlops: 1e11 }))
    expect(e.code).toBe('TOO_LARGE')
    expect(e.message).toContain('MAX_FLOPS')
  })
})

/** The definition: out[batch, i, j] = sum_p a[batch', i, p] b[batch'', p, j], with explicit broadcasting. */
function naiveMatmul (aShape: number[], a: Float64Array, bShape: number[], b: Float64Array): { shape: number[], data: number[] } {
  const a2 = aShape.length === 1 ? [1, aShape[0]] : aShape
  const b2 = bShape.length === 1 ? [bShape[0], 1] : bShape
  const [m, k] = a2.slice(-2)
  const n = b2[b2.length - 1]
  const ab = a2.slice(0, -2)
  const bb = b2.slice(0, -2)
  const rank = Math.max(ab.length, bb.length)
  const pa = [...Array(rank - ab.length).fill(1), ...ab]
  const pb = [...Array(rank - bb.length).fill(1), ...bb]
  const batch = pa.map((d, i) => Math.max(d, pb[i]))
  const total = batch.reduce((p, d) => p * d, 1)
  const data: number[] = []
  for (let t = 0; t < total; t++) {
    // unravel t into batch indices, then ravel into a's and b's batch (index 0 on broadcast dims)
    let rem = t
    const idx = new Array<number>(rank)
    for (let i = rank - 1; i >= 0; i--) { idx[i] = rem % batch[i]; rem = Math.floor(rem / batch[i]) }
    let ao = 0
    let bo = 0
    for (let i = 0; i < rank; i++) {
      ao = ao * pa[i] + (pa[i] === 1 ? 0 : idx[i])
      bo = bo * pb[i] + (pb[i] === 1 ? 0 : idx[i])
    }
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0
        for (let p = 0; p < k; p++) s += a[ao * m * k + i * k + p] * b[bo * k * n + p * n + j]
        data.push(s)
      }
    }
  }
  const shape = [...batch]
  if (aShape.length > 1) shape.push(m)
  if (bShape.length > 1) shape.push(n)
  return { shape, data }
}

describe('matmul property: equals the naive triple loop', () => {
  const dim = fc.integer({ min: 0, max: 5 })
  const batchDims = fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 3 })
  it('over random shapes with broadcast batch dimensions and 1-D operands', () => {
    fc.assert(fc.property(
      dim, dim, dim, batchDims, fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }), fc.integer({ min: 0, max: 3 }),
      fc.constantFrom<DType>('float32', 'float64'), fc.integer(),
      (m, k, n, batch, ones, form, dtype, seed) => {
        // b's batch: a suffix of a's, with some dims set to 1; form picks 1-D operands
        const aBatch = batch
        const bBatch = batch.slice(batch.length > 0 ? seed % (batch.length + 1) : 0).map((d, i) => (ones[i] ? 1 : d))
        const aShape = form === 1 || form === 3 ? [k] : [...aBatch, m, k]
        const bShape = form === 2 || form === 3 ? [k] : [...bBatch, k, n]
        const count = (s: number[]) => s.reduce((p, d) => p * d, 1)
        let x = seed
        const rand = () => { x = (x * 1103515245 + 12345) & 0x7fffffff; return (x / 0x7fffffff) * 4 - 2 }
        const a = Float64Array.from({ length: count(aShape) }, rand)
        const b = Float64Array.from({ length: count(bShape) }, rand)
        const A = dtype === 'float32' ? Float32Array.from(a) : a
        const B = dtype === 'float32' ? Float32Array.from(b) : b
        const info = matmulInfo(aShape, bShape, LIMITS)
        const got = matmul(allocate(dtype, info.outElements), A, B, info)
        const want = naiveMatmul(aShape, Float64Array.from(A), bShape, Float64Array.from(B))
        expect(info.outShape).toEqual(want.shape)
        expectClose(got, want.data, TOL[dtype])
      }
    ), { numRuns: 300 })
  })
})

describe('dot', () => {
  const runDot = (shape: number[], a: number[], b: number[]) => {
    const info = dotInfo(shape, shape, LIMITS)
    return dot(new Float64Array(1), Float64Array.from(a), Float64Array.from(b), info)[0]
  }
  it('a=[3] b=[3]: [1,2,3]·[4,5,6] = 32', () => expect(runDot([3], [1, 2, 3], [4, 5, 6])).toBe(32))
  it('a=[2,2,3] b=[2,2,3]: an RGB patch with a kernel is the Frobenius product', () => {
    const patch = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    const kernel = [1, 0, -1, 1, 0, -1, 1, 0, -1, 1, 0, -1] // sum of (r - b) over 4 pixels = -2*4
    expect(runDot([2, 2, 3], patch, kernel)).toBe(-8)
  })
  it('a=[] b=[]: rank 0; a=[0] b=[0]: empty gives 0', () => {
    expect(runDot([], [3], [4])).toBe(12)
    expect(runDot([0], [], [])).toBe(0)
  })
  it('a=[2,3] b=[3,2]: different shapes are a SHAPE_MISMATCH naming both', () => {
    const e = errorOf(() => dotInfo([2, 3], [3, 2], LIMITS))
    expect(e.code).toBe('SHAPE_MISMATCH')
    expect(e.message).toContain('a [2,3]')
    expect(e.message).toContain('b [3,2]')
    expect(e.message).toContain('dimension 0')
  })
})
