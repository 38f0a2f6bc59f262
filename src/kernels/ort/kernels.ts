/**
 * The operations' GEMM-heavy cores on the native engine (./engine.ts): matmul (2-D and batched),
 * conv2d (float32; ONNX Runtime's CPU provider has no float64 Conv) and attention. Each takes
 * the same operands and shape information as the WebAssembly kernels and writes the same result
 * arrays; the kernels in ../ choose between the two (`useEngine`).
 */
import type { Conv2dInfo } from '../conv2d.js'
import type { FloatArray } from '../types.js'
import { run, session, tensor } from './engine.js'
import type { ElemName, Graph } from './onnx.js'

export { useEngine } from './engine.js'

const elemOf = (x: FloatArray): ElemName => x instanceof Float32Array ? 'float32' : 'float64'

/** x as the element type of `like` (a copy only when it differs). */
function as (like: FloatArray, x: FloatArray): FloatArray {
  if (elemOf(like) === elemOf(x)) return x
  return like instanceof Float32Array ? Float32Array.from(x) : Float64Array.from(x)
}

const matmulGraph = (t: ElemName) => (): Graph => ({
  inputs: [['a', t], ['b', t]],
  outputs: [['c', t]],
  nodes: [{ op: 'MatMul', inputs: ['a', 'b'], outputs: ['c'] }]
})

/**
 * out[oOff ..] = the [batches] products of a[aOff ..] [batches,m,k] and b[bOff ..] [batches,k,n]
 * (consecutive blocks), on `threads` intra-op threads.
 */
export function engineMatmul (
  out: FloatArray, oOff: number,
  a: FloatArray, aOff: number,
  b: FloatArray, bOff: number,
  batches: number, m: number, k: number, n: number, threads = 1
): void {
  const t = elemOf(out)
  const s = session(`matmul/${t}`, threads, matmulGraph(t))
  const A = as(out, a.subarray(aOff, aOff + batches * m * k))
  const B = as(out, b.subarray(bOff, bOff + batches * k * n))
  run(s, { a: tensor(A, [batches, m, k]), b: tensor(B, [batches, k, n]) },
    { c: tensor(out.subarray(oOff, oOff + batches * m * n), [batches, m, n]) })
}

/** Whether every element is finite. */
export function allFinite (x: ArrayLike<number>): boolean {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return false
  return true
}

/**
 * conv2d in float32 on the engine's Conv, NHWC through transposes around it. The caller keeps
 * kernels with non-finite weights for the WebAssembly kernel (which multiplies padded taps by them,
 * as PyTorch does; the engine may skip padding).
 */
export function engineConv2d (out: Float32Array, input: Float32Array, kernel: Float32Array, bias: Float32Array | null, info: Conv2dInfo): void {
  const { N, C, H, W, K, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft, groups } = info
  const nhwc = info.layout === 'NHWC'
  // the bottom and right padding that give exactly OH x OW (rows past the last stride are unused)
  const padBottom = Math.max(0, (OH - 1) * sh + dh * (kh - 1) + 1 - H - padTop)
  const padRight = Math.max(0, (OW - 1) * sw + dw * (kw - 1) + 1 - W - padLeft)
  const hasBias = bias !== null
  const key = `conv/${nhwc ? 'nhwc' : 'nchw'}/${hasBias ? 'b' : ''}/${sh},${sw}/${dh},${dw}/${padTop},${padLeft},${padBottom},${padRight}/${groups}`
  const s = session(key, 1, () => {
    const nodes: Graph['nodes'] = []
    let x = 'x'
    let w = 'w'
    if (nhwc) {
      nodes.push({ op: 'Transpose', inputs: ['x'], outputs: ['xt'], attributes: [{ name: 'perm', ints: [0, 3, 1, 2] }] })
      nodes.push({ op: 'Transpose', inputs: ['w'], outputs: ['wt'], attributes: [{ name: 'perm', ints: [3, 2, 0, 1] }] })
      x = 'xt'
      w = 'wt'
    }
    nodes.push({
      op: 'Conv',
      inputs: hasBias ? [x, w, 'bias'] : [x, w],
      outputs: [nhwc ? 'yt' : 'y'],
      attributes: [
        { name: 'strides', ints: [sh, sw] },
        { name: 'dilations', ints: [dh, dw] },
        { name: 'pads', ints: [padTop, padLeft, padBottom, padRight] },
        { name: 'group', int: groups }
      ]
    })
    if (nhwc) nodes.push({ op: 'Transpose', inputs: ['yt'], outputs: ['y'], attributes: [{ name: 'perm', ints: [0, 2, 3, 1] }] })
    return {
      inputs: hasBias ? [['x', 'float32'], ['w', 'float32'], ['bias', 'float32']] : [['x', 'float32'], ['w', 'float32']],
      outputs: [['y', 'float32']],
      nodes
    }
  })
  const Cg = C / groups
  const inputs: Record<string, ReturnType<typeof tensor>> = {
    x: tensor(input, nhwc ? [N, H, W, C] : [N, C, H, W]),
    w: tensor(kernel, nhwc ? [kh, kw, Cg, K] : [K, Cg, kh, kw])
  }
  if (bias !== null) inputs.bias = tensor(bias.subarray(0, K), [K])
  run(s, inputs, { y: tensor(out, nhwc ? [N, OH, OW, K] : [N, K, OH, OW]) })
}

/**
 * Attention over contiguous [B,Lq,E], [B,Lk,E], [B,Lk,Ev] blocks: softmax((q·scale)·kᵀ + mask)·v,
 * with `mask` (when given) the additive [B,Lq,Lk] term (−∞ for a removed key). The output goes to
 * `out`, the weights to `weights` when given. A row whose scores are all −∞ comes out NaN here:
 * the caller checks and recomputes such results on the WebAssembly kernel.
 */
export function engineAttention (
  out: FloatArray, weights: FloatArray | null,
  q: FloatArray, k: FloatArray, v: FloatArray, mask: FloatArray | null, scale: number,
  B: number, Lq: number, Lk: number, E: number, Ev: number
): void {
  const t = elemOf(out)
  const masked = mask !== null
  const s = session(`attention/${t}/${masked ? 'mask' : ''}`, 1, () => ({
    inputs: masked
      ? [['q', t], ['k', t], ['v', t], ['scale', t], ['mask', t]]
      : [['q', t], ['k', t], ['v', t], ['scale', t]],
    outputs: [['o', t], ['p', t]],
    nodes: [
      { op: 'Transpose', inputs: ['k'], outputs: ['kt'], attributes: [{ name: 'perm', ints: [0, 2, 1] }] },
      { op: 'Mul', inputs: ['q', 'scale'], outputs: ['qs'] },
      { op: 'MatMul', inputs: ['qs', 'kt'], outputs: ['ss'] },
      ...(masked ? [{ op: 'Add', inputs: ['ss', 'mask'], outputs: ['sm'] }] : []),
      { op: 'Softmax', inputs: [masked ? 'sm' : 'ss'], outputs: ['p'], attributes: [{ name: 'axis', int: 2 }] },
      { op: 'MatMul', inputs: ['p', 'v'], outputs: ['o'] }
    ]
  }))
  const sc = out instanceof Float32Array ? Float32Array.of(scale) : Float64Array.of(scale)
  const inputs: Record<string, ReturnType<typeof tensor>> = {
    q: tensor(as(out, q), [B, Lq, E]),
    k: tensor(as(out, k), [B, Lk, E]),
    v: tensor(as(out, v), [B, Lk, Ev]),
    scale: tensor(sc, [])
  }
  if (mask !== null) inputs.mask = tensor(as(out, mask), [B, Lq, Lk])
  const outputs: Record<string, ReturnType<typeof tensor>> = { o: tensor(out, [B, Lq, Ev]) }
  if (weights !== null) outputs.p = tensor(weights, [B, Lq, Lk])
  run(s, inputs, outputs)
}

/**
 * conv2d in float64 (the engine has no float64 Conv): per image and group, the im2col matrix
 * [Cg·kh·kw, OH·OW] built here (padding as zeros) and one engine GEMM by the kernel's
 * [Kg, Cg·kh·kw] rows, then the bias. NHWC input is made planar first and the result
 * transposed back. The column buffer is the intermediate conv2dInfo counted against
 * MAX_ELEMENTS.
 */
export function engineConv2dF64 (out: Float64Array, input: Float64Array, kernel: Float64Array, bias: Float64Array | null, info: Conv2dInfo): void {
  const { N, C, H, W, K, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft, groups } = info
  const nhwc = info.layout === 'NHWC'
  const Cg = C / groups
  const Kg = K / groups
  const taps = Cg * kh * kw
  const P = OH * OW
  const x = nhwc ? transpose(input, N, H * W, C) : input // [N, C, H, W]
  // kernel rows [K, Cg·kh·kw] in (c, i, j) order
  let w = kernel
  if (nhwc) {
    w = new Float64Array(kernel.length)
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        for (let c = 0; c < Cg; c++) {
          for (let k = 0; k < K; k++) w[((k * Cg + c) * kh + i) * kw + j] = kernel[((i * kw + j) * Cg + c) * K + k]
        }
      }
    }
  }
  const y = nhwc ? new Float64Array(out.length) : out // [N, K, OH, OW]
  const cols = new Float64Array(taps * P)
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < groups; g++) {
      let row = 0
      for (let c = 0; c < Cg; c++) {
        const plane = (n * C + g * Cg + c) * H * W
        for (let i = 0; i < kh; i++) {
          for (let j = 0; j < kw; j++, row++) {
            const r = cols.subarray(row * P, (row + 1) * P)
            for (let oh = 0; oh < OH; oh++) {
              const ih = oh * sh + i * dh - padTop
              const dst = oh * OW
              if (ih < 0 || ih >= H) {
                r.fill(0, dst, dst + OW)
                continue
              }
              const src = plane + ih * W
              // output columns whose input column j·dw − padLeft + ow·sw lies inside the row
              const off = j * dw - padLeft
              const lo = Math.min(OW, Math.max(0, Math.ceil(-off / sw)))
              const hi = Math.max(lo, Math.min(OW, Math.floor((W - 1 - off) / sw) + 1))
              r.fill(0, dst, dst + lo)
              if (sw === 1) r.set(x.subarray(src + off + lo, src + off + hi), dst + lo)
              else for (let ow = lo; ow < hi; ow++) r[dst + ow] = x[src + off + ow * sw]
              r.fill(0, dst + hi, dst + OW)
            }
          }
        }
      }
      engineMatmul(y, (n * K + g * Kg) * P, w, g * Kg * taps, cols, 0, 1, Kg, taps, P)
    }
  }
  if (bias !== null) {
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        const o = (n * K + k) * P
        const b = bias[k]
        for (let p = 0; p < P; p++) y[o + p] += b
      }
    }
  }
  if (nhwc) out.set(transpose(y, N, K, P))
}

/** [N, R, S] -> [N, S, R]. */
function transpose (x: Float64Array, N: number, R: number, S: number): Float64Array {
  const out = new Float64Array(x.length)
  for (let n = 0; n < N; n++) {
    const base = n * R * S
    for (let r = 0; r < R; r++) for (let s = 0; s < S; s++) out[base + s * R + r] = x[base + r * S + s]
  }
  return out
}
