/**
 * The gradients of layer_norm (torch's layer_norm_backward), per row with x̂ = (x − mean)·rstd and
 * dŷ = g·weight (g without a weight): dx = rstd·(dŷ − mean(dŷ) − x̂·mean(dŷ·x̂)); dweight = Σ_rows g·x̂;
 * dbias = Σ_rows g.
 */
import { layerNorm, type LayerNormOperands, rowStats } from '../layer-norm.js'
import type { FloatArray, GradArrays } from '../types.js'

export function layerNormBackward (forward: LayerNormOperands, g: FloatArray, outs: GradArrays<'input' | 'weight' | 'bias'>): void {
  const { input: x, weight, bias, info } = forward
  const { rows, n } = info
  if (outs.result !== undefined) layerNorm(outs.result, x, weight, bias, info)
  const { input: dx, weight: dw, bias: db } = outs.grads
  const { mean, rstd } = rowStats(x, info)
  // the weight's and bias's sums over rows, in doubles
  const sw = dw === undefined ? null : new Float64Array(n)
  const sb = db === undefined ? null : new Float64Array(n)
  for (let r = 0; r < rows; r++) {
    const o = r * n
    let a = 0 // Σ dŷ
    let b = 0 // Σ dŷ·x̂
    for (let j = 0; j < n; j++) {
      const xh = (x[o + j] - mean[r]) * rstd[r]
      const dyh = weight === null ? g[o + j] : g[o + j] * weight[j]
      a += dyh
      b += dyh * xh
      if (sw !== null) sw[j] += g[o + j] * xh
      if (sb !== null) sb[j] += g[o + j]
    }
    if (dx === undefined) continue
    for (let j = 0; j < n; j++) {
      const xh = (x[o + j] - mean[r]) * rstd[r]
      const dyh = weight === null ? g[o + j] : g[o + j] * weight[j]
      dx[o + j] = rstd[r] * (dyh - a / n - xh * (b / n))
    }
  }
  if (dw !== undefined && sw !== null) dw.set(sw)
  if (db !== undefined && sb !== null) db.set(sb)
}
