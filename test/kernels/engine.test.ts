/**
 * The native engine (src/kernels/ort) against the same reference kernels: the whole suite of
 * fast.test.ts and of gradients.test.ts again, with the engine enabled in this thread for problems of every size (as the
 * worker threads enable it for problems from F32_MIN_MACS multiply-adds), and einsum.test.ts
 * likewise (its products with either operand stored transposed), plus sizes where the
 * service itself uses it.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { attention, attentionInfo } from '../../src/kernels/attention.js'
import { conv2d, conv2dInfo } from '../../src/kernels/conv2d.js'
import { matmul, matmulInfo } from '../../src/kernels/matmul.js'
import { enableEngine, engineRuns, MAX_SESSIONS, sessionCount } from '../../src/kernels/ort/engine.js'
import { attentionReference } from '../../src/kernels/reference/attention.js'
import { softmax, softmaxInfo } from '../../src/kernels/softmax.js'
import { OPERATIONS } from '../../src/operations/index.js'
import { binary, binaryInfo, runLength } from '../../src/kernels/binary.js'
import { RUN_MIN } from '../../src/operations/binary.js'
import { ENGINE_BINARY, ENGINE_UNARY } from '../../src/kernels/ort/kernels.js'
import { unary, unaryInfo } from '../../src/kernels/unary.js'
import { conv2dReference } from '../../src/kernels/reference/conv2d.js'
import { matmulReference } from '../../src/kernels/reference/matmul.js'
import { allocate, type DType, type FloatArray, type Limits } from '../../src/kernels/types.js'
import { expectClose, TOL } from '../helpers/compare.js'

enableEngine(1)
await import('./fast.test.js')
await import('./einsum.test.js')
await import('./gradients.test.js')

const LIMITS: Limits = { maxElements: 16777216, maxFlops: 2e11 }

function values (dtype: DType, n: number, seed: number): FloatArray {
  const out = allocate(dtype, n)
  for (let i = 0; i < n; i++) out[i] = Math.sin(i * 12.9898 + seed) * 2
  return out
}

describe('the engine at the sizes the service gives it', () => {
  const dtypes = ['float32', 'float64'] as const
  it('matmul 2-D, batched and broadcast, on one and two threads', () => {
    for (const dtype of dtypes) {
      for (const [aShape, bShape] of [[[130, 257], [257, 70]], [[4, 33, 65], [4, 65, 31]], [[3, 1, 40, 50], [2, 50, 60]]]) {
        const info = matmulInfo(aShape, bShape, LIMITS)
        const a = values(dtype, aShape.reduce((p, d) => p * d), 1)
        const b = values(dtype, bShape.reduce((p, d) => p * d), 2)
        const want = matmulReference(allocate(dtype, info.outElements), a, b, info)
        for (const threads of [1, 2]) {
          const got = matmul(allocate(dtype, info.outElements), a, b, info, threads)
          expectClose(got, want, { rtol: TOL[dtype].rtol, atol: TOL[dtype].rtol * 257 * 4 }, `${JSON.stringify(aShape)}·${JSON.stringify(bShape)} ${dtype} ${threads}`)
        }
      }
    }
  })

  it('conv2d 2x8x30x30 with 16 filters 3x3, pad 1, stride 1 and 2, both layouts, groups 1 and 2, both dtypes', () => {
    for (const dtype of dtypes) {
      for (const layout of ['NCHW', 'NHWC'] as const) {
        for (const [groups, stride] of [[1, 1], [2, 1], [1, 2]]) {
          const nchw = layout === 'NCHW'
          const Cg = 8 / groups
          const info = conv2dInfo(nchw ? [2, 8, 30, 30] : [2, 30, 30, 8], nchw ? [16, Cg, 3, 3] : [3, 3, Cg, 16], [16],
            { padding: 1, groups, stride, layout }, LIMITS)
          const x = values(dtype, 2 * 8 * 900, 3)
          const f = values(dtype, 16 * Cg * 9, 4)
          const b = values(dtype, 16, 5)
          const got = conv2d(allocate(dtype, info.outElements), x, f, b, info)
          const want = conv2dReference(allocate(dtype, info.outElements), x, f, b, info)
          expectClose(got, want, { rtol: TOL[dtype].rtol, atol: TOL[dtype].rtol * 9 * Cg * 4 }, `${layout} groups ${groups} stride ${stride} ${dtype}`)
        }
      }
    }
  })

  it('attention: a fully masked row comes out as zeros, not NaN', () => {
    for (const dtype of dtypes) {
      const shape = [2, 40, 32]
      const mask = new Uint8Array(40 * 40).fill(1)
      mask.fill(0, 3 * 40, 4 * 40) // query 3 attends to nothing
      const info = attentionInfo(shape, shape, shape, [40, 40], 'bool', { returnWeights: true }, LIMITS)
      const q = values(dtype, 2 * 40 * 32, 6)
      const k = values(dtype, 2 * 40 * 32, 7)
      const v = values(dtype, 2 * 40 * 32, 8)
      const got = allocate(dtype, 2 * 40 * 32)
      const gotW = allocate(dtype, 2 * 40 * 40)
      const want = allocate(dtype, 2 * 40 * 32)
      const wantW = allocate(dtype, 2 * 40 * 40)
      attention(got, gotW, q, k, v, mask, info)
      attentionReference(want, wantW, q, k, v, mask, info)
      expectClose(got, want, TOL[dtype], dtype)
      expectClose(gotW, wantW, TOL[dtype], dtype)
      expect(Array.from(got.subarray(3 * 32, 4 * 32))).toEqual(new Array(32).fill(0))
    }
  })
})

describe('softmax on the engine (the operation\'s run step picks it for float32 slices along the last axis)', () => {
  it('agrees with the float64 loop, special rows included: all −∞ gives zeros (log: −∞), NaN or +∞ gives NaN', () => {
    for (const log of [false, true]) {
      for (const [rows, n] of [[300, 257], [64, 1], [2, 5000]]) {
        const x = values('float32', rows * n, 11) as Float32Array
        for (let j = 0; j < n; j++) x[j] = -Infinity // row 0 all −∞
        x[n] = NaN // row 1 holds NaN
        if (rows > 2) x[2 * n + n - 1] = Infinity // row 2 holds +∞
        if (rows > 3 && n > 1) x[3 * n] = -Infinity // row 3 holds one −∞
        const info = softmaxInfo([rows, n], -1, log, LIMITS)
        const before = engineRuns()
        const got = OPERATIONS.softmax.run({ dtype: 'float32', input: x, info })
        expect(engineRuns(), 'ran on the engine').toBe(before + 1)
        const want = softmax(new Float64Array(rows * n), Float64Array.from(x), info)
        expectClose(got, Float32Array.from(want), { rtol: 1e-5, atol: 0 }, `${rows}x${n} log ${log}`)
        expect(Array.from(got.subarray(0, n)).every(v => Object.is(v, log ? -Infinity : 0))).toBe(true)
      }
    }
  })

  it('other axes and float64 stay on the loop', () => {
    const before = engineRuns()
    const x = values('float32', 64 * 1024, 12)
    OPERATIONS.softmax.run({ dtype: 'float32', input: x, info: softmaxInfo([64, 1024], 0, false, LIMITS) })
    OPERATIONS.softmax.run({ dtype: 'float64', input: Float64Array.from(x), info: softmaxInfo([64, 1024], -1, false, LIMITS) })
    expect(engineRuns()).toBe(before)
  })
})

describe('elementwise operators on the engine (the operations\' run steps pick them for large tensors)', () => {
  /** Values over the whole float32 range: specials, signed zeros, subnormals, huge and ordinary ones. */
  function wide (n: number, seed: number): Float32Array {
    const special = [NaN, Infinity, -Infinity, 0, -0, 1e-40, -1e-40, 1e-30, 3e38, -3e38, 88.8, -104, 1, -1, 0.5, 700, 1e10]
    const x = new Float32Array(n)
    for (let i = 0; i < n; i++) x[i] = i < special.length ? special[i] : Math.sin(i * 12.9898 + seed) * 10 ** ((i % 9) - 3)
    return x
  }

  it('unary: every ENGINE_UNARY op agrees with the float64 loop rounded (within 2e-5, a subnormal within its last unit; special values exactly)', () => {
    for (const op of Object.keys(ENGINE_UNARY)) {
      const x = wide(70000, 13)
      const info = unaryInfo(op, [x.length], LIMITS)
      const before = engineRuns()
      const got = OPERATIONS.unary.run({ dtype: 'float32', input: x, info })
      expect(engineRuns(), `${op} ran on the engine`).toBe(before + 1)
      const want = Float32Array.from(unary(new Float64Array(x.length), Float64Array.from(x), info))
      // (a subnormal result may differ by its last unit, 1.4e-45)
      expectClose(got, want, { rtol: 2e-5, atol: 3e-45 }, op)
    }
  })

  it('binary: add, sub, mul, div with broadcasting, in both dtypes, equal to the loop\'s correctly rounded values (float32 runs of RUN_MIN on the WebAssembly kernel)', () => {
    for (const op of Object.keys(ENGINE_BINARY)) {
      for (const [aShape, bShape] of [[[300, 257], [300, 257]], [[300, 257], [257]], [[300, 1], [1, 257]], [[2, 1, 200], [170, 1]], [[70000], []]]) {
        for (const dtype of ['float32', 'float64'] as const) {
          const a = dtype === 'float32' ? wide(aShape.reduce((p, d) => p * d, 1), 14) : Float64Array.from(wide(aShape.reduce((p, d) => p * d, 1), 14))
          const b = dtype === 'float32' ? wide(bShape.reduce((p, d) => p * d, 1), 15).reverse() : Float64Array.from(wide(bShape.reduce((p, d) => p * d, 1), 15).reverse())
          const info = binaryInfo(op, aShape, bShape, LIMITS)
          const before = engineRuns()
          const got = OPERATIONS.binary.run({ dtype, a, b, info })
          const onWasm = dtype === 'float32' && runLength(info) >= RUN_MIN
          expect(engineRuns(), `${op} ${onWasm ? 'ran on the WebAssembly kernel' : 'ran on the engine'}`).toBe(before + (onWasm ? 0 : 1))
          const want = binary(allocate(dtype, info.outElements), a, b, info)
          expectClose(got, want, { rtol: 0, atol: 0 }, `${op} ${JSON.stringify(aShape)} ${JSON.stringify(bShape)} ${dtype}`)
        }
      }
    }
  })

  it('the others stay on the loops: pow, maximum, tanh, float64 unary', () => {
    const before = engineRuns()
    const x = wide(70000, 16)
    OPERATIONS.unary.run({ dtype: 'float32', input: x, info: unaryInfo('tanh', [x.length], LIMITS) })
    OPERATIONS.unary.run({ dtype: 'float64', input: Float64Array.from(x), info: unaryInfo('exp', [x.length], LIMITS) })
    OPERATIONS.binary.run({ dtype: 'float32', a: x, b: x, info: binaryInfo('maximum', [x.length], [x.length], LIMITS) })
    OPERATIONS.binary.run({ dtype: 'float32', a: x, b: x, info: binaryInfo('pow', [x.length], [x.length], LIMITS) })
    expect(engineRuns()).toBe(before)
  })
})

afterAll(() => {
  // the suites above ran on the engine, not only on the WebAssembly kernels
  expect(engineRuns()).toBeGreaterThan(500)
})

describe('the engine\'s sessions', () => {
  it('are kept for at most MAX_SESSIONS graphs: conv2d options a client varies without end do not pile up', () => {
    const x = values('float32', 2 * 9 * 9, 9) as Float32Array
    const f = values('float32', 2 * 2 * 2, 10) as Float32Array
    for (let pad = 0; pad < MAX_SESSIONS + 20; pad++) {
      const info = conv2dInfo([1, 2, 9, 9], [1, 2, 2, 2], null, { padding: [pad % 40, Math.floor(pad / 40)] }, LIMITS)
      const got = conv2d(allocate('float32', info.outElements), x, f, null, info)
      const want = conv2dReference(allocate('float32', info.outElements), x, f, null, info)
      expectClose(got, want, { rtol: TOL.float32.rtol, atol: TOL.float32.rtol * 16 }, `padding ${pad}`)
      expect(sessionCount()).toBeLessThanOrEqual(MAX_SESSIONS)
    }
    expect(sessionCount()).toBe(MAX_SESSIONS)
  })
})
