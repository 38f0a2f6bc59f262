/**
 * numpy.matmul: 2-D products, batched N-D with broadcast batch dimensions, and 1-D operands
 * promoted (a vector on the left gains a leading 1, on the right a trailing 1) with the added
 * dimension removed from the result.
 */
import { shapeMismatch } from '../errors.js'
import { broadcastOffsets, broadcastShapes, checkFlops, elementCount, formatShape, product } from './shape.js'
import type { FloatArray, Limits } from './types.js'

export interface MatmulInfo {
  /** Broadcast batch dimensions. */
  batchShape: number[]
  /** Number of batches: product(batchShape). */
  B: number
  m: number
  k: number
  n: number
  /** Per batch: element offset of its [m,k] block in a and [k,n] block in b. */
  aOffsets: Int32Array
  bOffsets: Int32Array
  outShape: number[]
  outElements: number
  flops: number
}

export function matmulInfo (aShape: number[], bShape: number[], limits: Limits, names: [string, string] = ['a', 'b']): MatmulInfo {
  const [an, bn] = names
  for (const [name, s] of [[an, aShape], [bn, bShape]] as const) {
    if (s.length === 0) throw shapeMismatch(`${name} is a rank-0 tensor (a scalar); matmul needs at least 1 dimension`)
  }
  elementCount(aShape, an, limits)
  elementCount(bShape, bn, limits)
  const a2 = aShape.length === 1 ? [1, aShape[0]] : aShape
  const b2 = bShape.length === 1 ? [bShape[0], 1] : bShape
  const m = a2[a2.length - 2]
  const k = a2[a2.length - 1]
  const kb = b2[b2.length - 2]
  const n = b2[b2.length - 1]
  if (k !== kb) {
    const aDim = aShape.length === 1 ? 0 : aShape.length - 1
    const bDim = bShape.length === 1 ? 0 : bShape.length - 2
    throw shapeMismatch(
      `${an} ${formatShape(aShape)} and ${bn} ${formatShape(bShape)} do not go together: ` +
      `${an}'s dimension ${aDim} (${k}) must equal ${bn}'s dimension ${bDim} (${kb})`
    )
  }
  const aBatch = a2.slice(0, -2)
  const bBatch = b2.slice(0, -2)
  const batchShape = broadcastShapes([aBatch, bBatch], [`${an} ${formatShape(aShape)}`, `${bn} ${formatShape(bShape)}`].map(s => s), 'batch dimensions')
  const outShape = [...batchShape]
  if (aShape.length > 1) outShape.push(m)
  if (bShape.length > 1) outShape.push(n)
  const outElements = elementCount(outShape, 'the result', limits)
  const B = product(batchShape)
  checkFlops(2 * B * m * k * n, 'this matmul', limits)
  const aOff = broadcastOffsets(batchShape, aBatch)
  const bOff = broadcastOffsets(batchShape, bBatch)
  for (let i = 0; i < B; i++) {
    aOff[i] *= m * k
    bOff[i] *= k * n
  }
  return { batchShape, B, m, k, n, aOffsets: aOff, bOffsets: bOff, outShape, outElements, flops: 2 * B * m * k * n }
}

/**
 * out[oOff + i*n + j] = sum_p a[aOff + i*k + p] * b[bOff + p*n + j], for one [m,k]·[k,n] block.
 * i-p-j order: the inner loop runs along contiguous rows of b and out.
 */
export function gemm (
  out: FloatArray, oOff: number,
  a: FloatArray, aOff: number,
  b: FloatArray, bOff: number,
  m: number, k: number, n: number
): void {
  const row = new Float64Array(n)
  for (let i = 0; i < m; i++) {
    row.fill(0)
    const ai = aOff + i * k
    for (let p = 0; p < k; p++) {
      const av = a[ai + p]
      const bp = bOff + p * n
      for (let j = 0; j < n; j++) row[j] += av * b[bp + j]
    }
    const oi = oOff + i * n
    for (let j = 0; j < n; j++) out[oi + j] = row[j]
  }
}

/** Fills out (info.outElements long) with matmul(a, b). */
export function matmul (out: FloatArray, a: FloatArray, b: FloatArray, info: MatmulInfo): FloatArray {
  const { B, m, k, n, aOffsets, bOffsets } = info
  const blk = m * n
  for (let t = 0; t < B; t++) gemm(out, t * blk, a, aOffsets[t], b, bOffsets[t], m, k, n)
  return out
}
