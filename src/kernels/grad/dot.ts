/** The gradients of dot (Σ a·b): da = g·b, db = g·a, with g the scalar output gradient. */
import type { BackwardTask, GradOutputs } from '../../operations/backward.js'
import type { DotTask } from '../../worker/tasks.js'
import { dot } from '../dot.js'

export function dotBackward ({ forward, g, wrt }: BackwardTask<DotTask>, outs: GradOutputs): void {
  const { a, b, info } = forward
  if (outs.result !== undefined) dot(outs.result, a, b, info)
  const s = g[0]
  const da = outs['grads.a']
  const db = outs['grads.b']
  if (da !== undefined && wrt.includes('a')) for (let i = 0; i < info.length; i++) da[i] = s * b[i]
  if (db !== undefined && wrt.includes('b')) for (let i = 0; i < info.length; i++) db[i] = s * a[i]
}
