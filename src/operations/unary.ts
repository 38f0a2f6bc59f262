import { type Static, Type } from 'typebox'
import { unaryBackward as unaryGrad } from '../kernels/grad/unary.js'
import { ENGINE_UNARY, engineElementwise, useEngine } from '../kernels/ort/kernels.js'
import { hasUnaryF32, unary as unaryKernel, unaryF32, UNARY_OPS, type UnaryInfo, unaryInfo } from '../kernels/unary.js'
import { CheckedEnum, commonFields, TensorSchema } from '../schemas/tensor.js'
import { defineOperation, type InputTask, inputPrepare, resultArray } from './spec.js'
import { defineBackward } from './backward.js'

const Body = Type.Object({
  op: CheckedEnum([...UNARY_OPS], {
    description: 'neg, abs, exp, log, sqrt, square, reciprocal, sin, cos, tanh, sigmoid, relu, gelu (exact), silu, softplus ' +
      '(beta 1, threshold 20) or erf, as the torch function of that name computes it'
  }),
  input: TensorSchema,
  ...commonFields
}, { additionalProperties: false })

const unary = defineOperation({
  name: 'unary',
  summary: 'Elementwise op(input): neg, abs, exp, log, sqrt, square, reciprocal, sin, cos, tanh, sigmoid, relu, gelu, silu, softplus, erf',
  description: 'op(input) element by element, of the input\'s shape, as PyTorch computes it: log(0) = -Infinity and log or sqrt of ' +
    'a negative number NaN; relu keeps NaN; gelu is the exact x·Φ(x); silu is x / (1 + e^-x); softplus is log(1 + e^x), and x ' +
    'itself above 20. float16 and bfloat16 are computed in float32 and rounded once.',
  body: Body,
  example: { op: 'relu', input: [[-1.5, 0, 2], [3, -0.25, 1]] },
  exampleReply: { result: { shape: [2, 3], dtype: 'float64', data: [[0, 0, 2], [3, 0, 1]] } },
  prepare: inputPrepare((shape, body: Static<typeof Body>, limits) => unaryInfo(body.op, shape, limits)),
  run ({ dtype, input, info }: InputTask<UnaryInfo>) {
    const out = resultArray(dtype, info.outElements, false)
    if (out instanceof Float32Array && input instanceof Float32Array) {
      // float32 (and 16-bit): the WebAssembly SIMD kernel for the functions that are one correctly rounded operation
      // (the loop's values); from F32_MIN_MACS elements, the engine's vectorised exp, log, sin, cos (within 2e-5 of
      // the loop's, ENGINE_UNARY); else the loop, in doubles
      if (hasUnaryF32(info.op)) return unaryF32(out, input, info)
      const operator = ENGINE_UNARY[info.op]
      if (operator !== undefined && useEngine(info.outElements)) {
        engineElementwise(operator, out, [info.outElements], [[input, [info.outElements]]])
        return out
      }
    }
    return unaryKernel(out, input, info)
  }
})

export default unary

/** POST /v1/unary/backward. */
export const unaryBackward = defineBackward(unary, {
  operands: ['input'],
  kernel: unaryGrad,
  work: (info, _wrt, withResult) => info.outElements * (withResult ? 6 : 5),
  description: 'The gradient of op(input) with respect to input, given gradOutput (of the input\'s shape), as torch.autograd.grad ' +
    'gives it: abs\'(0) = relu\'(0) = 0, relu passes the gradient where the input is NaN, exact gelu\'s derivative Φ(x) + x·φ(x), ' +
    'softplus\'s is 1 above 20.',
  example: { op: 'square', input: [1, -2, 3], gradOutput: [1, 1, 0.5] },
  exampleReply: { grads: { input: { shape: [3], dtype: 'float64', data: [2, -4, 3] } } }
})
