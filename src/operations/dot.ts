import { Type } from 'typebox'
import { dotInfo } from '../kernels/dot.js'
import { commonFields, TensorSchema } from '../schemas/tensor.js'
import { binaryPrepare, defineOperation } from './spec.js'

const Body = Type.Object({
  a: TensorSchema,
  b: TensorSchema,
  ...commonFields
}, { additionalProperties: false })

export default defineOperation({
  name: 'dot',
  summary: 'Dot product of two same-shaped tensors',
  description: 'The rank-0 sum of a*b over two tensors of the same shape (any rank): the vector dot product, and for ' +
    'matrices or image patches the flattened (Frobenius) product a CNN computes between a kernel and a patch. ' +
    'Empty operands give 0.',
  body: Body,
  example: { a: [1, 2, 3], b: [4, 5, 6] },
  exampleReply: { result: { shape: [], dtype: 'float64', data: 32 } },
  prepare: binaryPrepare(dotInfo)
})
