import { type Static, Type } from 'typebox'
import { lossBackward as lossGrad } from '../kernels/grad/loss.js'
import { checkClasses, loss as lossKernel, LOSS_KINDS, type LossInfo, lossInfo, REDUCTIONS } from '../kernels/loss.js'
import { product } from '../kernels/shape.js'
import type { FloatArray } from '../kernels/types.js'
import { CheckedEnum, commonFields, TensorSchema } from '../schemas/tensor.js'
import { castTo, computeDtype } from '../tensor/decode.js'
import type { WireDType } from '../kernels/types.js'
import { buffersOf, defineOperation, resultArray } from './spec.js'
import { defineBackward } from './backward.js'

const Body = Type.Object({
  kind: CheckedEnum([...LOSS_KINDS], {
    description: 'mse, l1, huber, cross_entropy or bce_with_logits (torch.nn.functional.mse_loss, l1_loss, huber_loss, cross_entropy, binary_cross_entropy_with_logits)'
  }),
  input: TensorSchema,
  target: TensorSchema,
  reduction: Type.Optional(CheckedEnum([...REDUCTIONS], { description: 'mean (default), sum, or none (the loss of each element, or of each sample for cross_entropy)' })),
  delta: Type.Optional(Type.Number({ description: 'huber only: where the loss turns from quadratic to linear (default 1)' })),
  labelSmoothing: Type.Optional(Type.Number({ description: 'cross_entropy only: in [0, 1], the share of the uniform distribution mixed into the target (default 0)' })),
  ...commonFields
}, { additionalProperties: false })

interface LossTask { dtype: WireDType, input: FloatArray, target: FloatArray, info: LossInfo }

const loss = defineOperation({
  name: 'loss',
  summary: 'A loss: mse, l1, huber, cross_entropy, bce_with_logits (torch.nn.functional)',
  description: 'The loss of input against target, as torch.nn.functional computes it, reduced by its mean (the default), its sum, ' +
    'or not at all (reduction "none"). mse, l1, huber and bce_with_logits take input and target of the same shape. ' +
    'cross_entropy takes logits [N,C] or [N,C,d…] and a target of class indices (integral numbers in [0, C)) of shape [N] ' +
    'or [N,d…], or of probabilities of the input\'s shape; labelSmoothing mixes it with the uniform distribution, and its ' +
    'mean divides by the number of samples (N·d…). Computed in float64 and stored in the result dtype (that of input, and ' +
    'of target unless it holds class indices).',
  body: Body,
  example: { kind: 'cross_entropy', input: [[2, 0, 0], [0, 0, 0]], target: [0, 2] },
  exampleReply: { result: { shape: [], dtype: 'float64', data: 0.6690785274449971 } },
  prepare (body: Static<typeof Body>, decode) {
    const input = decode.tensor(body.input, 'input')
    const target = decode.tensor(body.target, 'target')
    const info = lossInfo(input.shape, target.shape, body, decode.limits)
    // class indices are checked before any work, and keep their values whatever the dtype (a graph's plan, which
    // has the target's shape but not yet its values, leaves them to the graph's run: ./graph.ts)
    if (target.data.length === product(target.shape)) checkClasses(target.data, info)
    const dtype = computeDtype(info.indices ? [input] : [input, target], body.dtype)
    const x = castTo(input.data, dtype)
    const t = info.indices ? target.data : castTo(target.data, dtype)
    return {
      task: { dtype, input: x, target: t, info } satisfies LossTask,
      transfer: buffersOf(x, t),
      outputs: [{ field: 'result', shape: info.outShape, length: info.outElements }]
    }
  },
  run: ({ dtype, input, target, info }: LossTask) => lossKernel(resultArray(dtype, info.outElements), input, target, info)
})

export default loss

/** POST /v1/loss/backward. */
export const lossBackward = defineBackward(loss, {
  operands: ['input', 'target'],
  constantsOf: (info) => info.indices ? ['target'] : [],
  kernel: lossGrad,
  work: (info, _wrt, withResult) => info.flops * (withResult ? 3 : 2),
  description: 'The gradients of loss with respect to input and target (not a target of class indices), given gradOutput (a ' +
    'scalar for mean and sum, else of the result\'s shape), as torch.autograd.grad gives them; mean divides each by the number ' +
    'of elements (samples for cross_entropy). cross_entropy: d input = g·(softmax(input)·Σt′ − t′) with t′ the smoothed target.',
  example: { kind: 'mse', input: [1, 2], target: [0, 4], gradOutput: 1 },
  exampleReply: {
    grads: {
      input: { shape: [2], dtype: 'float64', data: [1, -2] },
      target: { shape: [2], dtype: 'float64', data: [-1, 2] }
    }
  }
})
