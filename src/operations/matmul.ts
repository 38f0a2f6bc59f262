import { Type } from 'typebox'
import { matmulBackward as matmulGrad } from '../kernels/grad/matmul.js'
import { matmul as matmulKernel, type MatmulInfo, matmulInfo } from '../kernels/matmul.js'
import { commonFields, TensorSchema } from '../schemas/tensor.js'
import { binaryPrepare, type BinaryTask, defineOperation, resultArray } from './spec.js'
import { defineBackward } from './backward.js'

const Body = Type.Object({
  a: TensorSchema,
  b: TensorSchema,
  ...commonFields
}, { additionalProperties: false })

const matmul = defineOperation({
  name: 'matmul',
  summary: 'Matrix product, numpy.matmul semantics',
  description: 'numpy.matmul(a, b). 2-D: [m,k]·[k,n] → [m,n]. N-D: the last two dimensions multiply and the ' +
    'leading (batch) dimensions broadcast, e.g. [2,1,3,4]·[5,4,2] → [2,5,3,2]. A 1-D a is treated as [1,k] and a 1-D b as ' +
    '[k,1], and the added dimension is removed from the result ([k]·[k] gives a rank-0 result). Rank-0 operands are refused.',
  body: Body,
  example: { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]] },
  exampleReply: { result: { shape: [2, 2], dtype: 'float64', data: [[19, 22], [43, 50]] } },
  prepare: binaryPrepare(matmulInfo),
  // `threads`: the engine's threads for this product, when the pool gives it idle workers' shares too
  run: (task: BinaryTask<MatmulInfo> & { threads?: number }) =>
    matmulKernel(resultArray(task.dtype, task.info.outElements), task.a, task.b, task.info, task.threads)
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
