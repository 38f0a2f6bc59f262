/**
 * layer_norm: torch.nn.functional.layer_norm over the trailing `normalizedShape` dimensions, with an
 * optional elementwise weight and bias of that shape; mean and biased variance per row, in doubles.
 */
import { invalidArgument, shapeMismatch } from '../errors.js'
import { checkFlops, elementCount, formatShape, sameShape } from './shape.js'
import type { FloatArray, Limits } from './types.js'
import { begin, end, STREAM_CHUNK } from './wasm/runtime.js'

export interface LayerNormInfo {
  outShape: number[]
  outElements: number
  /** Rows of `n` values each (n: the product of normalizedShape). */
  rows: number
  n: number
  eps: number
  flops: number
}

export interface LayerNormOperands { input: FloatArray, weight: FloatArray | null, bias: FloatArray | null, info: LayerNormInfo }

export function layerNormInfo (shape: number[], normalizedShape: number[], weightShape: number[] | null, biasShape: number[] | null, eps: number, limits: Limits): LayerNormInfo {
  const outElements = elementCount(shape, 'input', limits)
  if (normalizedShape.length === 0) throw invalidArgument('normalizedShape is empty: give the trailing dimensions to normalise over, e.g. [' + (shape.at(-1) ?? 'n') + ']')
  const k = normalizedShape.length
  if (k > shape.length || !sameShape(shape.slice(shape.length - k), normalizedShape)) {
    throw shapeMismatch(`normalizedShape ${formatShape(normalizedShape)} must be the trailing dimensions of input ${formatShape(shape)}`)
  }
  for (const [name, s] of [['weight', weightShape], ['bias', biasShape]] as const) {
    if (s !== null && !sameShape(s, normalizedShape)) throw shapeMismatch(`${name} ${formatShape(s)} must have the shape normalizedShape ${formatShape(normalizedShape)}`)
  }
  let n = 1
  for (const d of normalizedShape) n *= d
  const rows = n === 0 ? 0 : outElements / n
  checkFlops(8 * outElements, 'this layer_norm', limits)
  return { outShape: shape, outElements, rows, n, eps, flops: 8 * outElements }
}

/** Each row's mean and 1/sqrt(variance + eps) (the biased variance, as torch's). */
export function rowStats (x: FloatArray, info: LayerNormInfo): { mean: Float64Array, rstd: Float64Array } {
  const { rows } = info
  const mean = new Float64Array(rows)
  const rstd = new Float64Array(rows)
  for (let r = 0; r < rows; r++) stats(x, r, info, mean, rstd, r)
  return { mean, rstd }
}

/**
 * Row r's mean and rstd, into mean[at] and rstd[at], in one pass in doubles: the sums of d and d²
 * for d = x − x₀, x₀ the row's first value (shifted so that a large offset does not cancel: the
 * variance Σd²/n − (Σd/n)² then loses at most log₂(n) bits, as x₀ is within √n standard
 * deviations of the mean), each in four interleaved partial sums (the additions need not wait on
 * one another).
 */
function stats (x: FloatArray, r: number, info: LayerNormInfo, mean: Float64Array, rstd: Float64Array, at: number): void {
  const { n, eps } = info
  const o = r * n
  const end = o + n
  const end4 = o + (n & ~3)
  const x0 = x[o]
  let s0 = 0
  let s1 = 0
  let s2 = 0
  let s3 = 0
  let q0 = 0
  let q1 = 0
  let q2 = 0
  let q3 = 0
  let k = o
  for (; k < end4; k += 4) {
    const d0 = x[k] - x0
    const d1 = x[k + 1] - x0
    const d2 = x[k + 2] - x0
    const d3 = x[k + 3] - x0
    s0 += d0
    s1 += d1
    s2 += d2
    s3 += d3
    q0 += d0 * d0
    q1 += d1 * d1
    q2 += d2 * d2
    q3 += d3 * d3
  }
  for (; k < end; k++) {
    const d = x[k] - x0
    s0 += d
    q0 += d * d
  }
  const dm = ((s0 + s1) + (s2 + s3)) / n
  // (a non-finite row gives NaN, as the two-pass formula would: Σd² − n·dm² of infinities)
  const variance = Math.max(0, ((q0 + q1) + (q2 + q3)) / n - dm * dm)
  mean[at] = x0 + dm
  rstd[at] = 1 / Math.sqrt(variance + eps)
}

/** Fills out with (x - mean)·rstd·weight + bias, row by row (each row's statistics just before its output, while it is in cache). */
export function layerNorm (out: FloatArray, x: FloatArray, weight: FloatArray | null, bias: FloatArray | null, info: LayerNormInfo): FloatArray {
  const { rows, n } = info
  const mean = new Float64Array(1)
  const rstd = new Float64Array(1)
  for (let r = 0; r < rows; r++) {
    stats(x, r, info, mean, rstd, 0)
    const o = r * n
    const m = mean[0]
    const s = rstd[0]
    if (weight !== null && bias !== null) {
      for (let j = 0; j < n; j++) out[o + j] = (x[o + j] - m) * s * weight[j] + bias[j]
    } else if (weight !== null) {
      for (let j = 0; j < n; j++) out[o + j] = (x[o + j] - m) * s * weight[j]
    } else if (bias !== null) {
      for (let j = 0; j < n; j++) out[o + j] = (x[o + j] - m) * s + bias[j]
    } else {
      for (let j = 0; j < n; j++) out[o + j] = (x[o + j] - m) * s
    }
  }
  return out
}

/**
 * layerNorm of float32 operands on the WebAssembly SIMD kernel (asm/kernels.ts, layerNormF32): the
 * same sums in the same order in doubles, hence the same values as the loops above, about three
 * times faster. The input goes through the kernel's memory a chunk of rows at a time (STREAM_CHUNK).
 */
export function layerNormF32 (out: Float32Array, x: Float32Array, weight: Float32Array | null, bias: Float32Array | null, info: LayerNormInfo): Float32Array {
  const { rows, n, eps } = info
  if (rows === 0) return out
  const per = Math.max(1, Math.floor(STREAM_CHUNK / n))
  const ws = begin()
  try {
    // (0: absent; the workspace starts above address 0)
    const pw = weight === null ? 0 : ws.alloc(n, 4)
    const pb = bias === null ? 0 : ws.alloc(n, 4)
    const px = ws.alloc(Math.min(per, rows) * n, 4)
    ws.commit()
    if (weight !== null) ws.f32(pw, n).set(weight.subarray(0, n))
    if (bias !== null) ws.f32(pb, n).set(bias.subarray(0, n))
    const chunk = ws.f32(px, Math.min(per, rows) * n)
    for (let r = 0; r < rows; r += per) {
      const count = Math.min(per, rows - r)
      const from = r * n
      chunk.set(x.subarray(from, from + count * n))
      ws.x.layerNormF32(count, n, px, pw, pb, eps, px)
      out.set(chunk.subarray(0, count * n), from)
    }
  } finally {
    end()
  }
  return out
}
