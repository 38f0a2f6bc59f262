import { Type } from 'typebox'
import { layerNormBackward as layerNormGrad } from '../kernels/grad/layer-norm.js'
import { layerNorm as layerNormKernel, layerNormF32, layerNormInfo } from '../kernels/layer-norm.js'
import { commonFields, Int32AtLeast, TensorSchema } from '../schemas/tensor.js'
import { castTo, computeDtype } from '../tensor/decode.js'
import { buffersOf, defineOperation, resultArray } from './spec.js'
import { defineBackward } from './backward.js'

const Body = Type.Object({
  input: TensorSchema,
  normalizedShape: Type.Array(Int32AtLeast(0), { minItems: 0, maxItems: 8, description: 'The trailing dimensions of input to normalise over, e.g. [512]' }),
  weight: Type.Optional(TensorSchema),
  bias: Type.Optional(TensorSchema),
  eps: Type.Optional(Type.Number({ description: 'Added to the variance (default 1e-5)' })),
  ...commonFields
}, { additionalProperties: false })

const layerNorm = defineOperation({
  name: 'layer_norm',
  summary: 'Layer normalisation (torch.nn.functional.layer_norm)',
  description: '(x − mean) / sqrt(var + eps) · weight + bias over the trailing `normalizedShape` dimensions of input, the mean ' +
    'and the biased variance taken per row of those dimensions, as torch.nn.functional.layer_norm computes it; weight and ' +
    'bias (optional) have the shape normalizedShape. The result has the input\'s shape.',
  body: Body,
  example: { input: [[1, 2, 3], [2, 2, 2]], normalizedShape: [3] },
  exampleReply: { result: { shape: [2, 3], dtype: 'float64', data: [[-1.2247356859083902, 0, 1.2247356859083902], [0, 0, 0]] } },
  prepare (body, decode) {
    const input = decode.tensor(body.input, 'input')
    const weight = body.weight === undefined ? null : decode.tensor(body.weight, 'weight')
    const bias = body.bias === undefined ? null : decode.tensor(body.bias, 'bias')
    const info = layerNormInfo(input.shape, body.normalizedShape, weight?.shape ?? null, bias?.shape ?? null, body.eps ?? 1e-5, decode.limits)
    const dtype = computeDtype([input, ...(weight === null ? [] : [weight]), ...(bias === null ? [] : [bias])], body.dtype)
    const x = castTo(input.data, dtype)
    const w = weight === null ? null : castTo(weight.data, dtype)
    const b = bias === null ? null : castTo(bias.data, dtype)
    return {
      task: { dtype, input: x, weight: w, bias: b, info },
      transfer: buffersOf(x, w, b),
      outputs: [{ field: 'result', shape: info.outShape, length: info.outElements }]
    }
  },
  run ({ dtype, input, weight, bias, info }) {
    const out = resultArray(dtype, info.outElements, false)
    // float32 (and 16-bit): the WebAssembly SIMD kernel (the loops' values, about three times faster); float64: the loops
    if (out instanceof Float32Array && input instanceof Float32Array && !(weight instanceof Float64Array) && !(bias instanceof Float64Array)) {
      return layerNormF32(out, input, weight, bias, info)
    }
    return layerNormKernel(out, input, weight, bias, info)
  }
})

export default layerNorm

/** POST /v1/layer_norm/backward. */
export const layerNormBackward = defineBackward(layerNorm, {
  operands: ['input', 'weight', 'bias'],
  kernel: layerNormGrad,
  work: (info) => info.flops + 10 * info.outElements,
  description: 'The gradients of layer_norm with respect to input, weight and bias, given gradOutput (of the input\'s shape), ' +
    'as torch.autograd.grad gives them: dx = rstd·(dŷ − mean(dŷ) − x̂·mean(dŷ·x̂)) per row with x̂ the normalised input and ' +
    'dŷ = gradOutput·weight; dweight = Σ gradOutput·x̂ and dbias = Σ gradOutput over the rows.',
  example: { input: [[1, 2, 3]], normalizedShape: [3], weight: [1, 1, 1], bias: [0, 0, 0], eps: 0, gradOutput: [[1, 0, 0]] },
  exampleReply: {
    grads: {
      input: { shape: [1, 3], dtype: 'float64', data: [[0.2041241452319317, -0.40824829046386296, 0.20412414523193137]] },
      weight: { shape: [3], dtype: 'float64', data: [-1.224744871391589, 0, 0] },
      bias: { shape: [3], dtype: 'float64', data: [1, 0, 0] }
    }
  }
})
