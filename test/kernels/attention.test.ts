import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { attention, attentionInfo } from '../../src/kernels/attention.js'
import type { AttentionInfo, AttentionParams, MaskKind } from '../../src/kernels/attention.js'
import { ApiError } from '../../src/errors.js'
import type { DType, FloatArray, Limits } from '../../src/kernels/types.js'
import { expectClose, TOL } from '../helpers/compare.js'

const LIMITS: Limits = { maxElements: 16777216, maxFlops: 2e11 }

interface Case {
  q: number[]
  k: number[]
  v: number[]
  mask?: { shape: number[], kind: MaskKind, data: ArrayLike<number> }
  params?: AttentionParams
  dtype?: DType
}

interface Result { info: AttentionInfo, out: FloatArray, weights: FloatArray }

function size (shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}

function toArray (dtype: DType, data: ArrayLike<number>): FloatArray {
  return dtype === 'float32' ? Float32Array.from(data) : Float64Array.from(data)
}

/** Runs the kernel the way the worker does: info, allocate, compute (always with weights). */
function run (c: Case, q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>): Result {
  const dtype = c.dtype ?? 'float64'
  const info = attentionInfo(c.q, c.k, c.v, c.mask?.shape ?? null, c.mask?.kind ?? null, c.params ?? {}, LIMITS)
  const out = toArray(dtype, new Array<number>(size(info.outShape)).fill(Number.NaN)) // poisoned: every element must be written
  const weights = toArray(dtype, new Array<number>(size(info.weightsShape)).fill(Number.NaN))
  let mask: FloatArray | Uint8Array | null = null
  if (c.mask !== undefined) mask = c.mask.kind === 'bool' ? Uint8Array.from(c.mask.data) : toArray(dtype, c.mask.data)
  attention(out, weights, toArray(dtype, q), toArray(dtype, k), toArray(dtype, v), mask, info)
  return { info, out, weights }
}

/** Flat index into `shape` of the batch multi-index `idx` (right-aligned, dimensions of 1 repeated). */
function batchIndex (idx: number[], shape: number[]): number {
  let flat = 0
  for (let a = 0; a < shape.length; a++) {
    const i = idx[idx.length - shape.length + a]
    flat = flat * shape[a] + (shape[a] === 1 ? 0 : i)
  }
  return flat
}

/**
 * The naive reference: for every output batch, the explicit Lq x Lk scores matrix (removed keys -Infinity),
 * a row-wise softmax (rows with no visible key are zeros), then weights times value, a zero weight
 * contributing nothing. Everything in doubles, from the already-rounded inputs.
 */
function reference (c: Case, q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>): { out: number[], weights: number[], shape: number[] } {
  const Lq = c.q[c.q.length - 2]
  const E = c.q[c.q.length - 1]
  const Lk = c.k[c.k.length - 2]
  const Ev = c.v[c.v.length - 1]
  let mShape = c.mask?.shape ?? [1, 1]
  while (mShape.length < 2) mShape = [1, ...mShape]
  const bq = c.q.slice(0, -2)
  const bk = c.k.slice(0, -2)
  const bv = c.v.slice(0, -2)
  const bm = mShape.slice(0, -2)
  const rank = Math.max(bq.length, bk.length, bv.length, bm.length)
  const batch: number[] = []
  for (let a = 0; a < rank; a++) {
    let d = 1
    for (const s of [bq, bk, bv, bm]) {
      const j = a - (rank - s.length)
      if (j >= 0 && s[j] !== 1) d = s[j]
    }
    batch.push(d)
  }
  const scale = c.params?.scale ?? (E > 0 ? 1 / Math.sqrt(E) : 1)
  const causal = c.params?.causal === true
  const out: number[] = []
  const weights: number[] = []
  const idx = new Array<number>(rank).fill(0)
  for (let b = 0; b < size(batch); b++) {
    let rem = b
    for (let a = rank - 1; a >= 0; a--) {
      idx[a] = rem % batch[a]
      rem = Math.floor(rem / batch[a])
    }
    const qb = batchIndex(idx, bq) * Lq * E
    const kb = batchIndex(idx, bk) * Lk * E
    const vb = batchIndex(idx, bv) * Lk * Ev
    const mb = batchIndex(idx, bm) * mShape[mShape.length - 2] * mShape[mShape.length - 1]
    const scores: number[][] = []
    for (let i = 0; i < Lq; i++) {
      const row: number[] = []
      for (let j = 0; j < Lk; j++) {
        let s = 0
        for (let e = 0; e < E; e++) s += q[qb + i * E + e] * k[kb + j * E + e]
        s *= scale
        let m = 0
        if (c.mask !== undefined) {
          const mi = mShape[mShape.length - 2] === 1 ? 0 : i
          const mj = mShape[mShape.length - 1] === 1 ? 0 : j
          m = c.mask.data[mb + mi * mShape[mShape.length - 1] + mj]
        }
        if (c.mask?.kind === 'additive') s += m
        if (c.mask?.kind === 'bool' && m === 0) s = -Infinity
        if (causal && j > i) s = -Infinity
        row.push(s)
      }
      scores.push(row)
    }
    for (let i = 0; i < Lq; i++) {
      const row = scores[i]
      const max = Math.max(-Infinity, ...row)
      let w: number[]
      if (row.every(s => s === -Infinity)) w = row.map(() => 0)
      else {
        const ex = row.map(s => Math.exp(s - max))
        const sum = ex.reduce((a, x) => a + x, 0)
        w = ex.map(x => x / sum)
      }
      weights.push(...w)
      for (let c2 = 0; c2 < Ev; c2++) {
        let acc = 0
        for (let j = 0; j < Lk; j++) if (w[j] !== 0) acc += w[j] * v[vb + j * Ev + c2]
        out.push(acc)
      }
    }
  }
  return { out, weights, shape: batch }
}

function apiError (fn: () => unknown): ApiError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError)
    return err as ApiError
  }
  throw new Error('expected an ApiError, nothing was thrown')
}

const iota = (n: number, f: (i: number) => number = i => i): number[] => Array.from({ length: n }, (_, i) => f(i))

describe('attention: hand-checked cases', () => {
  it('q=[1,1] k=[2,1] v=[2,1]: two keys with known scores', () => {
    // E = 1, scale 1: scores q·k = 1·1 = 1 and 1·2 = 2.
    // weights e^1/(e^1+e^2) = 1/(1+e) and e/(1+e); output 10·w0 + 20·w1.
    const { out, weights, info } = run({ q: [1, 1], k: [2, 1], v: [2, 1] }, [1], [1, 2], [10, 20])
    const w0 = 1 / (1 + Math.E)
    const w1 = Math.E / (1 + Math.E)
    expect(info.outShape).toEqual([1, 1])
    expect(info.weightsShape).toEqual([1, 2])
    expect(info.scale).toBe(1)
    expect(info.flops).toBe(2 * 1 * 2 * (1 + 1))
    expectClose(weights, [w0, w1], TOL.float64)
    expectClose(out, [10 * w0 + 20 * w1], TOL.float64)
  })

  it('q=[2,2] k=[3,2] v=[3,2]: identical keys give uniform weights, output = mean of values', () => {
    // Every key is [1,-1], so each query row has three equal scores: weights 1/3 each,
    // and the output is the column mean of value: [(1+3+5)/3, (2+4+6)/3] = [3, 4].
    const { out, weights } = run({ q: [2, 2], k: [3, 2], v: [3, 2] }, [0.5, 7, -2, 3], [1, -1, 1, -1, 1, -1], [1, 2, 3, 4, 5, 6])
    expectClose(weights, iota(6, () => 1 / 3), TOL.float64)
    expectClose(out, [3, 4, 3, 4], TOL.float64)
  })

  it('q=[3,1] k=[3,1] v=[3,1] causal', () => {
    // All scores 0 (query is 0). Causal: row 0 sees key 0, row 1 keys 0..1, row 2 keys 0..2.
    // weights [1,0,0], [1/2,1/2,0], [1/3,1/3,1/3]; value [3,6,9] → out [3, 4.5, 6].
    const { out, weights } = run({ q: [3, 1], k: [3, 1], v: [3, 1], params: { causal: true } }, [0, 0, 0], [1, 2, 3], [3, 6, 9])
    expectClose(weights, [1, 0, 0, 0.5, 0.5, 0, 1 / 3, 1 / 3, 1 / 3], TOL.float64)
    expectClose(out, [3, 4.5, 6], TOL.float64)
  })

  it('q=[2,1] k=[4,1] v=[4,1] causal with Lq < Lk (top-left aligned)', () => {
    // Scores 0; row 0 sees key 0 only, row 1 keys 0..1 (keys 2, 3 are never seen).
    const { out, weights } = run({ q: [2, 1], k: [4, 1], v: [4, 1], params: { causal: true } }, [0, 0], [1, 1, 1, 1], [2, 4, 100, 1000])
    expectClose(weights, [1, 0, 0, 0, 0.5, 0.5, 0, 0], TOL.float64)
    expectClose(out, [2, 3], TOL.float64)
  })

  it('q=[1,1] k=[3,1] v=[3,2] mask=[3] bool removes a key', () => {
    // Scores all 0; mask [1,0,1] removes key 1: weights [1/2, 0, 1/2];
    // output = (value row 0 + value row 2) / 2 = ([1,2] + [5,6]) / 2 = [3,4].
    const { out, weights } = run(
      { q: [1, 1], k: [3, 1], v: [3, 2], mask: { shape: [3], kind: 'bool', data: [1, 0, 1] } },
      [0], [1, 2, 3], [1, 2, 100, 200, 5, 6]
    )
    expectClose(weights, [0.5, 0, 0.5], TOL.float64)
    expectClose(out, [3, 4], TOL.float64)
  })

  it('q=[2,3] k=[4,3] v=[4,2] mask=[2,4]: additive -Infinity equals removing the key', () => {
    const q = [0.3, -1, 2, 1, 0.5, -0.25]
    const k = iota(12, i => Math.sin(i + 1))
    const v = iota(8, i => Math.cos(i) * 3)
    const keep = [1, 0, 1, 1, 0, 1, 1, 0]
    const bool = run({ q: [2, 3], k: [4, 3], v: [4, 2], mask: { shape: [2, 4], kind: 'bool', data: keep } }, q, k, v)
    const add = run(
      { q: [2, 3], k: [4, 3], v: [4, 2], mask: { shape: [2, 4], kind: 'additive', data: keep.map(m => m === 1 ? 0 : -Infinity) } },
      q, k, v
    )
    expect(Array.from(add.out)).toEqual(Array.from(bool.out))
    expect(Array.from(add.weights)).toEqual(Array.from(bool.weights))
    expect(bool.weights[1]).toBe(0)
    expect(bool.weights[4]).toBe(0)
  })

  it('q=[1,1] k=[2,1] v=[2,1] mask=[1,2] additive shifts the scores', () => {
    // Scores 0 + mask [0, ln 3]: weights 1/4, 3/4; output 4·1/4 + 8·3/4 = 7.
    const { out, weights } = run(
      { q: [1, 1], k: [2, 1], v: [2, 1], mask: { shape: [1, 2], kind: 'additive', data: [0, Math.log(3)] } },
      [0], [5, 6], [4, 8]
    )
    expectClose(weights, [0.25, 0.75], TOL.float64)
    expectClose(out, [7], TOL.float64)
  })

  it('q=[2,1] k=[2,1] v=[2,3] mask=[2,2] bool: a fully masked row gives zeros, never NaN', () => {
    // Row 0 may see both keys (scores 0 → uniform), row 1 none → zeros in out and weights.
    const { out, weights } = run(
      { q: [2, 1], k: [2, 1], v: [2, 3], mask: { shape: [2, 2], kind: 'bool', data: [1, 1, 0, 0] } },
      [0, 0], [1, 2], [1, 2, 3, 5, 6, 7]
    )
    expect(Array.from(weights)).toEqual([0.5, 0.5, 0, 0])
    expect(Array.from(out)).toEqual([3, 4, 5, 0, 0, 0])
  })

  it('q=[2,1] k=[2,1] v=[2,1] mask=[2,2] additive all -Infinity, causal: rows attending to nothing are zeros', () => {
    // Row 0: causal removes key 1, mask -Infinity removes key 0 → nothing → zeros.
    // Row 1: key 0 is -Infinity, key 1 visible → weight 1 on key 1 → out = 9.
    const { out, weights } = run(
      { q: [2, 1], k: [2, 1], v: [2, 1], params: { causal: true }, mask: { shape: [2, 2], kind: 'additive', data: [-Infinity, 0, -Infinity, 0] } },
      [1, 1], [1, 1], [4, 9]
    )
    expect(Array.from(weights)).toEqual([0, 0, 0, 1])
    expect(Array.from(out)).toEqual([0, 9])
  })

  it('q=[1,1] k=[2,1] v=[2,1] scale override', () => {
    // q·k = 0 and 1; scale ln 3 → scores 0, ln 3 → weights 1/4, 3/4; output 0·1/4 + 4·3/4 = 3.
    const { out, weights, info } = run({ q: [1, 1], k: [2, 1], v: [2, 1], params: { scale: Math.log(3) } }, [1], [0, 1], [0, 4])
    expect(info.scale).toBe(Math.log(3))
    expectClose(weights, [0.25, 0.75], TOL.float64)
    expectClose(out, [3], TOL.float64)
  })

  it('q=[1,4] k=[2,4] v=[2,1]: default scale is 1/sqrt(E)', () => {
    // E = 4 → scale 1/2; q·k = 0 and 4·1 = 4 → scores 0, 2 → weights 1/(1+e²), e²/(1+e²).
    const { out, info } = run({ q: [1, 4], k: [2, 4], v: [2, 1] }, [1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1], [0, 1])
    expect(info.scale).toBe(0.5)
    expectClose(out, [Math.exp(2) / (1 + Math.exp(2))], TOL.float64)
  })

  it('q=[1,1] k=[2,1] v=[2,1]: huge scores stay stable (row max subtracted)', () => {
    // Scores 1000 and 1001: exp overflows without the max shift; weights 1/(1+e), e/(1+e).
    const { out, weights } = run({ q: [1, 1], k: [2, 1], v: [2, 1] }, [1], [1000, 1001], [0, 1])
    expectClose(weights, [1 / (1 + Math.E), Math.E / (1 + Math.E)], TOL.float64)
    expectClose(out, [Math.E / (1 + Math.E)], TOL.float64)
  })

  it('q=[2,0] k=[3,0] v=[3,2]: E = 0 gives scores 0, uniform weights', () => {
    const { out, weights, info } = run({ q: [2, 0], k: [3, 0], v: [3, 2] }, [], [], [1, 2, 3, 4, 5, 6])
    expect(info.scale).toBe(1)
    expectClose(weights, iota(6, () => 1 / 3), TOL.float64)
    expectClose(out, [3, 4, 3, 4], TOL.float64)
  })

  it('q=[2,0] k=[3,0] v=[3,1] causal: E = 0 with causal', () => {
    const { out } = run({ q: [2, 0], k: [3, 0], v: [3, 1], params: { causal: true } }, [], [], [2, 4, 6])
    expectClose(out, [2, 3], TOL.float64)
  })

  it('q=[2,3] k=[0,3] v=[0,2]: Lk = 0 gives zeros', () => {
    const { out, weights, info } = run({ q: [2, 3], k: [0, 3], v: [0, 2] }, [1, 2, 3, 4, 5, 6], [], [])
    expect(info.outShape).toEqual([2, 2])
    expect(weights.length).toBe(0)
    expect(Array.from(out)).toEqual([0, 0, 0, 0])
  })

  it('q=[2,0,3] k=[2,4,3] v=[2,4,5]: Lq = 0 gives an empty output', () => {
    const { out, weights, info } = run({ q: [2, 0, 3], k: [2, 4, 3], v: [2, 4, 5] }, [], iota(24), iota(40))
    expect(info.outShape).toEqual([2, 0, 5])
    expect(info.weightsShape).toEqual([2, 0, 4])
    expect(info.flops).toBe(0)
    expect(out.length).toBe(0)
    expect(weights.length).toBe(0)
  })

  it('q=[2,3] k=[4,3] v=[4,0]: Ev = 0 gives an empty output, weights still computed', () => {
    const { out, weights, info } = run({ q: [2, 3], k: [4, 3], v: [4, 0] }, iota(6), iota(12, () => 1), [])
    expect(info.outShape).toEqual([2, 0])
    expect(out.length).toBe(0)
    expectClose(weights, iota(8, () => 0.25), TOL.float64)
  })

  it('q=[0,2,3] k=[1,4,3] v=[4,2]: B = 0 gives an empty output', () => {
    const { out, info } = run({ q: [0, 2, 3], k: [1, 4, 3], v: [4, 2] }, [], iota(12), iota(8))
    expect(info.B).toBe(0)
    expect(info.outShape).toEqual([0, 2, 2])
    expect(out.length).toBe(0)
  })

  it('q=[100000,100000,0,4] k=[5,4] v=[5,2]: a huge batch of empty matrices allocates nothing', () => {
    const info = attentionInfo([100000, 100000, 0, 4], [5, 4], [5, 2], null, null, {}, LIMITS)
    expect(info.outShape).toEqual([100000, 100000, 0, 2])
    expect(info.B).toBe(1e10)
    expect(info.qOffsets.length).toBe(0)
    attention(new Float64Array(0), new Float64Array(0), new Float64Array(0), new Float64Array(20), new Float64Array(10), null, info)
  })

  it('q=[2,1,1,1] k=[3,2,1] v=[1,2,1] mask=[2,1,1,2]: batch dims broadcast, the mask adds its own', () => {
    // Batch shape: broadcast of [2,1], [3], [1] and the mask's [2,1] → [2,3].
    // Scores are 0 (query 0); mask batch 0 keeps both keys, mask batch 1 only key 1.
    // value rows [1], [3]: batch row 0 → out 2, batch row 1 → out 3.
    const { out, weights, info } = run(
      { q: [2, 1, 1, 1], k: [3, 2, 1], v: [1, 2, 1], mask: { shape: [2, 1, 1, 2], kind: 'bool', data: [1, 1, 0, 1] } },
      [0, 0], iota(6), [1, 3]
    )
    expect(info.batchShape).toEqual([2, 3])
    expect(info.B).toBe(6)
    expect(info.outShape).toEqual([2, 3, 1, 1])
    expect(info.weightsShape).toEqual([2, 3, 1, 2])
    expect(Array.from(info.maskOffsets ?? [])).toEqual([0, 0, 0, 2, 2, 2])
    expect(info.maskRowStride).toBe(0)
    expect(info.maskColStride).toBe(1)
    expect(Array.from(out)).toEqual([2, 2, 2, 3, 3, 3])
    expect(Array.from(weights)).toEqual([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0, 1, 0, 1, 0, 1])
  })

  it('q=[2,3,4] k=[2,5,4] v=[2,5,6] causal float32: agrees with the reference', () => {
    const c: Case = { q: [2, 3, 4], k: [2, 5, 4], v: [2, 5, 6], params: { causal: true, returnWeights: true }, dtype: 'float32' }
    const q = Float32Array.from(iota(24, i => Math.sin(i * 0.7)))
    const k = Float32Array.from(iota(40, i => Math.cos(i * 0.3)))
    const v = Float32Array.from(iota(60, i => (i % 7) - 3))
    const { out, weights, info } = run(c, q, k, v)
    expect(out).toBeInstanceOf(Float32Array)
    expect(info.returnWeights).toBe(true)
    const ref = reference(c, q, k, v)
    expectClose(out, ref.out, TOL.float32)
    expectClose(weights, ref.weights, TOL.float32)
  })

  it('q=[2,1] k=[2,1] v=[2,1]: a NaN score makes its row NaN, other rows are unaffected', () => {
    const { out, weights } = run({ q: [2, 1], k: [2, 1], v: [2, 1] }, [Number.NaN, 0], [1, 2], [3, 5])
    expect(Array.from(out)).toEqual([Number.NaN, 4])
    expect(Array.from(weights)).toEqual([Number.NaN, Number.NaN, 0.5, 0.5])
  })

  it('q=[1,1] k=[2,1] v=[2,1] mask=[2] bool: NaN in a removed key or its value does not leak', () => {
    const { out, weights } = run(
      { q: [1, 1], k: [2, 1], v: [2, 1], mask: { shape: [2], kind: 'bool', data: [1, 0] } },
      [1], [1, Number.NaN], [3, Number.NaN]
    )
    expect(Array.from(out)).toEqual([3])
    expect(Array.from(weights)).toEqual([1, 0])
  })

  it('q=[1,1] k=[2,1] v=[2,1]: a +Infinity score makes the row NaN, as torch does', () => {
    const { out } = run({ q: [1, 1], k: [2, 1], v: [2, 1] }, [Infinity], [1, 2], [3, 5])
    expect(Number.isNaN(out[0])).toBe(true)
  })

  it('q=[3,2] k=[4,2] v=[4,1] without weights: out is the same', () => {
    const q = iota(6, i => i * 0.1)
    const k = iota(8, i => 1 - i * 0.2)
    const v = iota(4)
    const c: Case = { q: [3, 2], k: [4, 2], v: [4, 1], mask: { shape: [], kind: 'additive', data: [0.5] } }
    const withWeights = run(c, q, k, v)
    const info = attentionInfo(c.q, c.k, c.v, [], 'additive', {}, LIMITS)
    expect(info.returnWeights).toBe(false)
    expect(info.maskRowStride).toBe(0)
    expect(info.maskColStride).toBe(0)
    const out = new Float64Array(3)
    attention(out, null, Float64Array.from(q), Float64Array.from(k), Float64Array.from(v), Float64Array.from([0.5]), info)
    expect(Array.from(out)).toEqual(Array.from(withWeights.out))
  })
})

// ---- property tests ----

/** mulberry32: a small seeded PRNG, so that data follow from one shrinkable seed. */
function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** An operand's own batch shape derived from the full one: some leading dims dropped, some dims set to 1. */
const operandBatch = (batch: number[]): fc.Arbitrary<number[]> =>
  fc.tuple(fc.nat({ max: batch.length }), fc.array(fc.boolean(), { minLength: batch.length, maxLength: batch.length }))
    .map(([drop, ones]) => batch.map((d, i) => ones[i] ? 1 : d).slice(drop))

const caseArb: fc.Arbitrary<{ c: Case, seed: number }> = fc.record({
  batch: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 3 }),
  Lq: fc.integer({ min: 0, max: 4 }),
  Lk: fc.integer({ min: 0, max: 5 }),
  E: fc.integer({ min: 0, max: 4 }),
  Ev: fc.integer({ min: 0, max: 3 })
}).chain(({ batch, Lq, Lk, E, Ev }) => fc.record({
  bq: operandBatch(batch),
  bk: operandBatch(batch),
  bv: operandBatch(batch),
  bm: operandBatch(batch),
  maskKind: fc.constantFrom<MaskKind | null>(null, 'bool', 'additive'),
  mLq: fc.boolean(),
  mLk: fc.boolean(),
  trimMask: fc.nat({ max: 2 }),
  causal: fc.boolean(),
  scale: fc.option(fc.double({ min: -2, max: 2, noNaN: true }), { nil: undefined }),
  dtype: fc.constantFrom<DType>('float32', 'float64'),
  seed: fc.integer()
}).map(r => {
  const c: Case = {
    q: [...r.bq, Lq, E],
    k: [...r.bk, Lk, E],
    v: [...r.bv, Lk, Ev],
    params: { causal: r.causal, scale: r.scale, returnWeights: true },
    dtype: r.dtype
  }
  if (r.maskKind !== null) {
    let shape = [...r.bm, r.mLq ? Lq : 1, r.mLk ? Lk : 1]
    // A mask may have fewer dims than 2: drop leading 1s (never a real dim) when asked.
    for (let t = 0; t < r.trimMask && shape.length > 0 && shape[0] === 1; t++) shape = shape.slice(1)
    const random = rng(r.seed ^ 0x5bd1e995)
    const data = iota(size(shape), () => {
      const x = random()
      if (r.maskKind === 'bool') return x < 0.7 ? 1 : 0
      return x < 0.2 ? -Infinity : (x - 0.5) * 4
    })
    c.mask = { shape, kind: r.maskKind, data }
  }
  return { c, seed: r.seed }
}))

function dataFor (c: Case, seed: number): { q: FloatArray, k: FloatArray, v: FloatArray } {
  const random = rng(seed)
  const fill = (shape: number[]): FloatArray => toArray(c.dtype ?? 'float64', iota(size(shape), () => (random() - 0.5) * 6))
  return { q: fill(c.q), k: fill(c.k), v: fill(c.v) }
}

describe('attention: properties', () => {
  it('random q/k/v/mask shapes with broadcasting, causal, scale, float32/float64: weights rows sum to 1 (or 0) and are >= 0', () => {
    fc.assert(fc.property(caseArb, ({ c, seed }) => {
      const { q, k, v } = dataFor(c, seed)
      const { weights, info } = run(c, q, k, v)
      const tol = c.dtype === 'float32' ? 1e-5 : 1e-12
      for (let r = 0; r < weights.length / Math.max(info.Lk, 1); r++) {
        let sum = 0
        for (let j = 0; j < info.Lk; j++) {
          const w = weights[r * info.Lk + j]
          expect(w).toBeGreaterThanOrEqual(0)
          sum += w
        }
        if (sum !== 0) expect(Math.abs(sum - 1)).toBeLessThanOrEqual(tol)
      }
    }), { numRuns: 200 })
  })

  it('random q/k/v/mask shapes with broadcasting, causal, scale, float32/float64: equals the naive reference', () => {
    fc.assert(fc.property(caseArb, ({ c, seed }) => {
      const { q, k, v } = dataFor(c, seed)
      const { out, weights, info } = run(c, q, k, v)
      const ref = reference(c, q, k, v)
      expect(info.batchShape).toEqual(ref.shape)
      expect(info.outShape).toEqual([...ref.shape, info.Lq, info.Ev])
      expect(out.length).toBe(ref.out.length)
      const tol = TOL[c.dtype ?? 'float64']
      expectClose(out, ref.out, tol, 'out')
      expectClose(weights, ref.weights, tol, 'weights')
    }), { numRuns: 200 })
  })
})

// ---- errors ----

describe('attention: errors', () => {
  const info = (q: number[], k: number[], v: number[], mask: number[] | null = null, params: AttentionParams = {}, limits = LIMITS): AttentionInfo =>
    attentionInfo(q, k, v, mask, mask === null ? null : 'bool', params, limits)

  it.each([
    ['query', [3], [2, 3], [2, 3]],
    ['key', [2, 3], [3], [3, 3]],
    ['value', [2, 3], [2, 3], []]
  ])('%s of rank < 2 is SHAPE_MISMATCH', (name, q, k, v) => {
    const err = apiError(() => info(q, k, v))
    expect(err.code).toBe('SHAPE_MISMATCH')
    expect(err.statusCode).toBe(400)
    expect(err.message).toContain(name)
  })

  it('q=[2,3,4] k=[2,5,3] v=[2,5,6]: E mismatch names query and key', () => {
    const err = apiError(() => info([2, 3, 4], [2, 5, 3], [2, 5, 6]))
    expect(err.code).toBe('SHAPE_MISMATCH')
    for (const s of ['query', 'key', '[2,3,4]', '[2,5,3]', '(E)']) expect(err.message).toContain(s)
  })

  it('q=[2,3,4] k=[2,5,4] v=[2,6,6]: Lk mismatch names key and value', () => {
    const err = apiError(() => info([2, 3, 4], [2, 5, 4], [2, 6, 6]))
    expect(err.code).toBe('SHAPE_MISMATCH')
    for (const s of ['key', 'value', '[2,5,4]', '[2,6,6]', '(Lk)']) expect(err.message).toContain(s)
  })

  it('q=[2,3,4] k=[3,5,4] v=[3,5,6]: batch dims that do not broadcast', () => {
    const err = apiError(() => info([2, 3, 4], [3, 5, 4], [3, 5, 6]))
    expect(err.code).toBe('SHAPE_MISMATCH')
    for (const s of ['query', 'key', '[2,3,4]', '[3,5,4]']) expect(err.message).toContain(s)
  })

  it('q=[2,3,4] k=[2,5,4] v=[4,5,6]: value batch dims that do not broadcast', () => {
    const err = apiError(() => info([2, 3, 4], [2, 5, 4], [4, 5, 6]))
    expect(err.code).toBe('SHAPE_MISMATCH')
    for (const s of ['query', 'value', '[2,3,4]', '[4,5,6]']) expect(err.message).toContain(s)
  })

  it.each([
    [[3, 4], '-1'],
    [[2, 5], '-2'],
    [[4], '-1']
  ])('q=[3,4] k=[5,4] v=[5,6] mask=%j: mask last dims not 1/Lq and 1/Lk', (mask, dim) => {
    const err = apiError(() => info([3, 4], [5, 4], [5, 6], mask))
    expect(err.code).toBe('SHAPE_MISMATCH')
    for (const s of ['mask', `[${mask.join(',')}]`, 'query', '[3,4]', 'key', '[5,4]', `dimension ${dim}`]) expect(err.message).toContain(s)
  })

  it('q=[2,3,4] k=[2,5,4] v=[2,5,6] mask=[3,3,5]: mask batch dims that do not broadcast', () => {
    const err = apiError(() => info([2, 3, 4], [2, 5, 4], [2, 5, 6], [3, 3, 5]))
    expect(err.code).toBe('SHAPE_MISMATCH')
    for (const s of ['query', 'mask', '[2,3,4]', '[3,3,5]']) expect(err.message).toContain(s)
  })

  it.each([Number.NaN, Infinity, -Infinity])('q=[3,4] k=[5,4] v=[5,6] scale=%s is INVALID_ARGUMENT', scale => {
    const err = apiError(() => info([3, 4], [5, 4], [5, 6], null, { scale }))
    expect(err.code).toBe('INVALID_ARGUMENT')
    expect(err.message).toContain('scale')
  })

  it('q=[8192,1] k=[4096,1] v=[4096,1]: the scores [8192,4096] are TOO_LARGE even without weights', () => {
    // Operands and output are small; the Lq·Lk scores intermediate has 33554432 elements.
    const err = apiError(() => info([8192, 1], [4096, 1], [4096, 1], null, { returnWeights: false }))
    expect(err.code).toBe('TOO_LARGE')
    expect(err.statusCode).toBe(413)
    expect(err.message).toContain('scores')
  })

  it('q=[1e9,1e9] k=[1e9,1e9] v=[1e9,1e9]: huge operands are TOO_LARGE from shapes alone', () => {
    const err = apiError(() => info([1e9, 1e9], [1e9, 1e9], [1e9, 1e9]))
    expect(err.code).toBe('TOO_LARGE')
    expect(err.message).toContain('query')
  })

  it('q=[4096,1] k=[1,1] v=[1,8192]: an output over the limit is TOO_LARGE', () => {
    const err = apiError(() => info([4096, 1], [1, 1], [1, 8192]))
    expect(err.code).toBe('TOO_LARGE')
    expect(err.message).toContain('output')
  })

  it('q=[5000,4] k=[5000,4] v=[5000,6] mask=[5000,5000]: a mask over the limit is TOO_LARGE', () => {
    const err = apiError(() => info([5000, 4], [5000, 4], [5000, 6], [5000, 5000]))
    expect(err.code).toBe('TOO_LARGE')
    expect(err.message).toContain('mask')
  })

  it('q=[4096,4096] k=[4096,4096] v=[4096,4096]: work over MAX_FLOPS is TOO_LARGE', () => {
    // 2·4096·4096·(4096+4096) ≈ 2.75e11 > 2e11, while every tensor has 16777216 elements (allowed).
    const err = apiError(() => info([4096, 4096], [4096, 4096], [4096, 4096]))
    expect(err.code).toBe('TOO_LARGE')
    expect(err.message).toContain('MAX_FLOPS')
  })

  it('shape errors come before size errors', () => {
    const err = apiError(() => info([1e9, 1e9], [1e9, 3], [1e9, 1e9]))
    expect(err.code).toBe('SHAPE_MISMATCH')
  })
})
