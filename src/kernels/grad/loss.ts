/**
 * The gradients of loss with respect to input and (values, not class indices) target: see lossGrads.
 */
import { loss, lossGrads, type LossOperands } from '../loss.js'
import type { FloatArray, GradArrays } from '../types.js'

export function lossBackward (forward: LossOperands, g: FloatArray, outs: GradArrays<'input' | 'target'>): void {
  const { input, target, info } = forward
  if (outs.result !== undefined) loss(outs.result, input, target, info)
  lossGrads(input, target, g, info, outs.grads.input, outs.grads.target)
}
