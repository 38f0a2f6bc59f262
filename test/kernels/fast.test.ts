/**
 * The fast (WebAssembly SIMD) kernels against the plain TypeScript reference kernels of
 * src/kernels/reference/, over random shapes: edge sizes (0, 1, odd, primes, sizes that are not
 * multiples of the register tiles or cache blocks), broadcast batches, both dtypes, and NaN/±∞
 * in the data. Values must agree within the suite's tolerances; non-finite results exactly.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { attention, attentionInfo, type MaskKind } from '../../src/kernels/attention.js'
import { conv2d, conv2dInfo, type Conv2dParams } from '../../src/kernels/conv2d.js'
import { dot, dotInfo } from '../../src/kernels/dot.js'
import { binary, binaryF32, binaryInfo, runLength } from '../../src/kernels/binary.js'
import { layerNorm, layerNormF32, layerNormInfo } from '../../src/kernels/layer-norm.js'
import { linear, linearInfo } from '../../src/kernels/linear.js'
import { outputIndex, reduce, reduceInfo, reduceValues, REDUCE_OPS } from '../../src/kernels/reduce.js'
import { gemm, matmul, matmulInfo } from '../../src/kernels/matmul.js'
import { attentionReference } from '../../src/kernels/reference/attention.js'
import { conv2dReference } from '../../src/kernels/reference/conv2d.js'
import { dotReference } from '../../src/kernels/reference/dot.js'
import { linearReference } from '../../src/kernels/reference/linear.js'
import { gemmReference, matmulReference } from '../../src/kernels/reference/matmul.js'
import { allocate, type DType, type FloatArray, type Limits } from '../../src/kernels/types.js'
import { hasUnaryF32, unary, unaryF32, UNARY_OPS, unaryInfo } from '../../src/kernels/unary.js'
import { decodeBase64 } from '../../src/kernels/wasm/runtime.js'
import { expectClose, TOL, type Tolerance } from '../helpers/compare.js'

const LIMITS: Limits = { maxElements: 16777216, maxFlops: 2e11 }

/** mulberry32 */
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

/** n values uniform in [-range, range], with a few NaN/±Infinity when `special` (1 in `every`). */
function data (dtype: DType, n: number, seed: number, special = false, range = 2, every = 40): FloatArray {
  const r = rng(seed)
  const out = allocate(dtype, n)
  for (let i = 0; i < n; i++) {
    const u = r()
    out[i] = (r() * 2 - 1) * range
    if (special && u < 1 / every) out[i] = [NaN, Infinity, -Infinity][Math.floor(u * every * 3) % 3]
  }
  return out
}

const abs = (x: FloatArray): Float64Array => Float64Array.from(x, Math.abs)

/**
 * The suite's tolerance with the absolute floor taken from the magnitudes summed (Σ|a|·|b| per
 * output, as computed by the caller) instead of from the result: float32 accumulation errors scale
 * with those, and an output that cancels to near 0 is only that accurate.
 */
function sumTol (dtype: DType, magnitudes: ArrayLike<number>): Tolerance {
  let m = 0
  for (let i = 0; i < magnitudes.length; i++) if (Number.isFinite(magnitudes[i]) && magnitudes[i] > m) m = magnitudes[i]
  return { rtol: TOL[dtype].rtol, atol: TOL[dtype].rtol * m }
}

const dtypeArb = fc.constantFrom<DType>('float32', 'float64')
/** Sizes around the tile (4, 8) and block (128, 256) edges, primes, 0 and 1. */
const edgeDim = fc.oneof(
  fc.integer({ min: 0, max: 13 }),
  fc.constantFrom(15, 16, 17, 23, 31, 32, 33, 37, 63, 64, 65, 127, 129)
)

describe('fast gemm / matmul = reference', () => {
  it('2-D products over edge sizes, both dtypes, with NaN and infinities', () => {
    fc.assert(fc.property(edgeDim, edgeDim, edgeDim, dtypeArb, fc.boolean(), fc.integer(), (m, k, n, dtype, special, seed) => {
      const info = matmulInfo([m, k], [k, n], LIMITS)
      const a = data(dtype, m * k, seed, special)
      const b = data(dtype, k * n, seed + 1, special)
      const got = matmul(allocate(dtype, info.outElements), a, b, info)
      const want = matmulReference(allocate(dtype, info.outElements), a, b, info)
      const mag = matmulReference(new Float64Array(info.outElements), abs(a), abs(b), info)
      expectClose(got, want, sumTol(dtype, mag), `m=${m} k=${k} n=${n} ${dtype}`)
    }), { numRuns: 150 })
  })

  it('blocked sizes: k past the 256 block, m past the 64 block, n past the 1024 block', () => {
    for (const [m, k, n] of [[5, 300, 7], [131, 9, 12], [67, 5, 1029], [3, 5, 2053], [130, 260, 20]]) {
      for (const dtype of ['float32', 'float64'] as const) {
        const info = matmulInfo([m, k], [k, n], LIMITS)
        const a = data(dtype, m * k, m + k)
        const b = data(dtype, k * n, n)
        const got = matmul(allocate(dtype, info.outElements), a, b, info)
        const want = matmulReference(allocate(dtype, info.outElements), a, b, info)
        const mag = matmulReference(new Float64Array(info.outElements), abs(a), abs(b), info)
        expectClose(got, want, sumTol(dtype, mag), `m=${m} k=${k} n=${n} ${dtype}`)
      }
    }
  })

  it('batched with broadcast batch dimensions and 1-D operands', () => {
    const batch = fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 3 })
    fc.assert(fc.property(batch, fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }), fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 11 }), fc.integer({ min: 0, max: 11 }), fc.integer({ min: 0, max: 11 }),
      dtypeArb, fc.boolean(), fc.nat(), (batchShape, ones, form, m, k, n, dtype, special, seed) => {
        const bBatch = batchShape.slice(seed % (batchShape.length + 1)).map((d, i) => (ones[i] ? 1 : d))
        const aShape = form === 1 || form === 3 ? [k] : [...batchShape, m, k]
        const bShape = form === 2 || form === 3 ? [k] : [...bBatch, k, n]
        const count = (s: number[]) => s.reduce((p, d) => p * d, 1)
        const a = data(dtype, count(aShape), seed, special)
        const b = data(dtype, count(bShape), seed ^ 0x55, special)
        const info = matmulInfo(aShape, bShape, LIMITS)
        const got = matmul(allocate(dtype, info.outElements), a, b, info)
        const want = matmulReference(allocate(dtype, info.outElements), a, b, info)
        const mag = matmulReference(new Float64Array(info.outElements), abs(a), abs(b), info)
        expectClose(got, want, sumTol(dtype, mag), `${JSON.stringify(aShape)}·${JSON.stringify(bShape)} ${dtype}`)
      }), { numRuns: 150 })
  })

  it('gemm on offset blocks writes only its own output block', () => {
    fc.assert(fc.property(edgeDim, edgeDim, edgeDim, dtypeArb, fc.nat({ max: 20 }), fc.nat({ max: 20 }), fc.nat({ max: 20 }), fc.integer(),
      (m, k, n, dtype, ao, bo, oo, seed) => {
        const a = data(dtype, ao + m * k + 3, seed)
        const b = data(dtype, bo + k * n + 5, seed + 7)
        const got = data(dtype, oo + m * n + 4, seed + 9)
        const wantTyped = got.slice()
        gemm(got, oo, a, ao, b, bo, m, k, n)
        gemmReference(wantTyped, oo, a, ao, b, bo, m, k, n)
        const mag = new Float64Array(oo + m * n)
        gemmReference(mag, oo, abs(a), ao, abs(b), bo, m, k, n)
        expectClose(got, wantTyped, sumTol(dtype, mag), `m=${m} k=${k} n=${n} offsets ${ao},${bo},${oo}`)
        for (const i of [...Array.from({ length: oo }, (_, j) => j), ...Array.from({ length: 4 }, (_, j) => oo + m * n + j)]) {
          expect(Object.is(got[i], wantTyped[i])).toBe(true)
        }
      }), { numRuns: 100 })
  })

  it('Infinity·0 = NaN, NaN propagates, -Infinity + Infinity = NaN (float32 and float64)', () => {
    for (const dtype of ['float32', 'float64'] as const) {
      const info = matmulInfo([2, 3], [3, 9], LIMITS)
      const a = allocate(dtype, 6)
      a.set([Infinity, 1, 2, 1, NaN, -1])
      const b = allocate(dtype, 27)
      for (let i = 0; i < 27; i++) b[i] = (i % 5) - 2 // zeros in column 2 and 7 of row 0
      b[9] = -Infinity // row 1, column 0
      const got = matmul(allocate(dtype, 18), a, b, info)
      const want = matmulReference(allocate(dtype, 18), a, b, info)
      expectClose(got, want, TOL[dtype])
      expect(got.some(Number.isNaN)).toBe(true)
    }
  })
})

describe('fast linear = reference', () => {
  it('random shapes, bias, every activation, both dtypes', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 2 }), edgeDim, edgeDim, fc.boolean(),
      fc.constantFrom('none', 'relu', 'sigmoid', 'tanh', 'gelu', 'softmax'), dtypeArb, fc.integer(),
      (lead, inF, outF, withBias, activation, dtype, seed) => {
        const inShape = [...lead, inF]
        const info = linearInfo(inShape, [inF, outF], withBias ? [outF] : null, activation, LIMITS)
        const x = data(dtype, info.rows * inF, seed)
        const w = data(dtype, inF * outF, seed + 1)
        const bias = withBias ? data(dtype, outF, seed + 2) : null
        const got = linear(allocate(dtype, info.outElements), x, w, bias, info)
        const want = linearReference(allocate(dtype, info.outElements), x, w, bias, info)
        const mag = linearReference(new Float64Array(info.outElements), abs(x), abs(w), bias === null ? null : abs(bias), { ...info, activation: 'none' })
        expectClose(got, want, sumTol(dtype, mag), `${JSON.stringify(inShape)} -> ${outF} ${activation} ${dtype}`)
      }), { numRuns: 100 })
  })
})

describe('fast dot = reference', () => {
  it('lengths 0..300 and a long one, both dtypes, with NaN and infinities', () => {
    fc.assert(fc.property(fc.oneof(fc.integer({ min: 0, max: 300 }), fc.constant(100003)), dtypeArb, fc.boolean(), fc.integer(), (n, dtype, special, seed) => {
      const info = dotInfo([n], [n], LIMITS)
      const a = data(dtype, n, seed, special, 2, 500)
      const b = data(dtype, n, seed + 3, special, 2, 500)
      const got = dot(allocate(dtype, 1), a, b, info)
      const want = dotReference(allocate(dtype, 1), a, b, info)
      // a long sum cancels: compare against the sum of |a·b|
      let mag = 0
      for (let i = 0; i < n; i++) mag += Math.abs(a[i] * b[i])
      expectClose(got, want, { rtol: TOL[dtype].rtol, atol: TOL[dtype].rtol * mag }, `n=${n} ${dtype}`)
    }), { numRuns: 100 })
  })
})

describe('fast conv2d = reference', () => {
  const arb = fc.record({
    N: fc.integer({ min: 0, max: 2 }),
    unbatched: fc.boolean(),
    groups: fc.integer({ min: 1, max: 3 }),
    Cg: fc.integer({ min: 0, max: 5 }),
    Kg: fc.integer({ min: 0, max: 9 }),
    H: fc.integer({ min: 0, max: 21 }),
    W: fc.integer({ min: 0, max: 21 }),
    kh: fc.integer({ min: 1, max: 4 }),
    kw: fc.integer({ min: 1, max: 4 }),
    sh: fc.integer({ min: 1, max: 3 }),
    sw: fc.integer({ min: 1, max: 3 }),
    dh: fc.integer({ min: 1, max: 2 }),
    dw: fc.integer({ min: 1, max: 2 }),
    padding: fc.oneof(fc.constantFrom<'valid' | 'same'>('valid', 'same'), fc.integer({ min: 0, max: 3 }),
      fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }))),
    layout: fc.constantFrom<'NCHW' | 'NHWC'>('NCHW', 'NHWC'),
    bias: fc.boolean(),
    dtype: dtypeArb,
    special: fc.integer({ min: 0, max: 4 }),
    seed: fc.integer()
  })

  it('random shapes and options, both layouts and dtypes, NaN/∞ in input or weights (also over padding)', () => {
    fc.assert(fc.property(arb, (a) => {
      const nchw = a.layout === 'NCHW'
      const C = a.groups * a.Cg
      const K = a.groups * a.Kg
      const same = a.padding === 'same'
      const xFull = nchw ? [a.N, C, a.H, a.W] : [a.N, a.H, a.W, C]
      const xShape = a.unbatched && a.N === 1 ? xFull.slice(1) : xFull
      const fShape = nchw ? [K, a.Cg, a.kh, a.kw] : [a.kh, a.kw, a.Cg, K]
      const params: Conv2dParams = {
        stride: same ? 1 : [a.sh, a.sw],
        dilation: [a.dh, a.dw],
        padding: Array.isArray(a.padding) ? [...a.padding] : a.padding,
        groups: a.groups,
        layout: a.layout
      }
      let info
      try {
        info = conv2dInfo(xShape, fShape, a.bias ? [K] : null, params, LIMITS)
      } catch {
        return // kernel larger than the padded input: covered by conv2d.test.ts
      }
      const x = data(a.dtype, a.N * C * a.H * a.W, a.seed, a.special === 1)
      const f = data(a.dtype, K * a.Cg * a.kh * a.kw, a.seed + 1, a.special === 2, 2, 10)
      const b = a.bias ? data(a.dtype, K, a.seed + 2) : null
      const got = conv2d(allocate(a.dtype, info.outElements), x, f, b, info)
      const want = conv2dReference(allocate(a.dtype, info.outElements), x, f, b, info)
      const mag = conv2dReference(new Float64Array(info.outElements), abs(x), abs(f), b === null ? null : abs(b), info)
      expectClose(got, want, sumTol(a.dtype, mag), JSON.stringify({ xShape, fShape, params, dtype: a.dtype }))
    }), { numRuns: 300 })
  })

  it('an image large enough for the interior fast paths: 2x5x37x41, 7 filters 3x3, pad 1, stride 1 and 2, both layouts', () => {
    for (const layout of ['NCHW', 'NHWC'] as const) {
      for (const stride of [1, 2]) {
        for (const dtype of ['float32', 'float64'] as const) {
          const nchw = layout === 'NCHW'
          const info = conv2dInfo(nchw ? [2, 5, 37, 41] : [2, 37, 41, 5], nchw ? [7, 5, 3, 3] : [3, 3, 5, 7], [7],
            { padding: 1, stride, layout }, LIMITS)
          const x = data(dtype, 2 * 5 * 37 * 41, 11)
          const f = data(dtype, 7 * 5 * 9, 12)
          const b = data(dtype, 7, 13)
          const got = conv2d(allocate(dtype, info.outElements), x, f, b, info)
          const want = conv2dReference(allocate(dtype, info.outElements), x, f, b, info)
          const mag = conv2dReference(new Float64Array(info.outElements), abs(x), abs(f), abs(b), info)
          expectClose(got, want, sumTol(dtype, mag), `${layout} stride ${stride} ${dtype}`)
        }
      }
    }
  })
})

describe('fast attention = reference', () => {
  const arb = fc.record({
    batch: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
    qOnes: fc.array(fc.boolean(), { minLength: 2, maxLength: 2 }),
    kvOnes: fc.array(fc.boolean(), { minLength: 2, maxLength: 2 }),
    Lq: edgeDim,
    Lk: edgeDim,
    E: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.constantFrom(16, 33, 64)),
    Ev: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.constantFrom(16, 33)),
    maskKind: fc.constantFrom<MaskKind | null>(null, 'bool', 'additive'),
    mLq: fc.boolean(),
    mLk: fc.boolean(),
    mBatch: fc.boolean(),
    causal: fc.boolean(),
    scale: fc.option(fc.double({ min: -2, max: 2, noNaN: true }), { nil: undefined }),
    returnWeights: fc.boolean(),
    special: fc.integer({ min: 0, max: 5 }),
    dtype: dtypeArb,
    seed: fc.integer()
  })

  it('random shapes, broadcast batches, masks, causal, scale, both dtypes, NaN/∞ in query, key or value', () => {
    fc.assert(fc.property(arb, (a) => {
      const qBatch = a.batch.map((d, i) => a.qOnes[i] ? 1 : d)
      const kvBatch = a.batch.map((d, i) => a.kvOnes[i] ? 1 : d).slice(a.seed & 1)
      const qShape = [...qBatch, a.Lq, a.E]
      const kShape = [...kvBatch, a.Lk, a.E]
      const vShape = [...kvBatch, a.Lk, a.Ev]
      const mShape = a.maskKind === null ? null : [...(a.mBatch ? a.batch : []), a.mLq ? a.Lq : 1, a.mLk ? a.Lk : 1]
      const info = attentionInfo(qShape, kShape, vShape, mShape, a.maskKind,
        { causal: a.causal, scale: a.scale, returnWeights: a.returnWeights }, LIMITS)
      const count = (s: number[]) => s.reduce((p, d) => p * d, 1)
      // small values keep every weight above float32's underflow, where the two kernels may
      // legitimately differ on whether a non-finite value row behind a ~0 weight leaks
      const range = 1 / Math.sqrt(Math.max(1, a.E))
      const q = data(a.dtype, count(qShape), a.seed, a.special === 1, 1, 60)
      const k = data(a.dtype, count(kShape), a.seed + 1, a.special === 2, range, 60)
      const v = data(a.dtype, count(vShape), a.seed + 2, a.special === 3, 2, 60)
      let mask: FloatArray | Uint8Array | null = null
      if (mShape !== null) {
        const r = rng(a.seed + 3)
        const n = count(mShape)
        if (a.maskKind === 'bool') mask = Uint8Array.from({ length: n }, () => r() < 0.75 ? 1 : 0)
        else {
          mask = allocate(a.dtype, n)
          for (let i = 0; i < n; i++) { const u = r(); mask[i] = u < 0.2 ? -Infinity : (u - 0.5) * 4 }
        }
      }
      const outN = count(info.outShape)
      const wN = count(info.weightsShape)
      const got = allocate(a.dtype, outN).fill(NaN)
      const want = allocate(a.dtype, outN).fill(NaN)
      const gotW = a.returnWeights ? allocate(a.dtype, wN).fill(NaN) : null
      const wantW = a.returnWeights ? allocate(a.dtype, wN).fill(NaN) : null
      attention(got, gotW, q, k, v, mask, info)
      attentionReference(want, wantW, q, k, v, mask, info)
      const label = JSON.stringify({ qShape, kShape, vShape, mShape, maskKind: a.maskKind, causal: a.causal, scale: a.scale, dtype: a.dtype, special: a.special })
      expectClose(got, want, TOL[a.dtype], `out ${label}`)
      if (gotW !== null && wantW !== null) expectClose(gotW, wantW, TOL[a.dtype], `weights ${label}`)
    }), { numRuns: 250 })
  })

  it('8 heads of 128x64 (the benchmark shape), causal, float32 and float64', () => {
    for (const dtype of ['float32', 'float64'] as const) {
      const shape = [8, 128, 64]
      const info = attentionInfo(shape, shape, shape, null, null, { causal: true, returnWeights: true }, LIMITS)
      const q = data(dtype, 8 * 128 * 64, 1)
      const k = data(dtype, 8 * 128 * 64, 2)
      const v = data(dtype, 8 * 128 * 64, 3)
      const got = allocate(dtype, 8 * 128 * 64)
      const want = allocate(dtype, 8 * 128 * 64)
      const gotW = allocate(dtype, 8 * 128 * 128)
      const wantW = allocate(dtype, 8 * 128 * 128)
      attention(got, gotW, q, k, v, null, info)
      attentionReference(want, wantW, q, k, v, null, info)
      expectClose(got, want, TOL[dtype], dtype)
      expectClose(gotW, wantW, TOL[dtype], dtype)
    }
  })
})

/** The index of the first element where got and want differ as float32 bits (any NaN equal to any NaN), or -1. */
function firstDifference (got: Float32Array, want: Float32Array): number {
  const [g, w] = [new Uint32Array(got.buffer, got.byteOffset, got.length), new Uint32Array(want.buffer, want.byteOffset, want.length)]
  return want.findIndex((v, i) => Number.isNaN(v) ? !Number.isNaN(got[i]) : g[i] !== w[i])
}

/** float32 data with the values that round differently: NaN, ±∞, ±0, subnormals, the largest finite, tiny and huge magnitudes. */
function hardData (n: number, seed: number): Float32Array {
  const x = data('float32', n, seed, true) as Float32Array
  const special = [0, -0, 1e-40, -1e-40, 1.4e-45, 3.4028234663852886e38, -3.4028234663852886e38, 1e-30, 1e30, 1, -1, 3]
  for (let i = 0; i < n; i += 7) x[i] = special[(i / 7) % special.length]
  return x
}

describe('fast elementwise float32 = the loops, bit for bit', () => {
  it('unary: the kernel\'s functions over lengths around its 4-lane tail and its 32768-element chunk', () => {
    const ops = UNARY_OPS.filter(hasUnaryF32)
    expect(ops).toEqual(['neg', 'abs', 'sqrt', 'square', 'reciprocal', 'relu'])
    for (const n of [0, 1, 3, 4, 5, 31, 32767, 32768, 32769, 100003]) {
      const x = hardData(n, 700 + n)
      for (const op of ops) {
        const info = unaryInfo(op, [n], LIMITS)
        const want = unary(new Float32Array(n), x, info) as Float32Array
        const got = unaryF32(new Float32Array(n).fill(7), x, info)
        const at = firstDifference(got, want)
        expect(at, `${op} of ${n}: element ${at}, ${x[at]}, gives ${got[at]}, the loop ${want[at]}`).toBe(-1)
      }
    }
  })

  it('binary: add, sub, mul, div, same shapes, a scalar on either side, broadcast rows and columns, runs past the chunk', () => {
    const shapes: Array<[number[], number[]]> = [
      [[0], [0]], [[5], [5]], [[70001], [70001]], [[1], [33]], [[33], [1]], [[], [40000]], [[4, 300], [300]], [[300], [4, 300]],
      [[3, 1, 257], [1, 5, 257]], [[2, 40000], [1, 40000]], [[3, 4, 1], [3, 4, 1]], [[1000, 33], [33]]
    ]
    let seed = 800
    for (const [aShape, bShape] of shapes) {
      const a = hardData(aShape.reduce((p, d) => p * d, 1), seed++)
      const b = hardData(bShape.reduce((p, d) => p * d, 1), seed++)
      for (const op of ['add', 'sub', 'mul', 'div'] as const) {
        const info = binaryInfo(op, aShape, bShape, LIMITS)
        const want = binary(new Float32Array(info.outElements), a, b, info) as Float32Array
        const got = binaryF32(new Float32Array(info.outElements).fill(7), a, b, info)
        const at = firstDifference(got, want)
        expect(at, `${op} of [${aShape}] and [${bShape}] (runs of ${runLength(info)}): element ${at} is ${got[at]}, the loop's ${want[at]}`).toBe(-1)
      }
    }
  })
})

describe('fast row and column sums (reduce) = the loops, bit for bit', () => {
  it('sum, mean, var, std, norm over rows of 0..70001 float32 values and over columns 1..40000 wide (in pieces past the 32768-element chunk), in doubles as from float64 data', () => {
    const shapes: Array<[number[], number]> = [
      [[4, 0], 1], [[1], 0], [[3, 5], 1], [[7, 3], -1], [[2, 32768], 1], [[3, 32769], 1], [[70001], 0], [[5, 1000, 7], 2], [[40, 1025], 1],
      [[0, 5], 0], [[40, 7], 0], [[3, 33, 5], 1], [[2, 9000, 6], 1], [[3, 40000], 0], [[4, 1, 2], 0], [[700, 7], 0], [[5, 300, 17], 1]
    ]
    let seed = 900
    for (const [shape, axis] of shapes) {
      for (const special of [false, true]) {
        const x = data('float32', shape.reduce((p, d) => p * d, 1), seed++, special, 3) as Float32Array
        for (const offset of [0, 100]) {
          for (let i = 0; i < x.length; i++) x[i] += offset
          for (const op of ['sum', 'mean', 'var', 'std', 'norm'] as const) {
            const info = reduceInfo(op, shape, axis, false, 1, LIMITS)
            expect(info.blocks, 'reduces blocks').not.toBeNull()
            // (float64 data takes the loops; float32 the kernel; both sum in doubles)
            const want = reduce(new Float64Array(info.outElements), Float64Array.from(x), info) as Float64Array
            const got = reduce(new Float64Array(info.outElements).fill(7), x, info) as Float64Array
            const at = want.findIndex((v, i) => !Object.is(v, got[i]) && !(Number.isNaN(v) && Number.isNaN(got[i])))
            expect(at, `${op} of [${shape}] over axis ${axis}: output ${at} is ${got[at]}, the loops' ${want[at]}`).toBe(-1)
          }
        }
      }
    }
  })
})

describe('fast row and column max and min (reduce) = the loops, bit for bit', () => {
  it('over rows of 1..70001 float32 values and columns 1..40000 wide, with NaN, ±∞ and signed zeros: IEEE maximum and minimum (+0 over −0 for max, −0 for min), in any order', () => {
    const shapes: Array<[number[], number]> = [
      [[4, 1], 1], [[3, 5], 1], [[7, 3], -1], [[2, 32768], 1], [[3, 32769], 1], [[70001], 0], [[40, 1025], 1], [[6, 17], 1],
      [[40, 7], 0], [[3, 33, 5], 1], [[2, 9000, 6], 1], [[3, 40000], 0], [[17, 6], 0], [[700, 7], 0], [[5, 300, 17], 1], [[410, 10], 0]
    ]
    let seed = 1100
    for (const [shape, axis] of shapes) {
      for (const kind of ['plain', 'special', 'zeros']) {
        const x = data('float32', shape.reduce((p, d) => p * d, 1), seed++, kind === 'special', 3, 200) as Float32Array
        // zeros of both signs, in both orders
        if (kind === 'zeros') for (let i = 0; i < x.length; i++) x[i] = (i * 7) % 3 === 0 ? -0 : 0 * ((i % 5) - 2)
        for (const op of ['max', 'min'] as const) {
          const info = reduceInfo(op, shape, axis, false, 1, LIMITS)
          const want = reduce(new Float64Array(info.outElements), Float64Array.from(x), info) as Float64Array
          const got = reduce(new Float64Array(info.outElements).fill(7), x, info) as Float64Array
          const at = want.findIndex((v, i) => !Object.is(v, got[i]))
          expect(at, `${op} of [${shape}]: output ${at} is ${got[at]}, the loops' ${want[at]}`).toBe(-1)
        }
      }
    }
  })

  it('max of ±0 is +0 and min −0 whichever comes first, over rows, columns and through the index, in both dtypes', () => {
    for (const dtype of ['float32', 'float64'] as const) {
      for (const [shape, axis, values] of [[[2, 2], 1, [-0, 0, 0, -0]], [[2, 2], 0, [-0, 0, 0, -0]], [[2, 2, 2], [0, 2], [-0, 0, 0, -0, 0, -0, -0, 0]]] as const) {
        const x = dtype === 'float32' ? Float32Array.from(values) : Float64Array.from(values)
        const infoMax = reduceInfo('max', [...shape], axis as number | number[], false, 1, LIMITS)
        expect(infoMax.blocks === null, 'axes 0 and 2 of three go through the index').toBe(shape.length === 3)
        const max = reduce(new Float64Array(2), x, infoMax)
        const min = reduce(new Float64Array(2), x, reduceInfo('min', [...shape], axis as number | number[], false, 1, LIMITS))
        expect([...max].map(v => Object.is(v, -0)), `max ${dtype} [${shape}] over ${String(axis)}`).toEqual([false, false])
        expect([...min].map(v => Object.is(v, -0)), `min ${dtype} [${shape}] over ${String(axis)}`).toEqual([true, true])
      }
    }
  })
})

describe('reduce over blocks = reduce through each element\'s output index', () => {
  it('every op, every subset of the axes of ranks 1 to 4 (sizes 0, 1 and more), both dtypes, NaN and ±∞', () => {
    const shapes = [[5], [0], [3, 4], [1, 6], [4, 1], [2, 3, 4], [3, 1, 5], [2, 0, 3], [2, 3, 1, 5]]
    let seed = 1000
    for (const shape of shapes) {
      for (let mask = 0; mask < 1 << shape.length; mask++) {
        const axes = shape.map((_, d) => d).filter(d => (mask >> d) & 1)
        for (const dtype of ['float32', 'float64'] as const) {
          const x = data(dtype, shape.reduce((p, d) => p * d, 1), seed++, seed % 3 === 0)
          for (const op of REDUCE_OPS) {
            let info
            try {
              info = reduceInfo(op, shape, axes.length === 0 ? undefined : axes, false, 1, LIMITS)
            } catch {
              continue // max/min over an empty axis
            }
            const got = reduce(new Float64Array(info.outElements), x, info)
            const want = reduceValues(x, outputIndex(info), info)
            expectClose(got, want, { rtol: 1e-12, atol: 1e-12 }, `${op} of [${shape}] over [${axes}] ${dtype}`)
          }
        }
      }
    }
  })
})

describe('fast layer_norm = the loops, bit for bit', () => {
  it('rows of 0..70 values and chunks past the kernel\'s 32768-element chunk, with or without weight and bias, NaN/∞, a large offset', () => {
    const cases: Array<[number, number]> = [[0, 5], [3, 0], [1, 1], [2, 3], [5, 4], [7, 5], [4, 17], [9, 70], [3, 40000], [70, 1023], [1, 70001]]
    let seed = 500
    for (const [rows, n] of cases) {
      for (const special of [false, true]) {
        for (const offset of [0, 1000]) {
          const x = data('float32', rows * n, seed++, special) as Float32Array
          for (let i = 0; i < x.length; i++) x[i] += offset
          for (const [hasW, hasB] of [[false, false], [true, false], [false, true], [true, true]]) {
            const w = hasW ? data('float32', n, seed++) as Float32Array : null
            const b = hasB ? data('float32', n, seed++) as Float32Array : null
            const info = layerNormInfo([rows, n], [n], w === null ? null : [n], b === null ? null : [n], 1e-5, LIMITS)
            const want = layerNorm(new Float32Array(rows * n), x, w, b, info) as Float32Array
            const got = layerNormF32(new Float32Array(rows * n).fill(7), x, w, b, info)
            // the same float32 bits (any NaN as NaN), every element written
            const differs = firstDifference(got, want)
            expect(differs, `rows ${rows}, n ${n}: element ${differs} is ${got[differs]}, the loops give ${want[differs]}`).toBe(-1)
          }
        }
      }
    }
  })
})

describe('wasm runtime', () => {
  it('decodes base64 as Buffer does', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const text = Buffer.from(bytes).toString('base64')
      expect(Array.from(decodeBase64(text))).toEqual(Array.from(bytes))
    }))
  })
})
