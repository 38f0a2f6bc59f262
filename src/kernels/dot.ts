/** dot: the rank-0 sum of a*b over two tensors of the same shape (vector or Frobenius product). */
import { shapeMismatch } from '../errors.js'
import { checkFlops, elementCount, formatShape, sameShape } from './shape.js'
import type { FloatArray, Limits } from './types.js'
import { begin, end } from './wasm/runtime.js'

export interface DotOperands { a: FloatArray, b: FloatArray, info: DotInfo }

export interface DotInfo {
  length: number
  outShape: number[]
  outElements: number
  flops: number
}

export function dotInfo (aShape: number[], bShape: number[], limits: Limits): DotInfo {
  const length = elementCount(aShape, 'a', limits)
  elementCount(bShape, 'b', limits)
  if (!sameShape(aShape, bShape)) {
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

/**
 * Σ a[i]·b[i] on the WebAssembly SIMD kernel: every product is formed exactly in double precision
 * (also for float32 data) and summed in doubles, then stored into out's type.
 */
export function dot (out: FloatArray, a: FloatArray, b: FloatArray, info: DotInfo): FloatArray {
  const n = info.length
  if (n === 0) {
    out[0] = 0
    return out
  }
  const single = a instanceof Float32Array && b instanceof Float32Array
  const es = single ? 4 : 8
  const ws = begin()
  try {
    const pa = ws.alloc(n, es)
    const pb = ws.alloc(n, es)
    ws.commit()
    ws.view(single, pa, n).set(a.subarray(0, n))
    ws.view(single, pb, n).set(b.subarray(0, n))
    out[0] = single ? ws.x.dotF32(n, pa, pb) : ws.x.dotF64(n, pa, pb)
  } finally {
    end()
  }
  return out
}
