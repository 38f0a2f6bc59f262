import { type Static, Type } from 'typebox'
import { softmaxBackward as softmaxGrad } from '../kernels/grad/softmax.js'
import { engineSoftmaxRows, useEngine } from '../kernels/ort/kernels.js'
import { softmax as softmaxKernel, type SoftmaxInfo, softmaxInfo } from '../kernels/softmax.js'
import { commonFields, Int32, TensorSchema } from '../schemas/tensor.js'
import { defineOperation, type InputTask, inputPrepare, resultArray } from './spec.js'
import { defineBackward } from './backward.js'

const Body = Type.Object({
  input: TensorSchema,
  axis: Type.Optional(Int32({ description: 'The axis the softmax runs along, negative from the end (default -1)' })),
  log: Type.Optional(Type.Boolean({ description: 'log_softmax instead of softmax (default false)' })),
  ...commonFields
}, { additionalProperties: false })

const softmax = defineOperation({
  name: 'softmax',
  summary: 'softmax or log_softmax along one axis (torch.softmax, torch.log_softmax)',
  description: 'exp(x − max) / Σ exp(x − max) along `axis` (default -1, the last), of the input\'s shape; with "log": true, ' +
    'log_softmax, x − max − log Σ exp(x − max). A slice that is all -Infinity gives zeros (log: -Infinity), never NaN; a ' +
    'NaN or +Infinity in a slice makes that slice NaN, as in PyTorch. An axis out of range is INVALID_ARGUMENT.',
  body: Body,
  example: { input: [[1, 2, 3], [1, 1, 1]] },
  exampleReply: {
    result: { shape: [2, 3], dtype: 'float64', data: [[0.09003057317038046, 0.24472847105479764, 0.6652409557748218], [0.3333333333333333, 0.3333333333333333, 0.3333333333333333]] }
  },
  prepare: inputPrepare((shape, body: Static<typeof Body>, limits) => softmaxInfo(shape, body.axis ?? -1, body.log === true, limits)),
  run ({ dtype, input, info }: InputTask<SoftmaxInfo>) {
    const out = resultArray(dtype, info.outElements, false)
    // float32 (and 16-bit) slices along the last axis, from F32_MIN_MACS elements: the engine's vectorised softmax
    // (4 to 10 times the plain loop's speed, within 3e-6 of the float64 result); else the loop, in doubles
    if (out instanceof Float32Array && input instanceof Float32Array && info.inner === 1 && info.n > 0 && useEngine(info.outElements)) {
      engineSoftmaxRows(out, input, info.outer, info.n, info.log)
      return out
    }
    return softmaxKernel(out, input, info)
  }
})

export default softmax

/** POST /v1/softmax/backward. */
export const softmaxBackward = defineBackward(softmax, {
  operands: ['input'],
  kernel: softmaxGrad,
  work: (info, _wrt, withResult) => info.flops + info.outElements * (withResult ? 5 : 4),
  description: 'The gradient of softmax (or log_softmax) with respect to input, given gradOutput (of the input\'s shape), as ' +
    'torch.autograd.grad gives it: y·(g − Σ g·y) along the axis, and for log_softmax g − e^y·Σ g. A slice that was all ' +
    '-Infinity gets zero gradients.',
  example: { input: [0, 0], gradOutput: [1, 0] },
  exampleReply: { grads: { input: { shape: [2], dtype: 'float64', data: [0.25, -0.25] } } }
})
