import { Type } from 'typebox'
import { linearBackward as linearGrad } from '../kernels/grad/linear.js'
import { linear as linearKernel, linearInfo } from '../kernels/linear.js'
import { commonFields, StringEnum, TensorSchema } from '../schemas/tensor.js'
import { castTo, computeDtype } from '../tensor/decode.js'
import { buffersOf, defineOperation, resultArray } from './spec.js'
import { elementName, type Explained, explainField, ExplanationSchema, explainOutput, productsText, sumOf, textNumber, unravel } from './explain.js'
import { defineBackward } from './backward.js'

const Body = Type.Object({
  input: TensorSchema,
  weights: TensorSchema,
  bias: Type.Optional(TensorSchema),
  activation: Type.Optional(StringEnum(['none', 'relu', 'sigmoid', 'tanh', 'gelu', 'softmax'], {
    description: 'none (default), relu, sigmoid, tanh, gelu (exact, erf-based) or softmax over the last axis'
  })),
  ...explainField,
  ...commonFields
}, { additionalProperties: false })

const linear = defineOperation({
  name: 'linear',
  summary: 'A layer of neurons: activation(input·weights + bias)',
  description: 'activation(input·weights + bias). input [..., in], weights [in, out], optional bias [out]; the result is ' +
    '[..., out] (a 1-D input [in] gives [out]). Activations: none, relu, sigmoid, tanh, gelu (exact, ' +
    'x·Φ(x) with the error function) and softmax over the last axis; a softmax row that is all -Infinity gives zeros.',
  body: Body,
  example: { input: [[1, 2, 3]], weights: [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], bias: [0.5, -0.5], activation: 'relu', explain: true },
  exampleReply: {
    result: { shape: [1, 2], dtype: 'float64', data: [[2.7, 2.3]] },
    explanation: [
      {
        index: [0, 0],
        products: [[1, 0.1], [2, 0.3], [3, 0.5]],
        bias: 0.5,
        preActivation: 2.7,
        activation: 'relu',
        value: 2.7,
        text: 'out[0,0] = relu(1*0.1 + 2*0.3 + 3*0.5 + 0.5) = 2.7'
      },
      {
        index: [0, 1],
        products: [[1, 0.2], [2, 0.4], [3, 0.6]],
        bias: -0.5,
        preActivation: 2.3,
        activation: 'relu',
        value: 2.3,
        text: 'out[0,1] = relu(1*0.2 + 2*0.4 + 3*0.6 + -0.5) = 2.3'
      }
    ]
  },
  extraReply: { explanation: Type.Optional(ExplanationSchema) },
  prepare (body, decode) {
    const { limits } = decode
    const input = decode.tensor(body.input, 'input')
    const weights = decode.tensor(body.weights, 'weights')
    const bias = body.bias === undefined ? null : decode.tensor(body.bias, 'bias')
    const info = linearInfo(input.shape, weights.shape, bias?.shape ?? null, body.activation ?? 'none', limits)
    const dtype = computeDtype(bias === null ? [input, weights] : [input, weights, bias], body.dtype)
    const id = castTo(input.data, dtype)
    const wd = castTo(weights.data, dtype)
    const bd = bias === null ? null : castTo(bias.data, dtype)
    return {
      task: { dtype, input: id, weights: wd, bias: bd, info },
      transfer: buffersOf(id, wd, bd),
      outputs: [
        { field: 'result', shape: info.outShape, length: info.outElements },
        // (softmax prints each element's row of pre-activations too)
        ...explainOutput(body, info.outElements, info.inFeatures, 'the input features',
          info.inFeatures + (info.activation === 'softmax' ? info.outFeatures : 0))
      ]
    }
  },
  run: ({ dtype, input, weights, bias, info }) => linearKernel(resultArray(dtype, info.outElements), input, weights, bias, info),
  /** out[..., j] = activation(Σ_t input[..., t]·weights[t, j] + bias[j]); softmax over the row of those sums. */
  explain ({ dtype, input, weights, bias, info }, result) {
    const num = textNumber(dtype)
    const { inFeatures: k, outFeatures: n, activation } = info
    const pairsOf = (r: number, j: number): Array<[number, number]> => {
      const pairs: Array<[number, number]> = []
      for (let t = 0; t < k; t++) pairs.push([input[r * k + t], weights[t * n + j]])
      return pairs
    }
    const out: Explained[] = []
    /** Softmax's row of pre-activations, formed once per input row. */
    let row: number[] = []
    for (let f = 0; f < result.length; f++) {
      const index = unravel(f, info.outShape)
      const j = f % n
      const r = Math.floor(f / n)
      if (activation === 'softmax' && j === 0) row = Array.from({ length: n }, (_, c) => sumOf(pairsOf(r, c)) + (bias === null ? 0 : bias[c]))
      const products = pairsOf(r, j)
      const b = bias === null ? undefined : bias[j]
      const sum = productsText(products, num) + (b === undefined ? '' : ` + ${num(b)}`)
      const z = sumOf(products) + (b ?? 0)
      const name = elementName('out', index)
      const value = result[f]
      if (activation === 'softmax') {
        out.push({
          index,
          products,
          bias: b,
          preActivation: z,
          activation,
          row,
          value,
          text: `${name} = softmax([${row.map(num).join(', ')}])[${j}] = ${num(value)}, where ${num(z)} = ${sum}`
        })
      } else if (activation === 'none') {
        out.push({ index, products, bias: b, value, text: `${name} = ${sum} = ${num(value)}` })
      } else {
        out.push({ index, products, bias: b, preActivation: z, activation, value, text: `${name} = ${activation}(${sum}) = ${num(value)}` })
      }
    }
    return out
  }
})

export default linear

/** POST /v1/linear/backward. */
export const linearBackward = defineBackward(linear, {
  operands: ['input', 'weights', 'bias'],
  kernel: (forward, g, outs) => linearGrad(forward.dtype, forward, g, outs),
  work: (info, wrt, withResult) =>
    info.flops * ((info.activation !== 'none' || withResult ? 1 : 0) + wrt.filter(n => n !== 'bias').length) + 2 * info.rows * info.outFeatures,
  description: 'The gradients of activation(input·weights + bias) with respect to input, weights and bias, given gradOutput ' +
    '(of the result\'s shape), as torch.autograd.grad gives them: relu\'(0) = 0, exact gelu\'s derivative Φ(z) + z·φ(z), ' +
    'softmax\'s Jacobian-vector product (a row that was all -Infinity gets zeros). dbias sums over every leading dimension.',
  example: { input: [[1, 2, 3]], weights: [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], bias: [0.5, -0.5], activation: 'relu', gradOutput: [[1, 1]] },
  exampleReply: {
    grads: {
      input: { shape: [1, 3], dtype: 'float64', data: [[0.30000000000000004, 0.7, 1.1]] },
      weights: { shape: [3, 2], dtype: 'float64', data: [[1, 1], [2, 2], [3, 3]] },
      bias: { shape: [2], dtype: 'float64', data: [1, 1] }
    }
  }
})
