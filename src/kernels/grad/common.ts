/**
 * What the gradient kernels (and einsum) share: transposed copies, batched products of consecutive
 * blocks with an operand stored transposed, on the forward's matmul kernel (the native engine in
 * workers, which fuses the transposition into its GEMM; WebAssembly for small work), and accumulation into an operand's gradient where a broadcast operand was used by
 * several batches (autograd sums over broadcast dimensions).
 */
import { matmul } from '../matmul.js'
import { allFinite, engineMatmul, useEngine } from '../ort/kernels.js'
import { allocate, type FloatArray } from '../types.js'

const like = (x: FloatArray, n: number): FloatArray => allocate(x instanceof Float32Array ? 'float32' : 'float64', n)

/** The `blocks` consecutive [rows, cols] blocks of x from `off`, each transposed to [cols, rows]. */
export function transposeBlocks (x: FloatArray, off: number, blocks: number, rows: number, cols: number): FloatArray {
  const out = like(x, blocks * rows * cols)
  const size = rows * cols
  for (let b = 0; b < blocks; b++) {
    const s = off + b * size
    const d = b * size
    // in tiles of 32 x 32, so that both sides stay in cache
    for (let i0 = 0; i0 < rows; i0 += 32) {
      const i1 = Math.min(rows, i0 + 32)
      for (let j0 = 0; j0 < cols; j0 += 32) {
        const j1 = Math.min(cols, j0 + 32)
        for (let i = i0; i < i1; i++) {
          for (let j = j0; j < j1; j++) out[d + j * rows + i] = x[s + i * cols + j]
        }
      }
    }
  }
  return out
}

/**
 * out[oOff ..] = the `batches` products op(a)·op(b) of consecutive blocks, where with `transA` a's
 * blocks are stored [k,m] and with `transB` b's are stored [n,k]: on the engine (which fuses the
 * transposition into its GEMM) when it takes the work, else from transposed copies.
 */
export function productT (
  out: FloatArray, oOff: number, a: FloatArray, aOff: number, transA: boolean, b: FloatArray, bOff: number, transB: boolean,
  batches: number, m: number, k: number, n: number
): void {
  if (batches === 0 || m === 0 || n === 0) return
  if (k === 0) {
    out.fill(0, oOff, oOff + batches * m * n)
    return
  }
  // a transposed [k,m] block with m or k of 1 is the same memory as [m,k]
  const tA = transA && m > 1 && k > 1
  const tB = transB && n > 1 && k > 1
  if ((tA || tB) && useEngine(batches * m * k * n)) {
    engineMatmul(out, oOff, a, aOff, b, bOff, batches, m, k, n, 1, tA, tB)
    return
  }
  const A = tA ? transposeBlocks(a, aOff, batches, k, m) : a.subarray(aOff, aOff + batches * m * k)
  const B = tB ? transposeBlocks(b, bOff, batches, n, k) : b.subarray(bOff, bOff + batches * k * n)
  const aOffsets = consecutiveOffsets(batches, m * k)
  matmul(out.subarray(oOff, oOff + batches * m * n), A, B, {
    batchShape: [batches],
    B: batches,
    m,
    k,
    n,
    aOffsets,
    bOffsets: consecutiveOffsets(batches, k * n),
    outShape: [batches, m, n],
    outElements: batches * m * n,
    flops: 2 * batches * m * k * n
  })
}

/** dst[dOff + i] += src[sOff + i] for i < n. */
export function addInto (dst: FloatArray, dOff: number, src: FloatArray, sOff: number, n: number): void {
  for (let i = 0; i < n; i++) dst[dOff + i] += src[sOff + i]
}

/**
 * Per batch t: out[outOffsets[t] ..] += the [m,n] product op(a)·op(b) of a block (aOffsets[t])
 * and b block (bOffsets[t]), op transposing a block stored [k,m] (transA) or [n,k] (transB).
 * Blocks of out used by several batches receive the sum. When out's blocks are the batches in
 * order (nothing broadcast on that side) and a's and b's are too, one batched product; else a
 * product per batch into a scratch block, then added. `skipZeros`: zeros of a times non-finite
 * values of b add nothing (else NaN, as IEEE and PyTorch have it).
 */
export function accumulateProducts (
  out: FloatArray, outOffsets: ArrayLike<number>,
  a: FloatArray, aOffsets: ArrayLike<number>, transA: boolean,
  b: FloatArray, bOffsets: ArrayLike<number>, transB: boolean,
  batches: number, m: number, k: number, n: number,
  skipZeros = false
): void {
  if (batches === 0 || m === 0 || n === 0 || k === 0) return
  if (skipZeros && !allFinite(b)) {
    // a zero coefficient of a takes no part, so a NaN or an infinity it would multiply does not
    // leak (a masked key's row in attention); a GEMM would make it 0·∞ = NaN
    const A = transA ? transposeBlocks(a, 0, a.length / (m * k), k, m) : a
    const B = transB ? transposeBlocks(b, 0, b.length / (k * n), n, k) : b
    for (let t = 0; t < batches; t++) sparseProduct(out, outOffsets[t], A, aOffsets[t], B, bOffsets[t], m, k, n)
    return
  }
  if (inOrder(outOffsets, batches, m * n) && inOrder(aOffsets, batches, m * k) && inOrder(bOffsets, batches, k * n)) {
    productT(out, outOffsets[0], a, aOffsets[0], transA, b, bOffsets[0], transB, batches, m, k, n)
    return
  }
  const scratch = like(out, m * n)
  for (let t = 0; t < batches; t++) {
    productT(scratch, 0, a, aOffsets[t], transA, b, bOffsets[t], transB, 1, m, k, n)
    addInto(out, outOffsets[t], scratch, 0, m * n)
  }
}

/** out[oOff ..] += a·b for one block, skipping the zero entries of a. */
function sparseProduct (out: FloatArray, oOff: number, a: FloatArray, aOff: number, b: FloatArray, bOff: number, m: number, k: number, n: number): void {
  for (let i = 0; i < m; i++) {
    const o = oOff + i * n
    for (let p = 0; p < k; p++) {
      const x = a[aOff + i * k + p]
      if (x === 0) continue
      const r = bOff + p * n
      for (let j = 0; j < n; j++) out[o + j] += x * b[r + j]
    }
  }
}

/** Whether offsets[t] = offsets[0] + t·size for every batch: consecutive blocks. */
export function inOrder (offsets: ArrayLike<number>, batches: number, size: number): boolean {
  for (let t = 1; t < batches; t++) if (offsets[t] !== offsets[0] + t * size) return false
  return true
}

/** Whether every batch uses the same block. */
export function shared (offsets: ArrayLike<number>, batches: number): boolean {
  for (let t = 1; t < batches; t++) if (offsets[t] !== offsets[0]) return false
  return true
}

/** Offsets t·size for t < batches. */
export function consecutiveOffsets (batches: number, size: number): Int32Array {
  const o = new Int32Array(batches)
  for (let t = 0; t < batches; t++) o[t] = t * size
  return o
}
