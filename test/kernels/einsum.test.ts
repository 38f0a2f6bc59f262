/**
 * einsum: the parser's answers and errors, the plans it makes, and random equations over random
 * shapes against the plain reference of test/helpers/einsum.ts (a loop over the whole index space).
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ApiError } from '../../src/errors.js'
import { einsum, einsumBackwardInfo, einsumInfo, type GemmStep, parseEinsum } from '../../src/kernels/einsum.js'
import { allocate, type DType, type FloatArray, type Limits } from '../../src/kernels/types.js'
import { expectClose, TOL } from '../helpers/compare.js'
import { einsumReference, labelSizes, randomCase, rng } from '../helpers/einsum.js'

const LIMITS: Limits = { maxElements: 16777216, maxFlops: 2e11 }

function values (dtype: DType, n: number, seed: number): FloatArray {
  const r = rng(seed)
  const out = allocate(dtype, n)
  for (let i = 0; i < n; i++) out[i] = r() * 4 - 2
  return out
}

const count = (shape: number[]): number => shape.reduce((x, y) => x * y, 1)

function run (equation: string, shapes: number[][], dtype: DType = 'float64', seed = 1, limits = LIMITS) {
  const spec = parseEinsum(equation, shapes)
  const info = einsumInfo(spec, limits)
  const data = shapes.map((s, i) => values(dtype, count(s), seed + i))
  const out = einsum(allocate(dtype, info.outElements), data, info.programs, dtype)
  return { info, data, out }
}

function refuse (equation: string, shapes: number[][], limits = LIMITS): ApiError {
  try {
    einsumInfo(parseEinsum(equation, shapes), limits)
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError)
    return err as ApiError
  }
  throw new Error(`${equation} was accepted`)
}

describe('einsum equations by hand', () => {
  const ar = (n: number, from = 1) => Float64Array.from({ length: n }, (_, i) => i + from)
  const exact = (equation: string, shapes: number[][], inputs: Float64Array[], want: number[], wantShape: number[]) => {
    const info = einsumInfo(parseEinsum(equation, shapes), LIMITS)
    expect(info.outShape).toEqual(wantShape)
    expect(Array.from(einsum(new Float64Array(info.outElements), inputs, info.programs, 'float64'))).toEqual(want)
  }

  it('ii [3,3] is the trace, ii->i the diagonal, ij->ji the transpose, iii->i [2,2,2] the main diagonal', () => {
    exact('ii', [[3, 3]], [ar(9)], [15], [])
    exact('ii->i', [[3, 3]], [ar(9)], [1, 5, 9], [3])
    exact('ij->ji', [[2, 3]], [ar(6)], [1, 4, 2, 5, 3, 6], [3, 2])
    exact('iii->i', [[2, 2, 2]], [ar(8)], [1, 8], [2])
    exact('ij', [[2, 3]], [ar(6)], [1, 2, 3, 4, 5, 6], [2, 3])
    exact('ji', [[2, 3]], [ar(6)], [1, 4, 2, 5, 3, 6], [3, 2])
  })

  it('i,j->ij [2]x[3] outer; i,i [3] dot; ij,jk [2,3]x[3,2] matmul; bi,ij,bj->b [2,3] bilinear', () => {
    exact('i,j->ij', [[2], [3]], [ar(2), ar(3, 10)], [10, 11, 12, 20, 22, 24], [2, 3])
    exact('i,i', [[3], [3]], [ar(3), ar(3, 4)], [1 * 4 + 2 * 5 + 3 * 6], [])
    exact('ij,jk', [[2, 3], [3, 2]], [ar(6), ar(6)], [22, 28, 49, 64], [2, 2])
    // x_b·W·y_b with W the identity is the row dot products
    exact('bi,ij,bj->b', [[2, 3], [3, 3], [2, 3]], [ar(6), Float64Array.of(1, 0, 0, 0, 1, 0, 0, 0, 1), ar(6, 7)], [1 * 7 + 2 * 8 + 3 * 9, 4 * 10 + 5 * 11 + 6 * 12], [2])
  })

  it('rank 0: "" and ",->" of scalars, "i,->i" scales, "->" of a scalar', () => {
    exact('', [[]], [Float64Array.of(5)], [5], [])
    exact(',->', [[], []], [Float64Array.of(5), Float64Array.of(-2)], [-10], [])
    exact('i,->i', [[3], []], [ar(3), Float64Array.of(2)], [2, 4, 6], [3])
    exact('->', [[]], [Float64Array.of(7)], [7], [])
  })

  it('implicit output: the subscripts used once, upper case before lower case; the ellipsis first', () => {
    expect(parseEinsum('Ba,ab', [[2, 3], [3, 4]]).outShape).toEqual([2, 4]) // 'Bb'
    expect(parseEinsum('ba,aB', [[2, 3], [3, 5]]).outShape).toEqual([5, 2]) // 'Bb'
    expect(parseEinsum('a...b,...b', [[2, 3, 4, 5], [3, 1, 5]]).outShape).toEqual([3, 4, 2])
    expect(parseEinsum('ii', [[3, 3]]).outShape).toEqual([])
    expect(parseEinsum(' i j , j k ', [[2, 3], [3, 4]]).outShape).toEqual([2, 4])
  })

  it('a subscript of size 1 broadcasts: ij,jk [2,1]x[3,4] sums k\'s rows; the ellipsis broadcasts [2,3]·[3]', () => {
    exact('ij,jk', [[2, 1], [3, 4]], [ar(2), ar(12)], [15, 18, 21, 24, 30, 36, 42, 48], [2, 4])
    exact('...,...', [[2, 3], [3]], [ar(6), ar(3)], [1, 4, 9, 4, 10, 18], [2, 3])
    exact('ii,i->', [[1, 1], [3]], [Float64Array.of(2), ar(3)], [12], [])
  })

  it('empty dimensions give the empty or zero result: ij->[0,3] sums to 0, ij,jk [2,0]x[0,3] is zeros', () => {
    exact('ij->', [[0, 3]], [new Float64Array(0)], [0], [])
    exact('ij,jk', [[2, 0], [0, 3]], [new Float64Array(0), new Float64Array(0)], [0, 0, 0, 0, 0, 0], [2, 3])
    exact('ij,jk', [[0, 2], [2, 3]], [new Float64Array(0), ar(6)], [], [0, 3])
    // NaN in the other operand does not reach a sum of no terms
    exact('i,ij->j', [[0], [0, 2]], [new Float64Array(0), new Float64Array(0)], [0, 0], [2])
  })
})

describe('einsum plans', () => {
  const gemms = (equation: string, shapes: number[][]) =>
    einsumInfo(parseEinsum(equation, shapes), LIMITS).programs[0].steps
  it('bhqd,bhkd->bhqk [8,4,128,64]: one batched product, key read transposed, no copy', () => {
    const steps = gemms('bhqd,bhkd->bhqk', [[8, 4, 128, 64], [8, 4, 128, 64]])
    expect(steps).toHaveLength(1)
    expect(steps[0]).toMatchObject({ kind: 'gemm', batches: 32, m: 128, k: 64, n: 128, transA: false, transB: true, dst: -1 })
  })

  it('ij,jk->ik and bij,bjk->bik: one product straight into the result; ik,kj->ji swaps the operands instead of transposing', () => {
    expect(gemms('ij,jk->ik', [[5, 6], [6, 7]])).toMatchObject([{ kind: 'gemm', batches: 1, m: 5, k: 6, n: 7, transA: false, transB: false, dst: -1 }])
    expect(gemms('bij,bjk->bik', [[3, 5, 6], [3, 6, 7]])).toMatchObject([{ kind: 'gemm', batches: 3, m: 5, k: 6, n: 7, dst: -1 }])
    expect(gemms('ik,kj->ji', [[5, 6], [6, 7]])).toMatchObject([{ kind: 'gemm', m: 7, k: 6, n: 5, transA: true, transB: true, dst: -1 }])
  })

  it('ij,jk,k->i [200,300]x[300,400]x[400]: the matrix-vector product first (greedy), never the 200x400 product', () => {
    const steps = gemms('ij,jk,k->i', [[200, 300], [300, 400], [400]]) as GemmStep[]
    expect(steps.map(s => [s.m, s.k, s.n])).toEqual([[300, 400, 1], [200, 300, 1]])
  })

  it('the work of the plan is what MAX_FLOPS is checked against, and an over-large result or plan is refused before anything runs', () => {
    const info = einsumInfo(parseEinsum('ij,jk,kl->il', [[10, 20], [20, 30], [30, 40]]), LIMITS)
    // greedy: (jk,kl) -> jl = 20x40 (cost 800-600-1200), then ij,jl
    expect(info.flops).toBe(2 * 20 * 30 * 40 + 2 * 10 * 20 * 40)
    const big = refuse('i,j,k->ijk', [[300], [300], [300]], { maxElements: 1e6, maxFlops: 1e12 })
    expect(big.code).toBe('TOO_LARGE')
    expect(big.message).toMatch(/the result of shape \[300,300,300\].*MAX_ELEMENTS/)
    const slow = refuse('ij,jk->ik', [[1000, 1000], [1000, 1000]], { maxElements: 1e7, maxFlops: 1e9 })
    expect(slow.code).toBe('TOO_LARGE')
    expect(slow.message).toMatch(/MAX_FLOPS/)
  })

  it('an intermediate over MAX_ELEMENTS is refused, naming its subscripts and shape, though the result fits', () => {
    // ab,bc,ca-> [100,100]x3: whichever pair comes first, its product is [100,100]
    const ok = einsumInfo(parseEinsum('ab,bc,ca->', [[100, 100], [100, 100], [100, 100]]), { maxElements: 20000, maxFlops: 1e12 })
    expect(ok.outElements).toBe(1)
    const tight = refuse('ab,bc,ca->', [[100, 100], [100, 100], [100, 100]], { maxElements: 5000, maxFlops: 1e12 })
    expect(tight.code).toBe('TOO_LARGE')
    expect(tight.message).toMatch(/intermediate result \(subscripts "ac", shape \[100,100\]\)/)
  })
})

describe('einsum errors', () => {
  const cases: Array<[string, number[][], string, RegExp]> = [
    ['ij,jk->ikk', [[2, 2], [2, 2]], 'INVALID_ARGUMENT', /position 9: subscript 'k' is repeated in the output/],
    ['ij,jk->ic', [[2, 2], [2, 2]], 'INVALID_ARGUMENT', /position 8: subscript 'c' of the output appears in no operand/],
    ['ij->i->j', [[2, 2]], 'INVALID_ARGUMENT', /position 5: '->' appears a second time/],
    ['i-j', [[2, 2]], 'INVALID_ARGUMENT', /position 1: a '-' that does not begin '->'/],
    ['i>j', [[2, 2]], 'INVALID_ARGUMENT', /position 1: a '>' without/],
    ['i..', [[2, 2]], 'INVALID_ARGUMENT', /position 1: a '.' that is not part of an ellipsis/],
    ['i....', [[2, 2]], 'INVALID_ARGUMENT', /position 4: a '.' that is not part of an ellipsis/],
    ['...i...', [[2, 2]], 'INVALID_ARGUMENT', /position 4: a second ellipsis '...' in operand 0's subscripts/],
    ['iα', [[2, 2]], 'INVALID_ARGUMENT', /position 1: "α" is not a subscript/],
    ['i2', [[2, 2]], 'INVALID_ARGUMENT', /position 1: "2" is not a subscript/],
    ['ij,j->i,j', [[2, 2], [2]], 'INVALID_ARGUMENT', /position 7: a ',' in the output/],
    ['ij', [[2, 2], [2]], 'INVALID_ARGUMENT', /subscripts for 1 operand, but 2 operands were given/],
    ['ij,jk,kl', [[2, 2], [2, 2]], 'INVALID_ARGUMENT', /subscripts for 3 operands, but 2 operands were given/],
    ['...i->i', [[2, 2]], 'INVALID_ARGUMENT', /'\.\.\.' cover 1 dimension, but the output has no '\.\.\.'/],
    ['ij,jk', [[2, 3], [4, 5]], 'SHAPE_MISMATCH', /subscript 'j' has size 3 in operand 0 \[2,3\] and size 4 in operand 1 \[4,5\]/],
    ['ii', [[2, 3]], 'SHAPE_MISMATCH', /subscript 'i' is repeated in operand 0 \[2,3\] with sizes 2 and 3/],
    ['ijk', [[2, 3]], 'SHAPE_MISMATCH', /operand 0 has shape \[2,3\] \(rank 2\), but its subscripts "ijk" name 3 dimensions/],
    ['i', [[2, 3]], 'SHAPE_MISMATCH', /operand 0 has shape \[2,3\] \(rank 2\), but its subscripts "i" name 1 dimension$/],
    ['ij...k', [[2, 3]], 'SHAPE_MISMATCH', /"ij\.\.\.k" name at least 3 dimensions/],
    ['...i,...i', [[2, 3], [4, 3]], 'SHAPE_MISMATCH', /subscript \.\.\. dimension 0 has size 2 in operand 0 \[2,3\] and size 4 in operand 1 \[4,3\]/]
  ]
  for (const [equation, shapes, code, message] of cases) {
    it(`${JSON.stringify(equation)} ${JSON.stringify(shapes)}: ${code}`, () => {
      const err = refuse(equation, shapes)
      expect(err.code).toBe(code)
      expect(err.message).toMatch(message)
      expect(err.message).toContain(JSON.stringify(equation))
    })
  }
})

describe('einsum against the index-space reference', () => {
  for (const dtype of ['float64', 'float32'] as const) {
    it(`random equations over random shapes, ${dtype}`, () => {
      fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
        const c = randomCase(seed)
        const { info, data, out } = run(c.equation, c.shapes, dtype, seed)
        const want = einsumReference(c, data)
        const sizes = labelSizes(c)
        expect(info.outShape, c.equation).toEqual(c.output.map(l => sizes.get(l)))
        expectClose(out, want, { rtol: TOL[dtype].rtol, atol: TOL[dtype].rtol * 16 * Math.max(1, ...Array.from(want, Math.abs)) }, `${c.equation} ${JSON.stringify(c.shapes)} (seed ${seed})`)
      }), { numRuns: 400 })
    })
  }

  it('up to 8 operands at once', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
      const c = randomCase(seed, 8, 20000)
      const { data, out } = run(c.equation, c.shapes, 'float64', seed)
      expectClose(out, einsumReference(c, data), { rtol: 1e-10, atol: 1e-9 * Math.max(1, ...Array.from(einsumReference(c, data), Math.abs)) }, `${c.equation} ${JSON.stringify(c.shapes)} (seed ${seed})`)
    }), { numRuns: 150 })
  })
})

describe('einsum gradients by hand', () => {
  it('ij,jk->ik: dA = dC·Bᵀ, dB = Aᵀ·dC; ii->i spreads onto the diagonal; i,i with a [1] operand sums its gradient', () => {
    const grad = (equation: string, shapes: number[][], operands: Float64Array[], gradOut: Float64Array, wrt: number[]) => {
      const spec = parseEinsum(equation, shapes)
      const info = einsumBackwardInfo(spec, wrt, false, LIMITS)
      const total = info.grads.reduce((n, g) => n + g.length, 0)
      return Array.from(einsum(new Float64Array(total), [...operands, gradOut], info.programs, 'float64'))
    }
    // A = [[1,2],[3,4]], B = [[5,6],[7,8]], dC = [[1,0],[0,1]]
    expect(grad('ij,jk->ik', [[2, 2], [2, 2]], [Float64Array.of(1, 2, 3, 4), Float64Array.of(5, 6, 7, 8)], Float64Array.of(1, 0, 0, 1), [0, 1]))
      .toEqual([5, 7, 6, 8, 1, 3, 2, 4])
    expect(grad('ii->i', [[2, 2]], [Float64Array.of(1, 2, 3, 4)], Float64Array.of(10, 20), [0])).toEqual([10, 0, 0, 20])
    expect(grad('ii', [[2, 2]], [Float64Array.of(1, 2, 3, 4)], Float64Array.of(3), [0])).toEqual([3, 0, 0, 3])
    expect(grad('i,i', [[3], [1]], [Float64Array.of(1, 2, 3), Float64Array.of(2)], Float64Array.of(1), [0, 1])).toEqual([2, 2, 2, 6])
    // a label only in the operand differentiated: the gradient is constant along it
    expect(grad('ij->i', [[2, 3]], [Float64Array.of(1, 2, 3, 4, 5, 6)], Float64Array.of(1, -1), [0])).toEqual([1, 1, 1, -1, -1, -1])
  })
})

describe('einsum gradients against finite differences (float64)', () => {
  /** Every gradient of L = Σ g·einsum(operands), against (L(x + h·e_j) − L(x − h·e_j)) / 2h for each element j. */
  function check (equation: string, shapes: number[][], seed: number): void {
    const spec = parseEinsum(equation, shapes)
    const fwd = einsumInfo(spec, LIMITS)
    const ops = shapes.map((s, i) => values('float64', count(s), seed + i) as Float64Array)
    const g = values('float64', fwd.outElements, seed + 50)
    const loss = (xs: FloatArray[]): number => {
      const y = einsum(new Float64Array(fwd.outElements), xs, fwd.programs, 'float64')
      let s = 0
      for (let i = 0; i < y.length; i++) s += g[i] * y[i]
      return s
    }
    const wrt = shapes.map((_, i) => i)
    const info = einsumBackwardInfo(spec, wrt, true, LIMITS)
    const total = info.programs.reduce((n, p) => n + p.outLength, 0)
    const all = einsum(new Float64Array(total), [...ops, g], info.programs, 'float64')
    let offset = 0
    for (const { operand, length } of info.grads) {
      const got = all.subarray(offset, offset + length)
      offset += length
      const want = new Float64Array(length)
      const h = 0.5
      for (let j = 0; j < length; j++) {
        const x = ops[operand]
        const keep = x[j]
        x[j] = keep + h
        const up = loss(ops)
        x[j] = keep - h
        const down = loss(ops)
        x[j] = keep
        want[j] = (up - down) / (2 * h)
      }
      expectClose(got, want, { rtol: 1e-9, atol: 1e-9 * Math.max(1, ...Array.from(want, Math.abs)) }, `${equation} ${JSON.stringify(shapes)} operand ${operand} (seed ${seed})`)
    }
    // and the result that came with them
    expectClose(all.subarray(offset), einsum(new Float64Array(fwd.outElements), ops, fwd.programs, 'float64'), { rtol: 0, atol: 0 }, 'result')
  }

  it('matmul, attention scores, trace, diagonal, broadcast, ellipsis and chains by hand', () => {
    check('ij,jk->ik', [[3, 4], [4, 2]], 1)
    check('bhqd,bhkd->bhqk', [[2, 2, 3, 4], [2, 2, 5, 4]], 2)
    check('ii', [[4, 4]], 3)
    check('iij->ji', [[3, 3, 2]], 4)
    check('ij,jk', [[3, 1], [4, 2]], 5)
    check('...ij,...jk->...ik', [[2, 1, 3, 4], [5, 4, 2]], 6)
    check('bi,ij,bj->b', [[3, 4], [4, 4], [3, 4]], 7)
    check('a...b,...b->...a', [[2, 3, 4, 5], [3, 1, 5]], 8)
    check('ij->i', [[2, 3]], 9)
    check(',i->i', [[], [3]], 10)
  })

  it('random equations over random shapes', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
      const c = randomCase(seed, 4, 600)
      check(c.equation, c.shapes, seed)
    }), { numRuns: 150 })
  })
})
