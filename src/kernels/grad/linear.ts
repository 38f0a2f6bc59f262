/**
 * The gradients of linear, y = act(z) with z = input·weights + bias: gz = g·act'(z) (for softmax,
 * its Jacobian-vector product y·(g − Σ g·y)), then dinput = gz·weightsᵀ, dweights = inputᵀ·gz and
 * dbias = Σ_rows gz. PyTorch's conventions: relu'(0) = 0 (and relu passes the gradient of a NaN
 * input, as torch's threshold_backward does); exact gelu's derivative Φ(z) + z·φ(z); a softmax row
 * that was all −∞ (zeros forward) gets zero gradients.
 */
import { erfc } from '../erf.js'
import { biasAndActivation, type LinearOperands } from '../linear.js'
import { gemm } from '../matmul.js'
import { allocate, type FloatArray, type GradArrays, type WireDType } from '../types.js'
import { productT } from './common.js'

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI)

export function linearBackward (dtype: WireDType, forward: LinearOperands, g: FloatArray, outs: GradArrays<'input' | 'weights' | 'bias'>): void {
  const { input, weights, bias, info } = forward
  const { rows, inFeatures: I, outFeatures: O, activation } = info
  const n = rows * O
  // the forward pass, kept where the activation's derivative needs it
  let z: FloatArray | null = null
  let y: FloatArray | null = outs.result ?? null
  if (activation !== 'none' || y !== null) {
    z = allocate(dtype, n)
    gemm(z, 0, input, 0, weights, 0, rows, I, O)
    if (bias !== null) for (let r = 0; r < rows; r++) for (let j = 0; j < O; j++) z[r * O + j] += bias[j]
    if (y === null) y = allocate(dtype, n)
    y.set(z)
    biasAndActivation(y, null, info)
  }
  const gz = activation === 'none' ? g : activationGrad(g, z as FloatArray, y as FloatArray, activation, rows, O, dtype)
  const { input: dInput, weights: dWeights, bias: dBias } = outs.grads
  if (dInput !== undefined) {
    productT(dInput, 0, gz, 0, false, weights, 0, true, 1, rows, O, I)
  }
  if (dWeights !== undefined) {
    productT(dWeights, 0, input, 0, true, gz, 0, false, 1, I, rows, O)
  }
  if (dBias !== undefined) {
    for (let r = 0; r < rows; r++) for (let j = 0; j < O; j++) dBias[j] += gz[r * O + j]
  }
}

function activationGrad (g: FloatArray, z: FloatArray, y: FloatArray, activation: string, rows: number, n: number, dtype: WireDType): FloatArray {
  const gz = allocate(dtype, g.length)
  switch (activation) {
    case 'relu':
      for (let i = 0; i < g.length; i++) gz[i] = z[i] <= 0 ? 0 : g[i]
      break
    case 'sigmoid':
      for (let i = 0; i < g.length; i++) gz[i] = g[i] * y[i] * (1 - y[i])
      break
    case 'tanh':
      for (let i = 0; i < g.length; i++) gz[i] = g[i] * (1 - y[i] * y[i])
      break
    case 'gelu':
      for (let i = 0; i < g.length; i++) {
        const v = z[i]
        gz[i] = g[i] * (0.5 * erfc(-v * Math.SQRT1_2) + v * INV_SQRT_2PI * Math.exp(-0.5 * v * v))
      }
      break
    case 'softmax':
      for (let r = 0; r < rows; r++) {
        const o = r * n
        let dot = 0
        for (let j = 0; j < n; j++) dot += g[o + j] * y[o + j]
        for (let j = 0; j < n; j++) gz[o + j] = y[o + j] * (g[o + j] - dot)
      }
      break
  }
  return gz
}
