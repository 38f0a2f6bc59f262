/** The plain TypeScript dot product, kept as the reference for the fast kernel. */
import type { DotInfo } from '../dot.js'
import type { FloatArray } from '../types.js'

export function dotReference (out: FloatArray, a: FloatArray, b: FloatArray, info: DotInfo): FloatArray {
  let s = 0
  for (let i = 0; i < info.length; i++) s += a[i] * b[i]
  out[0] = s
  return out
}
