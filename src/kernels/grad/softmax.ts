/**
 * The gradient of softmax along its axis, per slice, from the forward values y (torch's
 * softmax_backward_data): softmax g_x = y·(g − Σ g·y); log_softmax g_x = g − e^y·Σ g. A slice that
 * was all -Infinity (zeros, or -Infinity with log) gets zero gradients.
 */
import { forEachSlice, softmax, type SoftmaxOperands } from '../softmax.js'
import type { FloatArray, GradArrays } from '../types.js'

export function softmaxBackward (forward: SoftmaxOperands, g: FloatArray, outs: GradArrays<'input'>): void {
  const { input, info } = forward
  const { n, log } = info
  // the forward values in doubles, as the formulas take them
  const y = softmax(new Float64Array(info.outElements), input, info)
  if (outs.result !== undefined) outs.result.set(y)
  const dx = outs.grads.input
  if (dx === undefined) return
  forEachSlice(info, (first, stride) => {
    let empty = true
    let sum = 0
    for (let j = 0, k = first; j < n; j++, k += stride) {
      if (input[k] !== -Infinity) empty = false
      sum += log ? g[k] : g[k] * y[k]
    }
    if (empty) return // (dx is zeroed)
    for (let j = 0, k = first; j < n; j++, k += stride) dx[k] = log ? g[k] - Math.exp(y[k]) * sum : y[k] * (g[k] - sum)
  })
}
