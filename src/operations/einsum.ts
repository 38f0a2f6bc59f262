import { Type, type Static } from 'typebox'
import { invalidArgument } from '../errors.js'
import { einsum as einsumKernel, einsumBackwardInfo, einsumInfo, MAX_OPERANDS, parseEinsum, type Program } from '../kernels/einsum.js'
import { type FloatArray, kernelDtype, type WireDType } from '../kernels/types.js'
import { commonFields, Int32, ResultTensorSchema, TensorSchema } from '../schemas/tensor.js'
import { castTo, computeDtype } from '../tensor/decode.js'
import { backwardFields, checkGradOutput } from './backward.js'
import { buffersOf, defineOperation, type Decoder, type Prepared, resultArray } from './spec.js'

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

/** An einsum task: the operands (and for the gradients, gradOutput last) and the contraction programs. */
interface EinsumTask { dtype: WireDType, operands: FloatArray[], info: { flops: number, programs: Program[], outElements: number } }

/** The programs' outputs, one after the other (src/kernels/einsum.ts): the result, or the gradients (and the result). */
function run ({ dtype, operands, info }: EinsumTask): FloatArray {
  const length = info.programs.reduce((n, p) => n + p.outLength, 0)
  return einsumKernel(resultArray(dtype, length), operands, info.programs, kernelDtype(dtype))
}

/** The operands decoded (named operands.0, operands.1, …), the equation read against their shapes, and the compute dtype. */
function readEinsum (body: Static<typeof Body>, decode: Decoder) {
  const operands = body.operands.map((t, i) => decode.tensor(t, `operands.${i}`))
  const spec = parseEinsum(body.equation, operands.map(o => o.shape))
  const dtype = computeDtype(operands, body.dtype)
  return { spec, dtype, data: operands.map(o => castTo(o.data, dtype)) }
}

const einsum = defineOperation({
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
  exampleReply: { result: { shape: [1, 2, 3], dtype: 'float64', data: [[[1, 3, 5], [2, 4, 6]]] } },
  prepare (body, decode): Prepared<EinsumTask> {
    const { spec, dtype, data } = readEinsum(body, decode)
    const info = einsumInfo(spec, decode.limits)
    return {
      task: { dtype, operands: data, info: { flops: info.flops, programs: info.programs, outElements: info.outElements } },
      transfer: buffersOf(...data),
      outputs: [{ field: 'result', shape: info.outShape, length: info.outElements }]
    }
  },
  run
})

export default einsum

const BackwardBody = Type.Object({
  ...einsumFields,
  gradOutput: backwardFields.gradOutput,
  wrt: Type.Optional(Type.Array(Int32(), {
    maxItems: 16,
    description: 'The operands to differentiate, by index (default: every operand)'
  })),
  returnResult: backwardFields.returnResult,
  ...commonFields
}, { additionalProperties: false })

/** The operands to differentiate, by index, in order: every one by default. */
function resolveWrt (wrt: number[] | undefined, n: number): number[] {
  if (wrt === undefined) return [...Array(n).keys()]
  if (wrt.length === 0) throw invalidArgument(`wrt is empty: give at least one operand index, 0 to ${n - 1}`)
  for (const [j, i] of wrt.entries()) {
    if (!(i >= 0 && i < n)) throw invalidArgument(`wrt names operand ${i}, but the operands are 0 to ${n - 1}`)
    if (wrt.indexOf(i) !== j) throw invalidArgument(`wrt names operand ${i} twice`)
  }
  return [...wrt].sort((x, y) => x - y)
}

/**
 * The gradients of einsum: each one is itself an einsum of gradOutput and the other operands
 * (src/kernels/einsum.ts, einsumBackwardInfo), computed by the same run step as the forward.
 */
export const einsumBackward = defineOperation({
  name: 'einsumBackward',
  path: 'einsum/backward',
  summary: 'Gradients of einsum (vector-Jacobian product, as torch.autograd.grad)',
  description: 'The gradients of numpy.einsum(equation, *operands) with respect to the operands listed in wrt (indices; ' +
    'default all), given gradOutput (the gradient of the loss with respect to the result, of its shape). The gradient of ' +
    'an operand is the einsum of gradOutput and the other operands into that operand\'s subscripts: summed over the ' +
    'dimensions where it broadcast (size 1 or under "..."), constant along a subscript only it has, and zero off the ' +
    'diagonal of a repeated subscript, as torch.autograd.grad gives it. The reply is {"grads": {"operands": [...]}}, ' +
    'one entry per operand (null where not asked for), and "result" with returnResult.',
  body: BackwardBody,
  example: {
    equation: 'ij,jk->ik',
    operands: [[[1, 2], [3, 4]], [[5, 6], [7, 8]]],
    gradOutput: [[1, 0], [0, 1]]
  },
  exampleReply: {
    grads: {
      operands: [
        { shape: [2, 2], dtype: 'float64', data: [[5, 7], [6, 8]] },
        { shape: [2, 2], dtype: 'float64', data: [[1, 3], [2, 4]] }
      ]
    }
  },
  reply: {
    grads: Type.Object({
      operands: Type.Array(Type.Union([ResultTensorSchema, Type.Null()]), {
        maxItems: MAX_OPERANDS,
        description: 'One entry per operand: its gradient, of its shape, or null when not asked for'
      })
    }, { additionalProperties: false }),
    result: Type.Optional(ResultTensorSchema)
  },
  prepare (body, decode): Prepared<EinsumTask> {
    const { spec, dtype, data } = readEinsum(body, decode)
    const wrt = resolveWrt(body.wrt, data.length)
    const g = decode.tensor(body.gradOutput, 'gradOutput')
    checkGradOutput(g.shape, spec.outShape)
    const returnResult = body.returnResult === true
    const info = einsumBackwardInfo(spec, wrt, returnResult, decode.limits)
    const gd = castTo(g.data, dtype)
    const outputs: Prepared['outputs'] = spec.shapes.map((shape, i) => {
      const grad = info.grads.find(x => x.operand === i)
      return grad === undefined
        ? { field: `grads.operands.${i}`, shape, length: 0, absent: true }
        : { field: `grads.operands.${i}`, shape, length: grad.length }
    })
    if (returnResult) outputs.push({ field: 'result', shape: info.outShape, length: info.outElements })
    const task = { dtype, operands: [...data, gd], info: { flops: info.flops, programs: info.programs, outElements: info.outElements } }
    return {
      task,
      transfer: buffersOf(...data, gd),
      outputs
    }
  },
  run
})
