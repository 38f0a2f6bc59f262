import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { ApiError, type ErrorCode } from '../../src/errors.js'
import { conv2d, conv2dInfo, type Conv2dParams } from '../../src/kernels/conv2d.js'
import { allocate, type DType, type FloatArray, type Limits } from '../../src/kernels/types.js'
import { expectClose, TOL } from '../helpers/compare.js'

const LIMITS: Limits = { maxElements: 16777216, maxFlops: 2e11 }

function typed (dtype: DType, values: readonly number[]): FloatArray {
  return dtype === 'float32' ? Float32Array.from(values) : Float64Array.from(values)
}

/** Runs conv2dInfo + conv2d on plain arrays. */
function conv (xShape: number[], x: readonly number[], fShape: number[], f: readonly number[],
  b: readonly number[] | null, params: Conv2dParams = {}, dtype: DType = 'float64') {
  const info = conv2dInfo(xShape, fShape, b === null ? null : [b.length], params, LIMITS)
  const out = allocate(dtype, info.outElements)
  const ret = conv2d(out, typed(dtype, x), typed(dtype, f), b === null ? null : typed(dtype, b), info)
  expect(ret).toBe(out)
  return { shape: info.outShape, data: Array.from(out), info }
}

function errorOf (fn: () => unknown): ApiError {
  try {
    fn()
  } catch (err) {
    if (err instanceof ApiError) return err
    throw err
  }
  throw new Error('expected an ApiError, but nothing was thrown')
}

function expectApiError (fn: () => unknown, code: ErrorCode, ...parts: string[]): void {
  const err = errorOf(fn)
  expect(err.code).toBe(code)
  for (const p of parts) expect(err.message).toContain(p)
}

const iota = (n: number, start = 0): number[] => Array.from({ length: n }, (_, i) => start + i)

// ---------------------------------------------------------------------------------------------
// Reference: straight from the definition, one output element at a time.
//   out[n,k,oy,ox] = bias[k] + sum over c < C/groups, i < kh, j < kw of
//                    in[n, g*Cg + c, oy*sh - padTop + i*dh, ox*sw - padLeft + j*dw] * w[k,c,i,j]
// with g = floor(k / (K/groups)) and out-of-range input taps read as 0 (so 0 * Infinity = NaN,
// as PyTorch's zero padding gives).
// ---------------------------------------------------------------------------------------------
interface RefParams {
  layout: 'NCHW' | 'NHWC'
  groups: number
  sh: number
  sw: number
  dh: number
  dw: number
  pt: number
  pb: number
  pl: number
  pr: number
}

function reference (xShape: number[], x: ArrayLike<number>, fShape: number[], f: ArrayLike<number>,
  b: ArrayLike<number> | null, p: RefParams): { shape: number[], data: number[] } {
  const nchw = p.layout === 'NCHW'
  const batched = xShape.length === 4
  const s = batched ? xShape : [1, ...xShape]
  const N = s[0]
  const C = nchw ? s[1] : s[3]
  const H = nchw ? s[2] : s[1]
  const W = nchw ? s[3] : s[2]
  const K = nchw ? fShape[0] : fShape[3]
  const Cg = nchw ? fShape[1] : fShape[2]
  const kh = nchw ? fShape[2] : fShape[0]
  const kw = nchw ? fShape[3] : fShape[1]
  const Kg = K / p.groups
  const OH = Math.floor((H + p.pt + p.pb - p.dh * (kh - 1) - 1) / p.sh) + 1
  const OW = Math.floor((W + p.pl + p.pr - p.dw * (kw - 1) - 1) / p.sw) + 1
  const inAt = (n: number, c: number, y: number, xx: number): number =>
    nchw ? ((n * C + c) * H + y) * W + xx : ((n * H + y) * W + xx) * C + c
  const wAt = (k: number, c: number, i: number, j: number): number =>
    nchw ? ((k * Cg + c) * kh + i) * kw + j : ((i * kw + j) * Cg + c) * K + k
  const outAt = (n: number, k: number, oy: number, ox: number): number =>
    nchw ? ((n * K + k) * OH + oy) * OW + ox : ((n * OH + oy) * OW + ox) * K + k
  const out = new Array<number>(N * K * OH * OW).fill(0)
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const g = Math.floor(k / Kg)
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          let acc = b === null ? 0 : b[k]
          for (let c = 0; c < Cg; c++) {
            for (let i = 0; i < kh; i++) {
              for (let j = 0; j < kw; j++) {
                const y = oy * p.sh - p.pt + i * p.dh
                const xx = ox * p.sw - p.pl + j * p.dw
                const v = y >= 0 && y < H && xx >= 0 && xx < W ? x[inAt(n, g * Cg + c, y, xx)] : 0
                acc += v * f[wAt(k, c, i, j)]
              }
            }
          }
          out[outAt(n, k, oy, ox)] = acc
        }
      }
    }
  }
  const shape = nchw
    ? (batched ? [N, K, OH, OW] : [K, OH, OW])
    : (batched ? [N, OH, OW, K] : [OH, OW, K])
  return { shape, data: out }
}

/** Small deterministic values: multiples of 1/4 in [-2, 2], exact in float32. */
function values (seed: number, n: number): number[] {
  let a = seed >>> 0
  const out = new Array<number>(n)
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    t = (t ^ (t >>> 14)) >>> 0
    out[i] = (t % 17 - 8) / 4
  }
  return out
}

// ---------------------------------------------------------------------------------------------
describe('conv2d: hand-checked cases', () => {
  it('x=[2,2,3] f=[2,2,3,1] NHWC: one feature = Frobenius dot product of patch and kernel', () => {
    // An RGB 2x2 patch (HWC) and one 2x2x3 filter (HWIO with O=1): both flatten in the same
    // (y, x, c) order, so with both = 1..12 the result is 1^2 + 2^2 + ... + 12^2 = 650.
    const r = conv([2, 2, 3], iota(12, 1), [2, 2, 3, 1], iota(12, 1), null, { layout: 'NHWC' })
    expect(r.shape).toEqual([1, 1, 1])
    expect(r.data).toEqual([650])
  })

  it('x=[1,1,3,3] f=[1,1,2,2] s=1 p=valid', () => {
    // x = 1 2 3   w = 1 2
    //     4 5 6       3 4
    //     7 8 9
    // (0,0): 1*1 + 2*2 + 4*3 + 5*4 = 37   (0,1): 2*1 + 3*2 + 5*3 + 6*4 = 47
    // (1,0): 4*1 + 5*2 + 7*3 + 8*4 = 67   (1,1): 5*1 + 6*2 + 8*3 + 9*4 = 77
    const r = conv([1, 1, 3, 3], iota(9, 1), [1, 1, 2, 2], [1, 2, 3, 4], null)
    expect(r.shape).toEqual([1, 1, 2, 2])
    expect(r.data).toEqual([37, 47, 67, 77])
  })

  it('x=[1,3,3] f=[1,1,2,2] unbatched gives [1,2,2]', () => {
    const r = conv([1, 3, 3], iota(9, 1), [1, 1, 2, 2], [1, 2, 3, 4], null)
    expect(r.shape).toEqual([1, 2, 2])
    expect(r.data).toEqual([37, 47, 67, 77])
    expect(r.info.batched).toBe(false)
  })

  it('x=[1,1,4,4] f=[1,1,2,2] s=2', () => {
    // x = 0..15 row-major, w = ones: sums of the four 2x2 blocks.
    // (0,0): 0+1+4+5 = 10   (0,1): 2+3+6+7 = 18   (1,0): 8+9+12+13 = 42   (1,1): 10+11+14+15 = 50
    const r = conv([1, 1, 4, 4], iota(16), [1, 1, 2, 2], [1, 1, 1, 1], null, { stride: 2 })
    expect(r.shape).toEqual([1, 1, 2, 2])
    expect(r.data).toEqual([10, 18, 42, 50])
  })

  it('x=[1,1,4,5] f=[1,1,2,2] s=[2,3]', () => {
    // x(y,x) = 5y + x; w = ones. OH = floor((4-2)/2)+1 = 2, OW = floor((5-2)/3)+1 = 2.
    // window sum at (y,x) = 4*(5y+x) + 0 + 1 + 5 + 6 = 20y + 4x + 12
    // (0,0): 12   (0,1) x=3: 24   (1,0) y=2: 52   (1,1): 64
    const r = conv([1, 1, 4, 5], iota(20), [1, 1, 2, 2], [1, 1, 1, 1], null, { stride: [2, 3] })
    expect(r.shape).toEqual([1, 1, 2, 2])
    expect(r.data).toEqual([12, 24, 52, 64])
  })

  it('x=[1,1,2,2] f=[1,1,3,3] p=1', () => {
    // x = 1 2   w = 1 2 3    padded x = 0 0 0 0
    //     3 4       4 5 6               0 1 2 0
    //               7 8 9               0 3 4 0
    //                                   0 0 0 0
    // (0,0): 1*5 + 2*6 + 3*8 + 4*9 = 77   (0,1): 1*4 + 2*5 + 3*7 + 4*8 = 67
    // (1,0): 1*2 + 2*3 + 3*5 + 4*6 = 47   (1,1): 1*1 + 2*2 + 3*4 + 4*5 = 37
    const r = conv([1, 1, 2, 2], [1, 2, 3, 4], [1, 1, 3, 3], iota(9, 1), null, { padding: 1 })
    expect(r.shape).toEqual([1, 1, 2, 2])
    expect(r.data).toEqual([77, 67, 47, 37])
  })

  it('x=[1,1,1,3] f=[1,1,1,1] p=[1,0] pads height only', () => {
    // padding [ph, pw] = [1, 0]: one zero row above and below, none left/right; w = [2].
    const r = conv([1, 1, 1, 3], [1, 2, 3], [1, 1, 1, 1], [2], null, { padding: [1, 0] })
    expect(r.shape).toEqual([1, 1, 3, 3])
    expect(r.data).toEqual([0, 0, 0, 2, 4, 6, 0, 0, 0])
  })

  it('x=[1,1,3,3] f=[1,1,2,2] p=same puts the extra row/column bottom/right', () => {
    // total pad per axis = 1*(2-1) = 1: top/left 0, bottom/right 1, so out(y,x) covers rows
    // y..y+1 and columns x..x+1 with zeros past the bottom/right edge.
    // x = 1 2 3   w = 1 2
    //     4 5 6       3 4
    //     7 8 9
    // row 0: 1+4+12+20 = 37,  2+6+15+24 = 47,  3*1 + 6*3 = 21
    // row 1: 4+10+21+32 = 67, 5+12+24+36 = 77, 6*1 + 9*3 = 33
    // row 2: 7*1 + 8*2 = 23,  8*1 + 9*2 = 26,  9*1 = 9
    // (Padding top/left instead would give out(0,0) = 1*4 = 4.)
    const r = conv([1, 1, 3, 3], iota(9, 1), [1, 1, 2, 2], [1, 2, 3, 4], null, { padding: 'same' })
    expect(r.shape).toEqual([1, 1, 3, 3])
    expect(r.data).toEqual([37, 47, 21, 67, 77, 33, 23, 26, 9])
    expect(r.info.padTop).toBe(0)
    expect(r.info.padLeft).toBe(0)
  })

  it('x=[1,1,5,5] f=[1,1,4,2] d=[1,3] p=same pads floor(total/2) top/left', () => {
    // height: total 1*(4-1) = 3 -> top 1, bottom 2; width: total 3*(2-1) = 3 -> left 1, right 2
    const info = conv2dInfo([1, 1, 5, 5], [1, 1, 4, 2], null, { padding: 'same', dilation: [1, 3] }, LIMITS)
    expect(info.padTop).toBe(1)
    expect(info.padLeft).toBe(1)
    expect(info.outShape).toEqual([1, 1, 5, 5])
  })

  it('x=[1,1,5,5] f=[1,1,2,2] d=2', () => {
    // x(y,x) = v = 5y + x, w = [[1,2],[3,4]] on taps (0,0), (0,2), (2,0), (2,2):
    // out = v*1 + (v+2)*2 + (v+10)*3 + (v+12)*4 = 10v + 82, for v = 0,1,2, 5,6,7, 10,11,12
    const r = conv([1, 1, 5, 5], iota(25), [1, 1, 2, 2], [1, 2, 3, 4], null, { dilation: 2 })
    expect(r.shape).toEqual([1, 1, 3, 3])
    expect(r.data).toEqual([82, 92, 102, 132, 142, 152, 182, 192, 202])
  })

  it('x=[1,2,2,2] f=[2,1,2,2] g=2', () => {
    // group 0: channel 0 [1 2; 3 4] with w0 = ones          -> 10
    // group 1: channel 1 [5 6; 7 8] with w1 = [1 0; 0 1]    -> 5 + 8 = 13
    const r = conv([1, 2, 2, 2], iota(8, 1), [2, 1, 2, 2], [1, 1, 1, 1, 1, 0, 0, 1], null, { groups: 2 })
    expect(r.shape).toEqual([1, 2, 1, 1])
    expect(r.data).toEqual([10, 13])
  })

  it('x=[1,4,1,1] f=[4,2,1,1] g=2: each group sees only its own channels', () => {
    // x = [1, 10, 100, 1000]; filters k=0,1 read channels 0,1 and k=2,3 read channels 2,3.
    // w rows: k0 [1, 0] -> 1, k1 [0, 1] -> 10, k2 [1, 1] -> 1100, k3 [2, -1] -> -800
    const r = conv([1, 4, 1, 1], [1, 10, 100, 1000], [4, 2, 1, 1], [1, 0, 0, 1, 1, 1, 2, -1], null, { groups: 2 })
    expect(r.data).toEqual([1, 10, 1100, -800])
  })

  it('x=[1,1,3,3] f=[2,1,2,2] with bias', () => {
    // filter 0 as above (37 47 67 77) + 0.5; filter 1 = [0 0; 0 1] picks x(y+1,x+1) = 5 6 8 9, - 1
    const r = conv([1, 1, 3, 3], iota(9, 1), [2, 1, 2, 2], [1, 2, 3, 4, 0, 0, 0, 1], [0.5, -1])
    expect(r.shape).toEqual([1, 2, 2, 2])
    expect(r.data).toEqual([37.5, 47.5, 67.5, 77.5, 4, 5, 7, 8])
  })

  it('x=[1,3,3,1] f=[2,2,1,2] NHWC with bias interleaves the filters', () => {
    // Same numbers as the NCHW case above, laid out HWIO: w[i,j,0,k].
    const f = [1, 0, 2, 0, 3, 0, 4, 1]
    const r = conv([1, 3, 3, 1], iota(9, 1), [2, 2, 1, 2], f, [0.5, -1], { layout: 'NHWC' })
    expect(r.shape).toEqual([1, 2, 2, 2])
    expect(r.data).toEqual([37.5, 4, 47.5, 5, 67.5, 7, 77.5, 8])
  })

  it('x=[2,3,5,4] f=[4,3,3,2] s=[2,1] p=1 bias: NHWC equals NCHW transposed', () => {
    const [N, C, H, W, K, kh, kw] = [2, 3, 5, 4, 4, 3, 2]
    const x = values(1, N * C * H * W)
    const f = values(2, K * C * kh * kw)
    const b = values(3, K)
    const params: Conv2dParams = { stride: [2, 1], padding: 1 }
    const a = conv([N, C, H, W], x, [K, C, kh, kw], f, b, params)
    // transpose NCHW -> NHWC and KCHW -> HWIO
    const xt = new Array<number>(x.length)
    for (let n = 0; n < N; n++) {
      for (let c = 0; c < C; c++) {
        for (let y = 0; y < H; y++) {
          for (let z = 0; z < W; z++) {
            xt[((n * H + y) * W + z) * C + c] = x[((n * C + c) * H + y) * W + z]
          }
        }
      }
    }
    const ft = new Array<number>(f.length)
    for (let k = 0; k < K; k++) {
      for (let c = 0; c < C; c++) {
        for (let i = 0; i < kh; i++) {
          for (let j = 0; j < kw; j++) {
            ft[((i * kw + j) * C + c) * K + k] = f[((k * C + c) * kh + i) * kw + j]
          }
        }
      }
    }
    const t = conv([N, H, W, C], xt, [kh, kw, C, K], ft, b, { ...params, layout: 'NHWC' })
    const [OH, OW] = [a.shape[2], a.shape[3]]
    expect(a.shape).toEqual([N, K, 3, 5])
    expect(t.shape).toEqual([N, OH, OW, K])
    const back = new Array<number>(t.data.length)
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        for (let y = 0; y < OH; y++) {
          for (let z = 0; z < OW; z++) {
            back[((n * K + k) * OH + y) * OW + z] = t.data[((n * OH + y) * OW + z) * K + k]
          }
        }
      }
    }
    expectClose(back, a.data, TOL.float64)
  })

  it('x=[1,1,3,3] f=[1,1,2,2] float32 stores into a Float32Array', () => {
    const info = conv2dInfo([1, 1, 3, 3], [1, 1, 2, 2], null, {}, LIMITS)
    const out = new Float32Array(info.outElements)
    conv2d(out, Float32Array.from(iota(9, 0.1)), Float32Array.from([1, 2, 3, 4]), null, info)
    const x = Array.from(Float32Array.from(iota(9, 0.1)))
    const want = [0, 1, 3, 4].map(o => x[o] + 2 * x[o + 1] + 3 * x[o + 3] + 4 * x[o + 4])
    expectClose(out, want, TOL.float32)
  })

  it('info reports the sizes, padding and FLOPs', () => {
    const info = conv2dInfo([2, 6, 7, 9], [4, 3, 3, 2], [4], { stride: [2, 3], padding: [1, 2], dilation: [1, 2], groups: 2 }, LIMITS)
    // OH = floor((7 + 2 - 3)/2) + 1 = 4; OW = floor((9 + 4 - 3)/3) + 1 = 4
    expect(info).toMatchObject({
      layout: 'NCHW',
      batched: true,
      N: 2,
      C: 6,
      H: 7,
      W: 9,
      K: 4,
      kh: 3,
      kw: 2,
      OH: 4,
      OW: 4,
      sh: 2,
      sw: 3,
      dh: 1,
      dw: 2,
      padTop: 1,
      padLeft: 2,
      groups: 2,
      hasBias: true,
      outShape: [2, 4, 4, 4],
      outElements: 128,
      flops: 2 * 2 * 4 * 4 * 4 * 3 * 3 * 2
    })
  })
})

describe('conv2d: empty dimensions', () => {
  it('x=[0,3,4,4] f=[2,3,3,3] gives an empty [0,2,2,2]', () => {
    const r = conv([0, 3, 4, 4], [], [2, 3, 3, 3], values(1, 54), [1, 2])
    expect(r.shape).toEqual([0, 2, 2, 2])
    expect(r.data).toEqual([])
    expect(r.info.flops).toBe(0)
  })

  it('x=[1,0,3,3] f=[2,0,2,2] (C=0) gives the bias, or zeros', () => {
    const r = conv([1, 0, 3, 3], [], [2, 0, 2, 2], [], [1, -1])
    expect(r.shape).toEqual([1, 2, 2, 2])
    expect(r.data).toEqual([1, 1, 1, 1, -1, -1, -1, -1])
    // NHWC unbatched: input [H=3,W=3,C=0], kernel [kh=2,kw=1,0,K=3] -> [2,3,3] of zeros
    const z = conv([3, 3, 0], [], [2, 1, 0, 3], [], null, { layout: 'NHWC' })
    expect(z.shape).toEqual([2, 3, 3])
    expect(z.data).toEqual(new Array(18).fill(0))
  })

  it('x=[1,0,3,3] f=[4,0,2,2] g=2 (C=0 with groups) gives the bias', () => {
    const r = conv([1, 0, 3, 3], [], [4, 0, 2, 2], [], [1, 2, 3, 4], { groups: 2, stride: 2 })
    expect(r.shape).toEqual([1, 4, 1, 1])
    expect(r.data).toEqual([1, 2, 3, 4])
  })

  it('x=[1,3,3,3] f=[0,3,2,2] (K=0) gives an empty [1,0,2,2]', () => {
    const r = conv([1, 3, 3, 3], values(1, 27), [0, 3, 2, 2], [], [])
    expect(r.shape).toEqual([1, 0, 2, 2])
    expect(r.data).toEqual([])
  })

  it('x=[1,1,0,2] f=[1,1,2,2] p=1 (H=0, padding makes room) gives the bias', () => {
    // padded input 2x4, so OH = 1, OW = 3; every tap is padding.
    const r = conv([1, 1, 0, 2], [], [1, 1, 2, 2], [1, 2, 3, 4], [0.25], { padding: 1 })
    expect(r.shape).toEqual([1, 1, 1, 3])
    expect(r.data).toEqual([0.25, 0.25, 0.25])
  })

  it('x=[1,1,0,2] f=[1,1,1,1] p=valid (H=0) is refused like PyTorch', () => {
    expectApiError(() => conv2dInfo([1, 1, 0, 2], [1, 1, 1, 1], null, {}, LIMITS), 'SHAPE_MISMATCH', 'kernel [1,1,1,1]', 'input [1,1,0,2]', 'height')
  })

  it('x=[0,1,3,3] f=[1,1,1,1] p=1000000000: empty output even with huge spatial sizes, and no looping', () => {
    const r = conv([0, 1, 3, 3], [], [1, 1, 1, 1], [1], null, { padding: 1e9 })
    expect(r.shape).toEqual([0, 1, 2000000003, 2000000003])
    expect(r.data).toEqual([])
  })
})

describe('conv2d: NaN and infinities propagate', () => {
  it('x=[1,1,3,3] f=[1,1,2,2]: a NaN in the corner reaches only the output that touches it', () => {
    const x = iota(9, 1)
    x[0] = NaN
    const r = conv([1, 1, 3, 3], x, [1, 1, 2, 2], [1, 1, 1, 1], null)
    expect(r.data[0]).toBeNaN()
    expect(r.data.slice(1)).toEqual([2 + 3 + 5 + 6, 4 + 5 + 7 + 8, 5 + 6 + 8 + 9])
  })

  it('x=[1,1,3,3] f=[1,1,2,2]: a NaN in the centre reaches every output', () => {
    const x = iota(9, 1)
    x[4] = NaN
    const r = conv([1, 1, 3, 3], x, [1, 1, 2, 2], [1, 1, 1, 1], null, {}, 'float32')
    expect(r.data.every(Number.isNaN)).toBe(true)
  })

  it('x=[1,1,2,2] f=[1,1,2,1]: Infinity times a positive weight is Infinity, times 0 is NaN', () => {
    // x = [Inf 1; 2 3]; w = [1; 0]: out(0,0) = Inf*1 + 2*0 = Inf, out(0,1) = 1*1 + 3*0 = 1
    const r = conv([1, 1, 2, 2], [Infinity, 1, 2, 3], [1, 1, 2, 1], [1, 0], null)
    expect(r.data).toEqual([Infinity, 1])
    // w = [0; 1]: out(0,0) = Inf*0 + 2 = NaN
    const z = conv([1, 1, 2, 2], [Infinity, 1, 2, 3], [1, 1, 2, 1], [0, 1], null)
    expect(z.data[0]).toBeNaN()
    expect(z.data[1]).toBe(3)
  })

  it('x=[1,1,2,2] f=[1,1,2,2] p=1: a NaN weight over zero padding still gives NaN (0*NaN), as PyTorch', () => {
    // out(1,1) only reads x over taps (0,0)..(1,1) at rows/cols 0..1, i.e. w(0,0) = NaN sits on x(0,0);
    // every other output has w(0,0) over padding: 0 * NaN = NaN. (C = K = 1, so NHWC holds the same data.)
    const a = conv([1, 1, 2, 2], [1, 2, 3, 4], [1, 1, 2, 2], [NaN, 1, 1, 1], null, { padding: 1 })
    const b = conv([1, 2, 2, 1], [1, 2, 3, 4], [2, 2, 1, 1], [NaN, 1, 1, 1], null, { padding: 1, layout: 'NHWC' })
    expect(a.shape).toEqual([1, 1, 3, 3])
    expect(b.shape).toEqual([1, 3, 3, 1])
    expect(a.data.every(Number.isNaN)).toBe(true)
    expect(b.data.every(Number.isNaN)).toBe(true)
  })

  it('x=[1,1,2,2] f=[1,1,1,1] p=1: an infinite weight makes padding outputs NaN, others infinite', () => {
    // out over padding = 0 * Inf = NaN; over the data = x * Inf = Inf
    const r = conv([1, 1, 2, 2], [1, 2, 3, 4], [1, 1, 1, 1], [Infinity], null, { padding: 1 })
    expect(r.shape).toEqual([1, 1, 4, 4])
    const inside = [5, 6, 9, 10]
    r.data.forEach((v, i) => {
      if (inside.includes(i)) expect(v).toBe(Infinity)
      else expect(v).toBeNaN()
    })
  })
})

describe('conv2d: errors', () => {
  const x = [1, 3, 8, 8]
  const f = [4, 3, 3, 3]
  const info = (params: Conv2dParams, xs = x, fs = f, bs: number[] | null = null) =>
    () => conv2dInfo(xs, fs, bs, params, LIMITS)

  it('x=[1,4,4,1] f=[1,1,1,3] s=2 p=same is refused: "same" needs stride 1', () => {
    expectApiError(info({ stride: 2, padding: 'same', layout: 'NHWC' }, [1, 4, 4, 1], [1, 1, 1, 3]),
      'INVALID_ARGUMENT', 'same', 'stride', '2')
    expectApiError(info({ stride: [1, 2], padding: 'same' }), 'INVALID_ARGUMENT', 'same', 'stride [1,2]')
  })

  const badOptions: Array<[string, Conv2dParams, string]> = [
    ['stride=0', { stride: 0 }, 'stride'],
    ['stride=-1', { stride: -1 }, 'stride'],
    ['stride=1.5', { stride: 1.5 }, 'stride'],
    ['stride=[1]', { stride: [1] }, 'stride'],
    ['stride=[1,1,1]', { stride: [1, 1, 1] }, 'stride'],
    ['stride=[1,0]', { stride: [1, 0] }, 'stride'],
    ['stride="2"', { stride: '2' as unknown as number }, 'stride'],
    ['dilation=0', { dilation: 0 }, 'dilation'],
    ['dilation=[2,NaN]', { dilation: [2, NaN] }, 'dilation'],
    ['dilation=[1,2,3]', { dilation: [1, 2, 3] }, 'dilation'],
    ['padding=-1', { padding: -1 }, 'padding'],
    ['padding=[1]', { padding: [1] }, 'padding'],
    ['padding=[1,-1]', { padding: [1, -1] }, 'padding'],
    ['padding=0.5', { padding: 0.5 }, 'padding'],
    ['padding="full"', { padding: 'full' as 'same' }, 'padding'],
    ['groups=0', { groups: 0 }, 'groups'],
    ['groups=1.5', { groups: 1.5 }, 'groups'],
    ['layout="NWHC"', { layout: 'NWHC' as 'NCHW' }, 'layout']
  ]
  for (const [title, params, option] of badOptions) {
    it(`x=[1,3,8,8] f=[4,3,3,3] ${title} is INVALID_ARGUMENT naming the option and value`, () => {
      const err = errorOf(info(params))
      expect(err.code).toBe('INVALID_ARGUMENT')
      expect(err.statusCode).toBe(400)
      expect(err.message).toContain(option)
      expect(err.message).toContain(title.slice(title.indexOf('=') + 1))
    })
  }

  it('x=[1,4,8,8] f=[3,2,3,3] g=2 and x=[1,3,8,8] f=[4,1,3,3] g=2: groups must divide K and C', () => {
    expectApiError(info({ groups: 2 }, [1, 4, 8, 8], [3, 2, 3, 3]), 'INVALID_ARGUMENT', 'groups=2', 'K=3', 'kernel [3,2,3,3]')
    expectApiError(info({ groups: 2 }, x, [4, 1, 3, 3]), 'INVALID_ARGUMENT', 'groups=2', 'C=3', 'input [1,3,8,8]')
  })

  it('x=[1,8,8] f=[4,3,3,3] NHWC: C is the last input dimension', () => {
    // NHWC input [H=1, W=8, C=8] against kernel [kh=4, kw=3, Cg=3, K=3]
    expectApiError(info({ layout: 'NHWC' }, [1, 8, 8], [4, 3, 3, 3]), 'SHAPE_MISMATCH', 'kernel [4,3,3,3]', 'input [1,8,8]', 'C=8')
  })

  it('input and kernel ranks', () => {
    expectApiError(info({}, [3, 8]), 'SHAPE_MISMATCH', 'input [3,8]', 'rank 2')
    expectApiError(info({}, [1, 1, 3, 8, 8]), 'SHAPE_MISMATCH', 'input [1,1,3,8,8]')
    expectApiError(info({}, x, [4, 3, 3]), 'SHAPE_MISMATCH', 'kernel [4,3,3]', 'rank 3')
  })

  it('x=[1,3,8,8] f=[4,2,3,3]: kernel channels != C/groups', () => {
    expectApiError(info({}, x, [4, 2, 3, 3]), 'SHAPE_MISMATCH', 'kernel [4,2,3,3]', 'input [1,3,8,8]', 'C/groups=3')
    expectApiError(info({ groups: 3 }, x, [3, 3, 3, 3]), 'SHAPE_MISMATCH', 'C/groups=1')
  })

  it('bias must be [K]', () => {
    expectApiError(info({}, x, f, [3]), 'SHAPE_MISMATCH', 'bias [3]', '[4]', 'kernel [4,3,3,3]')
    expectApiError(info({}, x, f, [1, 4]), 'SHAPE_MISMATCH', 'bias [1,4]')
  })

  it('x=[1,3,2,2] f=[16,3,5,5] p=1: kernel larger than the padded input names both shapes', () => {
    const err = errorOf(info({ padding: 1 }, [1, 3, 2, 2], [16, 3, 5, 5]))
    expect(err.code).toBe('SHAPE_MISMATCH')
    expect(err.message).toBe('kernel [16,3,5,5] (dilated 5x5) is larger than the padded input 4x4 of input [1,3,2,2] in height and width')
  })

  it('x=[1,3,8,8] f=[4,3,3,3] d=[4,1]: the dilated kernel is too tall', () => {
    expectApiError(info({ dilation: [4, 1] }), 'SHAPE_MISMATCH', 'dilated 9x3', 'padded input 8x8', 'in height')
  })

  it('x=[8,8,3] f=[1,9,3,4] NHWC: too wide', () => {
    expectApiError(info({ layout: 'NHWC' }, [8, 8, 3], [1, 9, 3, 4]), 'SHAPE_MISMATCH', 'kernel [1,9,3,4]', 'input [8,8,3]', 'in width')
  })

  it('x=[1,1,3,3] f=[1,1,0,2]: a kernel with no taps is refused (PyTorch refuses a 0 kernel size)', () => {
    expectApiError(info({}, [1, 1, 3, 3], [1, 1, 0, 2]), 'SHAPE_MISMATCH', 'kernel [1,1,0,2]')
  })

  it('x=[1,1,1000000,1000000] is TOO_LARGE from the shape alone', () => {
    expectApiError(info({}, [1, 1, 1e6, 1e6], [1, 1, 3, 3]), 'TOO_LARGE', 'input', 'MAX_ELEMENTS')
    expectApiError(info({}, [1, 1, 3, 3], [1, 1, 1e6, 1e6]), 'TOO_LARGE', 'kernel', 'MAX_ELEMENTS')
  })

  it('x=[1,1,4,4] f=[1,1,1,1] p=5000: output over MAX_ELEMENTS', () => {
    expectApiError(info({ padding: 5000 }, [1, 1, 4, 4], [1, 1, 1, 1]), 'TOO_LARGE', 'output', 'MAX_ELEMENTS')
  })

  it('x=[1,256,256,256] f=[256,256,5,5]: work over MAX_FLOPS', () => {
    // 2 * 256 * 252 * 252 * 256 * 25 = 2.08e11 > 2e11, with an element limit every buffer fits
    const roomy: Limits = { maxElements: 1e9, maxFlops: 2e11 }
    expectApiError(() => conv2dInfo([1, 256, 256, 256], [256, 256, 5, 5], null, {}, roomy), 'TOO_LARGE', 'MAX_FLOPS')
  })

  it('x=[1,16,512,512] f=[8,16,5,5]: the column buffer 400 x 258064 is over MAX_ELEMENTS though every tensor fits', () => {
    // input 16*512*512 = 4.2M and output 8*508*508 = 2.06M fit; columns 16*25 x 508*508 = 103M do not
    expectApiError(info({}, [1, 16, 512, 512], [8, 16, 5, 5]), 'TOO_LARGE', 'column buffer', 'MAX_ELEMENTS')
  })
})

describe('conv2d: property test against the definition', () => {
  it('matches the naive reference over random shapes and options', () => {
    const arb = fc.record({
      N: fc.integer({ min: 0, max: 2 }),
      unbatched: fc.boolean(),
      groups: fc.integer({ min: 1, max: 3 }),
      Cg: fc.integer({ min: 0, max: 3 }),
      Kg: fc.integer({ min: 0, max: 3 }),
      kh: fc.integer({ min: 1, max: 4 }),
      kw: fc.integer({ min: 1, max: 4 }),
      sh: fc.integer({ min: 1, max: 3 }),
      sw: fc.integer({ min: 1, max: 3 }),
      dh: fc.integer({ min: 1, max: 3 }),
      dw: fc.integer({ min: 1, max: 3 }),
      padKind: fc.constantFrom('valid', 'same', 'int', 'pair', 'default'),
      ph: fc.integer({ min: 0, max: 3 }),
      pw: fc.integer({ min: 0, max: 3 }),
      hExtra: fc.integer({ min: -1, max: 5 }),
      wExtra: fc.integer({ min: -1, max: 5 }),
      layout: fc.constantFrom('NCHW' as const, 'NHWC' as const),
      bias: fc.boolean(),
      dtype: fc.constantFrom('float32' as const, 'float64' as const),
      pairForm: fc.boolean(),
      special: fc.integer({ min: 0, max: 9 }),
      seed: fc.integer({ min: 0, max: 0x7fffffff })
    })
    fc.assert(fc.property(arb, (a) => {
      const { groups, kh, kw, dh, dw, layout, dtype } = a
      const same = a.padKind === 'same'
      const sh = same ? 1 : a.sh
      const sw = same ? 1 : a.sw
      const C = groups * a.Cg
      const K = groups * a.Kg
      let pt = 0
      let pb = 0
      let pl = 0
      let pr = 0
      let padding: Conv2dParams['padding']
      if (a.padKind === 'valid') padding = 'valid'
      if (a.padKind === 'int') {
        padding = a.ph
        pt = pb = pl = pr = a.ph
      }
      if (a.padKind === 'pair') {
        padding = [a.ph, a.pw]
        pt = pb = a.ph
        pl = pr = a.pw
      }
      if (same) {
        padding = 'same'
        pt = Math.floor(dh * (kh - 1) / 2)
        pb = dh * (kh - 1) - pt
        pl = Math.floor(dw * (kw - 1) / 2)
        pr = dw * (kw - 1) - pl
      }
      const eh = dh * (kh - 1) + 1
      const ew = dw * (kw - 1) + 1
      const H = Math.max(0, eh - pt - pb + a.hExtra)
      const W = Math.max(0, ew - pl - pr + a.wExtra)
      const N = a.N
      const unbatched = a.unbatched && N === 1
      const nchw = layout === 'NCHW'
      const xFull = nchw ? [N, C, H, W] : [N, H, W, C]
      const xShape = unbatched ? xFull.slice(1) : xFull
      const fShape = nchw ? [K, a.Cg, kh, kw] : [kh, kw, a.Cg, K]
      const params: Conv2dParams = {
        stride: sh === sw && !a.pairForm ? sh : [sh, sw],
        dilation: dh === dw && !a.pairForm ? dh : [dh, dw],
        groups,
        layout
      }
      if (padding !== undefined) params.padding = padding
      if (same && !a.pairForm) delete params.stride
      const bShape = a.bias ? [K] : null

      if (eh > H + pt + pb || ew > W + pl + pr) {
        expect(errorOf(() => conv2dInfo(xShape, fShape, bShape, params, LIMITS)).code).toBe('SHAPE_MISMATCH')
        return
      }
      const info = conv2dInfo(xShape, fShape, bShape, params, LIMITS)

      const round = (v: number[]): number[] => dtype === 'float32' ? Array.from(Float32Array.from(v)) : v
      const x = round(values(a.seed, N * C * H * W))
      const f = round(values(a.seed ^ 0x5bd1e995, K * a.Cg * kh * kw))
      const b = a.bias ? round(values(a.seed + 7, K)) : null
      if (a.special === 0 && x.length > 0) x[a.seed % x.length] = NaN
      if (a.special === 1 && f.length > 0) f[a.seed % f.length] = Infinity
      if (a.special === 2 && x.length > 0) x[(a.seed >> 3) % x.length] = -Infinity

      const ref = reference(xShape, x, fShape, f, b, { layout, groups, sh, sw, dh, dw, pt, pb, pl, pr })
      expect(info.outShape).toEqual(ref.shape)
      expect(info.outElements).toBe(ref.data.length)
      expect(info.padTop).toBe(pt)
      expect(info.padLeft).toBe(pl)
      expect(info.flops).toBe(2 * ref.data.length * a.Cg * kh * kw)

      const out = allocate(dtype, info.outElements)
      conv2d(out, typed(dtype, x), typed(dtype, f), b === null ? null : typed(dtype, b), info)
      expectClose(out, ref.data, TOL[dtype], JSON.stringify({ ...a, xShape, fShape, params }))
    }), { numRuns: 200 })
  })
})
