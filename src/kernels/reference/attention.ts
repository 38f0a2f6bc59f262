/**
 * The plain TypeScript attention (row at a time, double-precision sums), kept as the reference
 * the fast (WebAssembly) kernel is tested and benchmarked against. Semantics: see ../attention.ts.
 */
import type { AttentionInfo } from '../attention.js'
import type { FloatArray } from '../types.js'

/**
 * Computes attention into `out` (`info.outShape`) and, when non-null, the softmax weights into
 * `weights` (`info.weightsShape`). Every element of both is written. Dot products, the softmax
 * and the weighted sums are accumulated in doubles and stored into the arrays' own type.
 */
export function attentionReference (
  out: FloatArray,
  weights: FloatArray | null,
  query: FloatArray,
  key: FloatArray,
  value: FloatArray,
  mask: FloatArray | Uint8Array | null,
  info: AttentionInfo
): void {
  if (out.length === 0 && (weights === null || weights.length === 0)) return
  const { B, Lq, Lk, E, Ev, scale, causal, qOffsets, kOffsets, vOffsets, maskOffsets, maskRowStride, maskColStride } = info
  const boolMask = mask !== null && info.maskKind === 'bool' ? mask : null
  const addMask = mask !== null && info.maskKind === 'additive' ? mask : null
  const scores = new Float64Array(Lk)
  const acc = new Float64Array(Ev)

  for (let b = 0; b < B; b++) {
    const qBase = qOffsets[b]
    const kBase = kOffsets[b]
    const vBase = vOffsets[b]
    const mBase = maskOffsets === null ? 0 : maskOffsets[b]
    for (let i = 0; i < Lq; i++) {
      const row = b * Lq + i
      const oRow = row * Ev
      const wRow = row * Lk
      const qRow = qBase + i * E
      const mRow = mBase + i * maskRowStride
      const visible = causal && i + 1 < Lk ? i + 1 : Lk

      // Scores of this query row; removed keys are -Infinity without computing their dot product.
      let max = -Infinity
      let nan = false
      for (let j = 0; j < Lk; j++) {
        let s: number
        if (j >= visible || (boolMask !== null && boolMask[mRow + j * maskColStride] === 0)) {
          s = -Infinity
        } else {
          const kRow = kBase + j * E
          let dot = 0
          for (let e = 0; e < E; e++) dot += query[qRow + e] * key[kRow + e]
          s = dot * scale
          if (addMask !== null) s += addMask[mRow + j * maskColStride]
        }
        scores[j] = s
        if (s > max) max = s
        else if (s !== s) nan = true // eslint-disable-line no-self-compare
      }

      if (max === -Infinity && !nan) {
        // Attends to no key (all removed or -Infinity, or Lk = 0): zeros, never NaN.
        for (let c = 0; c < Ev; c++) out[oRow + c] = 0
        if (weights !== null) for (let j = 0; j < Lk; j++) weights[wRow + j] = 0
        continue
      }

      // Stable softmax; a NaN or +Infinity score makes the sum, hence the whole row, NaN.
      let sum = 0
      for (let j = 0; j < Lk; j++) {
        const x = Math.exp(scores[j] - max)
        scores[j] = x
        sum += x
      }

      acc.fill(0)
      for (let j = 0; j < Lk; j++) {
        const w = scores[j] / sum
        if (weights !== null) weights[wRow + j] = w
        if (w === 0) continue
        const vRow = vBase + j * Ev
        for (let c = 0; c < Ev; c++) acc[c] += w * value[vRow + c]
      }
      for (let c = 0; c < Ev; c++) out[oRow + c] = acc[c]
    }
  }
}
