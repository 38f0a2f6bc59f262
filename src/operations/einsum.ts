import { Type, type Static } from 'typebox'
import { einsumInfo, MAX_OPERANDS, parseEinsum } from '../kernels/einsum.js'
import { commonFields, TensorSchema } from '../schemas/tensor.js'
import { castTo, computeDtype } from '../tensor/decode.js'
import { buffersOf, defineOperation, type Decoder } from './spec.js'

/** Longest equation: 8 operands of rank 8 with an ellipsis each take about 110 characters; spaces may pad it. */
export const MAX_EQUATION_LENGTH = 512

export const einsumFields = {
  equation: Type.String({
    minLength: 0,
    maxLength: MAX_EQUATION_LENGTH,
    description: 'numpy.einsum subscripts: a comma-separated list of subscripts per operand (letters a-z, A-Z and at most one ' +
      '"..." each), then optionally "->" and the output\'s subscripts; spaces are ignored. Without "->" the output is ' +
      'the "..." dimensions, then the subscripts that appear exactly once, in alphabetical order (upper case first).'
  }),
  operands: Type.Array(TensorSchema, {
    minItems: 1,
    maxItems: MAX_OPERANDS,
    description: `1 to ${MAX_OPERANDS} tensors, one per comma-separated term of the equation`
  })
}

const Body = Type.Object({ ...einsumFields, ...commonFields }, { additionalProperties: false })

/** The operands decoded (named operands.0, operands.1, …), the equation read against their shapes, and the compute dtype. */
export function readEinsum (body: Static<typeof Body>, decode: Decoder) {
  const operands = body.operands.map((t, i) => decode.tensor(t, `operands.${i}`))
  const spec = parseEinsum(body.equation, operands.map(o => o.shape))
  const dtype = computeDtype(operands, body.dtype)
  return { spec, dtype, data: operands.map(o => castTo(o.data, dtype)) }
}

export default defineOperation<Static<typeof Body>>({
  name: 'einsum',
  summary: 'Einstein summation, numpy.einsum semantics',
  description: 'numpy.einsum(equation, *operands): e.g. "ij,jk->ik" (matmul), "bhqd,bhkd->bhqk" (attention scores), ' +
    '"bi,ij,bj->b" (a bilinear form), "i,j->ij" (outer), "ii" (trace), "ii->i" (diagonal), "ij->ji" (transpose), ' +
    '"...ij,...jk->...ik" (batched, broadcast). A subscript repeated in one operand takes its diagonal; a subscript ' +
    'left out of the output is summed; a subscript\'s sizes must agree across operands or be 1 (broadcast), as the ' +
    'dimensions under "..." broadcast. Three or more operands are contracted two at a time in an order that keeps ' +
    'the intermediate results small; MAX_ELEMENTS applies to every intermediate and MAX_FLOPS to the whole plan. ' +
    'A malformed equation is INVALID_ARGUMENT with the position (counted from 0); sizes that disagree are SHAPE_MISMATCH.',
  body: Body,
  example: {
    equation: 'bqd,bkd->bqk',
    operands: [[[[1, 0], [0, 1]]], [[[1, 2], [3, 4], [5, 6]]]]
  },
  prepare (body, decode) {
    const { spec, dtype, data } = readEinsum(body, decode)
    const info = einsumInfo(spec, decode.limits)
    return {
      task: { dtype, operands: data, info: { flops: info.flops, programs: info.programs, outElements: info.outElements } },
      transfer: buffersOf(...data),
      outputs: [{ field: 'result', shape: info.outShape, length: info.outElements }]
    }
  }
})
