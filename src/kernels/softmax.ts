/**
 * softmax: torch.softmax / torch.log_softmax along one axis. A slice that is all -Infinity gives
 * zeros (log: -Infinity), never NaN, as linear's softmax does; NaN propagates to its slice.
 */
import { checkFlops, elementCount, resolveAxis } from './shape.js'
import type { FloatArray, Limits } from './types.js'

export interface SoftmaxInfo {
  outShape: number[]
  outElements: number
  /** The slices: `outer` blocks of `n` values along the axis, `inner` apart. */
  outer: number
  n: number
  inner: number
  log: boolean
  flops: number
}

export interface SoftmaxOperands { input: FloatArray, info: SoftmaxInfo }

export function softmaxInfo (shape: number[], axis: number, log: boolean, limits: Limits): SoftmaxInfo {
  const outElements = elementCount(shape, 'input', limits)
  const a = resolveAxis(axis, shape)
  const dims = shape.length === 0 ? [1] : shape
  const n = dims[a]
  let inner = 1
  for (let d = a + 1; d < dims.length; d++) inner *= dims[d]
  const outer = n === 0 || inner === 0 ? 0 : outElements / (n * inner)
  checkFlops(5 * outElements, `this ${log ? 'log_softmax' : 'softmax'}`, limits)
  return { outShape: shape, outElements, outer, n, inner, log, flops: 5 * outElements }
}

/**
 * Calls slice(first, stride, index) for every slice along the axis of a layout [outer, n, inner]:
 * its values are at first + j·stride, j < n, and index = o·inner + i counts the slices in order.
 */
export function forEachSlice (info: Pick<SoftmaxInfo, 'outer' | 'n' | 'inner'>, slice: (first: number, stride: number, index: number) => void): void {
  const { outer, n, inner } = info
  for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) slice(o * n * inner + i, inner, o * inner + i)
}

/**
 * Fills out with softmax (or log_softmax) of x along the axis: exp(x - max) / Σ exp(x - max), in
 * doubles, stored in out's type.
 */
export function softmax (out: FloatArray, x: FloatArray, info: SoftmaxInfo): FloatArray {
  const { n, log } = info
  const e = new Float64Array(log ? 0 : n) // one slice's exponentials
  forEachSlice(info, (first, stride) => {
    let max = -Infinity
    for (let j = 0, k = first; j < n; j++, k += stride) {
      const v = x[k]
      if (v > max || v !== v) max = v // eslint-disable-line no-self-compare -- NaN wins, so that it spreads to its slice
    }
    if (max === -Infinity) { // every value -Infinity: zeros (log: -Infinity)
      for (let j = 0, k = first; j < n; j++, k += stride) out[k] = log ? -Infinity : 0
      return
    }
    let sum = 0
    if (log) {
      for (let j = 0, k = first; j < n; j++, k += stride) sum += Math.exp(x[k] - max)
      const lse = Math.log(sum)
      for (let j = 0, k = first; j < n; j++, k += stride) out[k] = x[k] - max - lse
    } else {
      // each exponential once, kept in doubles until the division
      for (let j = 0, k = first; j < n; j++, k += stride) sum += (e[j] = Math.exp(x[k] - max))
      for (let j = 0, k = first; j < n; j++, k += stride) out[k] = e[j] / sum
    }
  })
  return out
}
