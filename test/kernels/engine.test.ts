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
