/** dot: the rank-0 sum of a*b over two tensors of the same shape (vector or Frobenius product). */
import { shapeMismatch } from '../errors.js'
import { checkFlops, elementCount, formatShape } from './shape.js'
import type { FloatArray, Limits } from './types.js'

export interface DotInfo {
  length: number
  outShape: number[]
  outElements: number
  flops: number
}

export function dotInfo (aShape: number[], bShape: number[], limits: Limits): DotInfo {
  const length = elementCount(aShape, 'a', limits)
  elementCount(bShape, 'b', limits)
  const same = aShape.length === bShape.length && aShape.every((d, i) => d === bShape[i])
  if (!same) {
    let detail: string
    if (aShape.length !== bShape.length) {
      detail = `a has rank ${aShape.length} and b has rank ${bShape.length}`
    } else {
      const i = aShape.findIndex((d, j) => d !== bShape[j])
      detail = `dimension ${i} differs: ${aShape[i]} in a, ${bShape[i]} in b`
    }
    throw shapeMismatch(`dot needs a and b of the same shape: a ${formatShape(aShape)}, b ${formatShape(bShape)} (${detail})`)
  }
  checkFlops(2 * length, 'this dot product', limits)
  return { length, outShape: [], outElements: 1, flops: 2 * length }
}

export function dot (out: FloatArray, a: FloatArray, b: FloatArray, info: DotInfo): FloatArray {
  let s = 0
  for (let i = 0; i < info.length; i++) s += a[i] * b[i]
  out[0] = s
  return out
}
