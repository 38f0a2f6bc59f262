/** The plain TypeScript linear layer, kept as the reference for the fast kernel. */
import { biasAndActivation, type LinearInfo } from '../linear.js'
import type { FloatArray } from '../types.js'
import { gemmReference } from './matmul.js'

export function linearReference (out: FloatArray, input: FloatArray, weights: FloatArray, bias: FloatArray | null, info: LinearInfo): FloatArray {
  gemmReference(out, 0, input, 0, weights, 0, info.rows, info.inFeatures, info.outFeatures)
  return biasAndActivation(out, bias, info)
}
