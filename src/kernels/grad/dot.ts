/** The gradients of dot (Σ a·b): da = g·b, db = g·a, with g the scalar output gradient. */
import { dot, type DotOperands } from '../dot.js'
import type { FloatArray, GradArrays } from '../types.js'

export function dotBackward (forward: DotOperands, g: FloatArray, outs: GradArrays<'a' | 'b'>): void {
  const { a, b, info } = forward
  if (outs.result !== undefined) dot(outs.result, a, b, info)
  const s = g[0]
  const { a: da, b: db } = outs.grads
  if (da !== undefined) for (let i = 0; i < info.length; i++) da[i] = s * b[i]
  if (db !== undefined) for (let i = 0; i < info.length; i++) db[i] = s * a[i]
}
