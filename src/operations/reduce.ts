import { type Static, Type } from 'typebox'
import { reduceBackward as reduceGrad } from '../kernels/grad/reduce.js'
import { reduce as reduceKernel, REDUCE_OPS, type ReduceInfo, reduceInfo } from '../kernels/reduce.js'
import { CheckedEnum, commonFields, Int32, Int32AtLeast, TensorSchema } from '../schemas/tensor.js'
import { defineOperation, type InputTask, inputPrepare, resultArray } from './spec.js'
import { defineBackward } from './backward.js'

const Body = Type.Object({
  op: CheckedEnum([...REDUCE_OPS], {
    description: 'sum, mean, prod, max (torch.amax), min (torch.amin), var, std, logsumexp or norm (the L2 norm, torch.linalg.vector_norm)'
  }),
  input: TensorSchema,
  axis: Type.Optional(Type.Union([Int32(), Type.Array(Int32(), { maxItems: 8 })], {
    description: 'The axis, or a list of distinct axes, to reduce over, negative from the end (default: every axis)'
  })),
  keepdims: Type.Optional(Type.Boolean({ description: 'Keep each reduced axis as a dimension of size 1 (default false)' })),
  correction: Type.Optional(Int32AtLeast(0, { description: 'var and std: divide by N - correction (default 1, Bessel\'s correction)' })),
  ...commonFields
}, { additionalProperties: false })

const reduce = defineOperation({
  name: 'reduce',
  summary: 'A reduction over axes: sum, mean, prod, max, min, var, std, logsumexp, norm',
  description: 'op over `axis` (an int or a list of distinct ints, negative from the end; default all), as torch computes it ' +
    '(torch.sum, mean, prod, amax, amin, var, std, logsumexp, linalg.vector_norm), in float64 and stored in the result dtype. ' +
    'keepdims keeps the reduced axes as size 1. var and std divide by max(0, N - correction) (correction defaults to 1). NaN ' +
    'propagates (max and min too); the mean of nothing is NaN, its sum 0 and its product 1; max or min over an axis of size 0 ' +
    'is INVALID_ARGUMENT, as is an axis out of range, repeated, or an empty list.',
  body: Body,
  example: { op: 'sum', input: [[1, 2, 3], [4, 5, 6]], axis: 0 },
  exampleReply: { result: { shape: [3], dtype: 'float64', data: [5, 7, 9] } },
  prepare: inputPrepare((shape, body: Static<typeof Body>, limits) =>
    reduceInfo(body.op, shape, body.axis, body.keepdims === true, body.correction ?? 1, limits)),
  run: ({ dtype, input, info }: InputTask<ReduceInfo>) => reduceKernel(resultArray(dtype, info.outElements), input, info)
})

export default reduce

/** POST /v1/reduce/backward. */
export const reduceBackward = defineBackward(reduce, {
  operands: ['input'],
  kernel: reduceGrad,
  work: (info) => info.flops + 4 * info.inElements,
  description: 'The gradient of the reduction with respect to input, given gradOutput (of the result\'s shape), as ' +
    'torch.autograd.grad gives it: max and min share the gradient equally among the elements equal to the result; prod\'s ' +
    'is the product of the other elements (right with zeros); std\'s and norm\'s are 0 where the result is 0.',
  example: { op: 'max', input: [[1, 3, 3], [2, 0, 1]], axis: 1, gradOutput: [1, 1] },
  exampleReply: { grads: { input: { shape: [2, 3], dtype: 'float64', data: [[0, 0.5, 0.5], [1, 0, 0]] } } }
})
