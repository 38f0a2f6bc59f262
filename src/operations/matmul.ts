import { Type } from 'typebox'
import { matmulBackward as matmulGrad } from '../kernels/grad/matmul.js'
import { matmul as matmulKernel, type MatmulInfo, matmulInfo } from '../kernels/matmul.js'
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

const prepareOperands = binaryPrepare(matmulInfo)

const matmul = defineOperation({
  name: 'matmul',
  summary: 'Matrix product, numpy.matmul semantics',
  description: 'numpy.matmul(a, b). 2-D: [m,k]·[k,n] → [m,n]. N-D: the last two dimensions multiply and the ' +
    'leading (batch) dimensions broadcast, e.g. [2,1,3,4]·[5,4,2] → [2,5,3,2]. A 1-D a is treated as [1,k] and a 1-D b as ' +
    '[k,1], and the added dimension is removed from the result ([k]·[k] gives a rank-0 result). Rank-0 operands are refused.',
  body: Body,
  example: { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]], explain: true },
  exampleReply: {
    result: { shape: [2, 2], dtype: 'float64', data: [[19, 22], [43, 50]] },
    explanation: [
      { index: [0, 0], products: [[1, 5], [2, 7]], value: 19, text: 'C[0,0] = 1*5 + 2*7 = 19' },
      { index: [0, 1], products: [[1, 6], [2, 8]], value: 22, text: 'C[0,1] = 1*6 + 2*8 = 22' },
      { index: [1, 0], products: [[3, 5], [4, 7]], value: 43, text: 'C[1,0] = 3*5 + 4*7 = 43' },
      { index: [1, 1], products: [[3, 6], [4, 8]], value: 50, text: 'C[1,1] = 3*6 + 4*8 = 50' }
    ]
  },
  extraReply: { explanation: Type.Optional(ExplanationSchema) },
  prepare (body, decode) {
    const prepared = prepareOperands(body, decode)
    prepared.outputs.push(...explainOutput(body, prepared.task.info.outElements, prepared.task.info.k, 'the shared dimension k'))
    return prepared
  },
  // `threads`: the engine's threads for this product, when the pool gives it idle workers' shares too
  run: (task: BinaryTask<MatmulInfo> & { threads?: number }) =>
    matmulKernel(resultArray(task.dtype, task.info.outElements), task.a, task.b, task.info, task.threads),
  /** C[..., i, j] = Σ_t a[..., i, t]·b[..., t, j]. */
  explain: ({ dtype, a, b, info }, result) => explainSums('C', dtype, result, info.outShape, f => {
    const { m, k, n } = info
    const j = f % n
    const i = Math.floor(f / n) % m
    const batch = Math.floor(f / (m * n))
    const pairs: Array<[number, number]> = []
    for (let t = 0; t < k; t++) pairs.push([a[info.aOffsets[batch] + i * k + t], b[info.bOffsets[batch] + t * n + j]])
    return pairs
  })
})

export default matmul

/** POST /v1/matmul/backward: da = g·bᵀ and db = aᵀ·g, summed over broadcast batches. */
export const matmulBackward = defineBackward(matmul, {
  operands: ['a', 'b'],
  kernel: matmulGrad,
  work: (info, wrt, withResult) => info.flops * (wrt.length + (withResult ? 1 : 0)),
  description: 'The gradients of numpy.matmul(a, b) with respect to a and b, given gradOutput (the gradient of the loss with ' +
    'respect to the result): da = gradOutput·bᵀ and db = aᵀ·gradOutput, each summed over the batch dimensions that broadcast ' +
    'its operand, and of exactly its operand\'s shape (1-D operands included), as torch.autograd.grad gives them.',
  example: { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]], gradOutput: [[1, 0], [0, 1]] },
  exampleReply: {
    grads: {
      a: { shape: [2, 2], dtype: 'float64', data: [[5, 7], [6, 8]] },
      b: { shape: [2, 2], dtype: 'float64', data: [[1, 3], [2, 4]] }
    }
  }
})
