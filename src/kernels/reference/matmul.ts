/**
 * The plain TypeScript matmul, kept as the reference the fast (WebAssembly) kernel is tested and
 * benchmarked against. Accumulates in doubles, whatever the dtype.
 */
import type { MatmulInfo } from '../matmul.js'
import type { FloatArray } from '../types.js'

/**
 * out[oOff + i*n + j] = sum_p a[aOff + i*k + p] * b[bOff + p*n + j], for one [m,k]·[k,n] block.
 * i-p-j order: the inner loop runs along contiguous rows of b and out.
 */
export function gemmReference (
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
export function matmulReference (out: FloatArray, a: FloatArray, b: FloatArray, info: MatmulInfo): FloatArray {
  const { B, m, k, n, aOffsets, bOffsets } = info
  const blk = m * n
  for (let t = 0; t < B; t++) gemmReference(out, t * blk, a, aOffsets[t], b, bOffsets[t], m, k, n)
  return out
}
