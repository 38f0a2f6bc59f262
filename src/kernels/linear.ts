/**
 * linear: activation(input·weights + bias) — a layer of neurons. input [..., in],
 * weights [in, out], bias [out]; the result is [..., out] (a 1-D input gives [out]).
 */
import { invalidArgument, shapeMismatch } from '../errors.js'
import { ACTIVATIONS, type Activation, applyActivation } from './activations.js'
import { gemm } from './matmul.js'
import { checkFlops, elementCount, formatShape } from './shape.js'
import type { FloatArray, Limits } from './types.js'

export interface LinearOperands { input: FloatArray, weights: FloatArray, bias: FloatArray | null, info: LinearInfo }

export interface LinearInfo {
  rows: number
  inFeatures: number
  outFeatures: number
  hasBias: boolean
  activation: Activation
  outShape: number[]
  outElements: number
  flops: number
}

export function linearInfo (inputShape: number[], weightsShape: number[], biasShape: number[] | null, activation: string, limits: Limits): LinearInfo {
  if (!(ACTIVATIONS as readonly string[]).includes(activation)) {
    throw invalidArgument(`activation must be one of ${ACTIVATIONS.join(', ')}; got ${JSON.stringify(activation)}`)
  }
  if (inputShape.length === 0) throw shapeMismatch('input is a rank-0 tensor (a scalar); linear needs input of shape [..., in]')
  if (weightsShape.length !== 2) {
    throw shapeMismatch(`weights must be 2-D [in, out]; got weights ${formatShape(weightsShape)} of rank ${weightsShape.length}`)
  }
  elementCount(inputShape, 'input', limits)
  elementCount(weightsShape, 'weights', limits)
  const inFeatures = inputShape[inputShape.length - 1]
  const [win, outFeatures] = weightsShape
  if (inFeatures !== win) {
    throw shapeMismatch(
      `input ${formatShape(inputShape)} and weights ${formatShape(weightsShape)} do not go together: ` +
      `input's last dimension (${inFeatures}) must equal weights' dimension 0 (${win})`
    )
  }
  if (biasShape !== null && !(biasShape.length === 1 && biasShape[0] === outFeatures)) {
    throw shapeMismatch(`bias ${formatShape(biasShape)} does not go with weights ${formatShape(weightsShape)}: bias must have shape [${outFeatures}] (weights' dimension 1, the outputs)`)
  }
  const outShape = [...inputShape.slice(0, -1), outFeatures]
  const outElements = elementCount(outShape, 'the result', limits)
  const rows = inputShape.slice(0, -1).reduce((p, d) => p * d, 1)
  const flops = 2 * rows * inFeatures * outFeatures
  checkFlops(flops, 'this linear layer', limits)
  return { rows, inFeatures, outFeatures, hasBias: biasShape !== null, activation: activation as Activation, outShape, outElements, flops }
}

export function linear (out: FloatArray, input: FloatArray, weights: FloatArray, bias: FloatArray | null, info: LinearInfo): FloatArray {
  gemm(out, 0, input, 0, weights, 0, info.rows, info.inFeatures, info.outFeatures)
  return biasAndActivation(out, bias, info)
}

/** The rest of a linear layer once out holds input·weights: + bias, then the activation, in place. */
export function biasAndActivation (out: FloatArray, bias: FloatArray | null, info: LinearInfo): FloatArray {
  const { rows, outFeatures } = info
  if (bias !== null) {
    for (let r = 0; r < rows; r++) {
      const o = r * outFeatures
      for (let j = 0; j < outFeatures; j++) out[o + j] += bias[j]
    }
  }
  applyActivation(out, info.activation, rows, outFeatures)
  return out
}
