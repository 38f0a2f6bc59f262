/**
 * The gradient of pool2d with respect to its input (torch's max_pool2d_with_indices_backward and
 * avg_pool2d_backward): see pool2dInputGrad.
 */
import { pool2d, type Pool2dOperands, pool2dInputGrad } from '../pool2d.js'
import type { FloatArray, GradArrays } from '../types.js'

export function pool2dBackward (forward: Pool2dOperands, g: FloatArray, outs: GradArrays<'input'>): void {
  const { input, info } = forward
  if (outs.result !== undefined) pool2d(outs.result, input, info)
  if (outs.grads.input !== undefined) pool2dInputGrad(outs.grads.input, input, g, info)
}
