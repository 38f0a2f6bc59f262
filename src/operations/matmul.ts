import { Type } from 'typebox'
import { matmulInfo } from '../kernels/matmul.js'
import { commonFields, TensorSchema } from '../schemas/tensor.js'
import { binaryPrepare, defineOperation } from './spec.js'

const Body = Type.Object({
  a: TensorSchema,
  b: TensorSchema,
  ...commonFields
}, { additionalProperties: false })

export default defineOperation({
  name: 'matmul',
  summary: 'Matrix product, numpy.matmul semantics',
  description: 'numpy.matmul(a, b). 2-D: [m,k]·[k,n] → [m,n]. N-D: the last two dimensions multiply and the ' +
    'leading (batch) dimensions broadcast, e.g. [2,1,3,4]·[5,4,2] → [2,5,3,2]. A 1-D a is treated as [1,k] and a 1-D b as ' +
    '[k,1], and the added dimension is removed from the result ([k]·[k] gives a rank-0 result). Rank-0 operands are refused.',
  body: Body,
  example: { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]] },
  exampleReply: { result: { shape: [2, 2], dtype: 'float64', data: [[19, 22], [43, 50]] } },
  prepare: binaryPrepare(matmulInfo)
})
