/** The plain TypeScript linear layer, kept as the reference for the fast kernel. */
import { applyActivation } from '../activations.js'
import type { LinearInfo } from '../linear.js'
import type { FloatArray } from '../types.js'
import { gemmReference } from './matmul.js'

export function linearReference (out: FloatArray, input: FloatArray, weights: FloatArray, bias: FloatArray | null, info: LinearInfo): FloatArray {
  const { rows, inFeatures, outFeatures } = info
  gemmReference(out, 0, input, 0, weights, 0, rows, inFeatures, outFeatures)
  if (bias !== null) {
    for (let r = 0; r < rows; r++) {
      const o = r * outFeatures
      for (let j = 0; j < outFeatures; j++) out[o + j] += bias[j]
    }
  }
  applyActivation(out, info.activation, rows, outFeatures)
  return out
}
