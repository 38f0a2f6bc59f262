/**
 * layer_norm: torch.nn.functional.layer_norm over the trailing `normalizedShape` dimensions, with an
 * optional elementwise weight and bias of that shape; mean and biased variance per row, in doubles.
 */
import { invalidArgument, shapeMismatch } from '../errors.js'
import { checkFlops, elementCount, formatShape, sameShape } from './shape.js'
import type { FloatArray, Limits } from './types.js'

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
  const { rows, n, eps } = info
  const mean = new Float64Array(rows)
  const rstd = new Float64Array(rows)
  for (let r = 0; r < rows; r++) {
    const o = r * n
    let s = 0
    for (let j = 0; j < n; j++) s += x[o + j]
    const m = s / n
    let v = 0
    for (let j = 0; j < n; j++) {
      const d = x[o + j] - m
      v += d * d
    }
    mean[r] = m
    rstd[r] = 1 / Math.sqrt(v / n + eps)
  }
  return { mean, rstd }
}

/** Fills out with (x - mean)·rstd·weight + bias, row by row. */
export function layerNorm (out: FloatArray, x: FloatArray, weight: FloatArray | null, bias: FloatArray | null, info: LayerNormInfo): FloatArray {
  const { rows, n } = info
  const { mean, rstd } = rowStats(x, info)
  for (let r = 0; r < rows; r++) {
    const o = r * n
    for (let j = 0; j < n; j++) {
      let y = (x[o + j] - mean[r]) * rstd[r]
      if (weight !== null) y *= weight[j]
      if (bias !== null) y += bias[j]
      out[o + j] = y
    }
  }
  return out
}
