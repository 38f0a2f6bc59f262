/**
 * numpy.matmul: 2-D products, batched N-D with broadcast batch dimensions, and 1-D operands
 * promoted (a vector on the left gains a leading 1, on the right a trailing 1) with the added
 * dimension removed from the result.
 */
import { shapeMismatch } from '../errors.js'
import { broadcastOffsets, broadcastShapes, checkFlops, elementCount, formatShape, product } from './shape.js'
import type { FloatArray, Limits } from './types.js'
import { engineMatmul, useEngine } from './ort/kernels.js'
import { begin, computesInF32, end } from './wasm/runtime.js'

/** A matmul's operands (`threads`: the native engine's threads, when given more than one worker's share). */
export interface MatmulOperands { a: FloatArray, b: FloatArray, info: MatmulInfo, threads?: number }

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
 * out[oOff + i*n + j] = sum_p a[aOff + i*k + p] * b[bOff + p*n + j], for one [m,k]·[k,n] block:
 * on the native engine where it is enabled (worker threads) and the problem is not tiny, on
 * `threads` threads; else on the WebAssembly SIMD GEMM. float32 output accumulates in float32
 * (in float64 below F32_MIN_MACS multiply-adds), float64 in float64; operands of the other float
 * type are converted on the way in.
 */
export function gemm (
  out: FloatArray, oOff: number,
  a: FloatArray, aOff: number,
  b: FloatArray, bOff: number,
  m: number, k: number, n: number,
  threads = 1
): void {
  if (m === 0 || n === 0) return
  if (k === 0) {
    out.fill(0, oOff, oOff + m * n)
    return
  }
  if (useEngine(m * k * n)) {
    engineMatmul(out, oOff, a, aOff, b, bOff, 1, m, k, n, threads)
    return
  }
  const single = computesInF32(out, m * k * n)
  const es = single ? 4 : 8
  const ws = begin()
  try {
    const work = ws.allocWork()
    const pa = ws.alloc(m * k, es)
    const pb = ws.alloc(k * n, es)
    const pc = ws.alloc(m * n, es)
    ws.commit()
    ws.view(single, pa, m * k).set(a.subarray(aOff, aOff + m * k))
    ws.view(single, pb, k * n).set(b.subarray(bOff, bOff + k * n))
    const fn = single ? ws.x.gemmF32 : ws.x.gemmF64
    fn(m, n, k, pa, k, 1, pb, n, 1, pc, n, 0, work)
    out.set(ws.view(single, pc, m * n), oOff)
  } finally {
    end()
  }
}

/** True when a[t] are consecutive [m,k] blocks and every b[t] is the same [k,n] block. */
function stacksIntoOne (info: MatmulInfo): boolean {
  const { B, m, k, aOffsets, bOffsets } = info
  for (let t = 0; t < B; t++) {
    if (aOffsets[t] !== aOffsets[0] + t * m * k || bOffsets[t] !== bOffsets[0]) return false
  }
  return true
}

/** True when a[t] and b[t] are consecutive blocks: a plain batch, nothing broadcast. */
function consecutive (info: MatmulInfo): boolean {
  const { B, m, k, n, aOffsets, bOffsets } = info
  for (let t = 0; t < B; t++) {
    if (aOffsets[t] !== t * m * k || bOffsets[t] !== t * k * n) return false
  }
  return true
}

/**
 * Fills out (info.outElements long) with matmul(a, b), on `threads` threads where the engine
 * computes it. A batch whose b is shared (broadcast) and whose a blocks are consecutive is one
 * [B·m,k]·[k,n] product; on the engine a plain batch is one batched call, and a broadcast one a
 * call per batch when each product is large enough; otherwise the WebAssembly module loops over
 * the batch itself, from operands copied in once.
 */
export function matmul (out: FloatArray, a: FloatArray, b: FloatArray, info: MatmulInfo, threads = 1): FloatArray {
  const { B, m, k, n, aOffsets, bOffsets } = info
  if (info.outElements === 0) return out
  if (k === 0) return out.fill(0)
  if (B === 1 || stacksIntoOne(info)) {
    gemm(out, 0, a, aOffsets[0], b, bOffsets[0], B * m, k, n, threads)
    return out
  }
  if (useEngine(B * m * k * n) && consecutive(info)) {
    engineMatmul(out, 0, a, 0, b, 0, B, m, k, n, threads)
    return out
  }
  if (useEngine(m * k * n)) {
    for (let t = 0; t < B; t++) engineMatmul(out, t * m * n, a, aOffsets[t], b, bOffsets[t], 1, m, k, n, threads)
    return out
  }
  const single = computesInF32(out, B * m * k * n)
  const es = single ? 4 : 8
  const ws = begin()
  try {
    const work = ws.allocWork()
    const pa = ws.alloc(a.length, es)
    const pb = ws.alloc(b.length, es)
    const po = ws.alloc(B, 4)
    const pbo = ws.alloc(B, 4)
    const pc = ws.alloc(info.outElements, es)
    ws.commit()
    ws.view(single, pa, a.length).set(a)
    ws.view(single, pb, b.length).set(b)
    ws.i32(po, B).set(aOffsets)
    ws.i32(pbo, B).set(bOffsets)
    const fn = single ? ws.x.gemmBatchF32 : ws.x.gemmBatchF64
    fn(B, m, n, k, pa, po, pb, pbo, pc, work)
    out.set(ws.view(single, pc, info.outElements))
  } finally {
    end()
  }
  return out
}
