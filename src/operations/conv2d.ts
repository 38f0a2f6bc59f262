import { Type } from 'typebox'
import { conv2d as conv2dKernel, conv2dInfo } from '../kernels/conv2d.js'
import { conv2dBackward as conv2dGrad, conv2dBackwardCheck } from '../kernels/grad/conv2d.js'
import { commonFields, Int32AtLeast, intOrPair, StringEnum, TensorSchema } from '../schemas/tensor.js'
import { castTo, computeDtype } from '../tensor/decode.js'
import { buffersOf, defineOperation, resultArray } from './spec.js'
import { defineBackward } from './backward.js'

const Body = Type.Object({
  input: TensorSchema,
  kernel: TensorSchema,
  bias: Type.Optional(TensorSchema),
  stride: Type.Optional(Type.Union(intOrPair(1), { description: 'Stride, an integer >= 1 or [sh, sw]; default 1' })),
  padding: Type.Optional(Type.Union([
    StringEnum(['valid', 'same'], {}),
    ...intOrPair(0)
  ], { description: '"valid" (default, no padding), "same" (stride 1; PyTorch placement: the extra row/column of an even kernel goes bottom/right), an integer >= 0, or [ph, pw]' })),
  dilation: Type.Optional(Type.Union(intOrPair(1), { description: 'Dilation, an integer >= 1 or [dh, dw]; default 1' })),
  groups: Type.Optional(Int32AtLeast(1, { description: 'Channel groups, dividing both C and K; default 1 (C = groups gives a depthwise convolution)' })),
  layout: Type.Optional(StringEnum(['NCHW', 'NHWC'], { description: 'NCHW (default, PyTorch) or NHWC (TensorFlow)' })),
  ...commonFields
}, { additionalProperties: false })

const conv2d = defineOperation({
  name: 'conv2d',
  summary: 'Multi-channel 2-D convolution, torch.nn.functional.conv2d semantics',
  description: 'torch.nn.functional.conv2d: cross-correlation (no kernel flip). NCHW: input [N,C,H,W] or [C,H,W], kernel ' +
    '[K,C/groups,kh,kw], result [N,K,OH,OW] (or [K,OH,OW]). NHWC: input [N,H,W,C] or [H,W,C], kernel [kh,kw,C/groups,K], ' +
    'result [N,OH,OW,K] (or [OH,OW,K]). Optional bias [K]. OH = floor((H + padding - dilation·(kh-1) - 1)/stride) + 1.',
  body: Body,
  example: {
    input: [[[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]],
    kernel: [[[[1, 0], [0, -1]]]],
    bias: [0.5],
    stride: 1,
    padding: 'valid'
  },
  exampleReply: { result: { shape: [1, 1, 2, 2], dtype: 'float64', data: [[[[-3.5, -3.5], [-3.5, -3.5]]]] } },
  prepare (body, decode) {
    const { limits } = decode
    const input = decode.tensor(body.input, 'input')
    const kernel = decode.tensor(body.kernel, 'kernel')
    const bias = body.bias === undefined ? null : decode.tensor(body.bias, 'bias')
    const info = conv2dInfo(input.shape, kernel.shape, bias?.shape ?? null, {
      stride: body.stride,
      padding: body.padding,
      dilation: body.dilation,
      groups: body.groups,
      layout: body.layout
    }, limits)
    const dtype = computeDtype(bias === null ? [input, kernel] : [input, kernel, bias], body.dtype)
    const id = castTo(input.data, dtype)
    const kd = castTo(kernel.data, dtype)
    const bd = bias === null ? null : castTo(bias.data, dtype)
    return {
      task: { dtype, input: id, kernel: kd, bias: bd, info },
      transfer: buffersOf(id, kd, bd),
      outputs: [{ field: 'result', shape: info.outShape, length: info.outElements }]
    }
  },
  run: ({ dtype, input, kernel, bias, info }) => conv2dKernel(resultArray(dtype, info.outElements), input, kernel, bias, info)
})

export default conv2d

/** POST /v1/conv2d/backward. */
export const conv2dBackward = defineBackward(conv2d, {
  operands: ['input', 'kernel', 'bias'],
  kernel: (forward, g, outs) => conv2dGrad(forward.dtype, forward, g, outs),
  work: (info, wrt, withResult) => info.flops * (wrt.filter(n => n !== 'bias').length + (withResult ? 1 : 0)) + info.outElements,
  check: conv2dBackwardCheck,
  description: 'The gradients of conv2d with respect to input, kernel and bias, given gradOutput (of the result\'s shape), for ' +
    'every option of the forward route (stride, padding, dilation, groups, NCHW and NHWC, unbatched input), as torch.autograd.grad ' +
    'gives them: each of its operand\'s shape and layout; padded taps get no gradient; dbias sums over images and positions.',
  example: {
    input: [[[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]],
    kernel: [[[[1, 0], [0, -1]]]],
    bias: [0.5],
    stride: 1,
    padding: 'valid',
    gradOutput: [[[[1, 0], [0, 1]]]]
  },
  exampleReply: {
    grads: {
      input: { shape: [1, 1, 3, 3], dtype: 'float64', data: [[[[1, 0, 0], [0, 0, 0], [0, 0, -1]]]] },
      kernel: { shape: [1, 1, 2, 2], dtype: 'float64', data: [[[[6, 8], [12, 14]]]] },
      bias: { shape: [1], dtype: 'float64', data: [2] }
    }
  }
})
