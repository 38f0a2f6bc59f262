import { Type } from 'typebox'
import { dot as dotKernel, type DotInfo, dotInfo } from '../kernels/dot.js'
import { dotBackward as dotGrad } from '../kernels/grad/dot.js'
import { commonFields, TensorSchema } from '../schemas/tensor.js'
import { binaryPrepare, type BinaryTask, defineOperation, resultArray } from './spec.js'
import { explainField, ExplanationSchema, explainOutput, explainSums } from './explain.js'
import { defineBackward } from './backward.js'

const Body = Type.Object({
  a: TensorSchema,
  b: TensorSchema,
  ...explainField,
  ...commonFields
}, { additionalProperties: false })

const prepareOperands = binaryPrepare(dotInfo)

const dot = defineOperation({
  name: 'dot',
  summary: 'Dot product of two same-shaped tensors',
  description: 'The rank-0 sum of a*b over two tensors of the same shape (any rank): the vector dot product, and for ' +
    'matrices or image patches the flattened (Frobenius) product a CNN computes between a kernel and a patch. ' +
    'Empty operands give 0.',
  body: Body,
  example: { a: [1, 2, 3], b: [4, 5, 6], explain: true },
  exampleReply: {
    result: { shape: [], dtype: 'float64', data: 32 },
    explanation: [{ index: [], products: [[1, 4], [2, 5], [3, 6]], value: 32, text: 'a·b = 1*4 + 2*5 + 3*6 = 32' }]
  },
  extraReply: { explanation: Type.Optional(ExplanationSchema) },
  prepare (body, decode) {
    const prepared = prepareOperands(body, decode)
    prepared.outputs.push(...explainOutput(body, 1, prepared.task.info.length, 'the operands\' length'))
    return prepared
  },
  run: (task: BinaryTask<DotInfo>) => dotKernel(resultArray(task.dtype, 1), task.a, task.b, task.info),
  /** a·b = Σ a[t]·b[t] over the flattened operands. */
  explain: ({ dtype, a, b, info }, result) => explainSums('a·b', dtype, result, [], () => {
    const pairs: Array<[number, number]> = []
    for (let t = 0; t < info.length; t++) pairs.push([a[t], b[t]])
    return pairs
  })
})

export default dot

/** POST /v1/dot/backward: da = g·b, db = g·a. */
export const dotBackward = defineBackward(dot, {
  operands: ['a', 'b'],
  kernel: dotGrad,
  work: (info, wrt, withResult) => info.flops * (wrt.length + (withResult ? 1 : 0)),
  description: 'The gradients of dot(a, b) = Σ a·b with respect to a and b, given the rank-0 gradOutput g: da = g·b, db = g·a.',
  example: { a: [1, 2, 3], b: [4, 5, 6], gradOutput: 1 },
  exampleReply: {
    grads: {
      a: { shape: [3], dtype: 'float64', data: [4, 5, 6] },
      b: { shape: [3], dtype: 'float64', data: [1, 2, 3] }
    }
  }
})
