import { type Static, Type } from 'typebox'
import { pool2dBackward as pool2dGrad } from '../kernels/grad/pool2d.js'
import { pool2d as pool2dKernel, type Pool2dInfo, pool2dInfo } from '../kernels/pool2d.js'
import { CheckedEnum, commonFields, intOrPair, StringEnum, TensorSchema } from '../schemas/tensor.js'
import { defineOperation, type InputTask, inputPrepare, resultArray } from './spec.js'
import { defineBackward } from './backward.js'

const Body = Type.Object({
  input: TensorSchema,
  kind: CheckedEnum(['max', 'avg'], { description: 'max (torch.nn.functional.max_pool2d) or avg (avg_pool2d)' }),
  kernelSize: Type.Union(intOrPair(1), { description: 'The window, an integer >= 1 or [kh, kw]' }),
  stride: Type.Optional(Type.Union(intOrPair(1), { description: 'Stride, an integer >= 1 or [sh, sw]; default kernelSize' })),
  padding: Type.Optional(Type.Union(intOrPair(0), { description: 'Implicit padding on each side, an integer >= 0 or [ph, pw], at most half the window; default 0' })),
  dilation: Type.Optional(Type.Union(intOrPair(1), { description: 'max only: spacing of the window\'s positions, an integer >= 1 or [dh, dw]; default 1' })),
  ceilMode: Type.Optional(Type.Boolean({ description: 'Round the output size up instead of down (default false)' })),
  countIncludePad: Type.Optional(Type.Boolean({ description: 'avg only: divide by the window\'s size with its padding (default true) or by its positions inside the input' })),
  layout: Type.Optional(StringEnum(['NCHW', 'NHWC'], { description: 'NCHW (default, PyTorch) or NHWC' })),
  ...commonFields
}, { additionalProperties: false })

const pool2d = defineOperation({
  name: 'pool2d',
  summary: 'Max or average 2-D pooling (torch.nn.functional.max_pool2d, avg_pool2d)',
  description: 'The maximum or the mean of each window of input, as torch.nn.functional.max_pool2d and avg_pool2d compute ' +
    'them. NCHW: input [N,C,H,W] or [C,H,W], result [N,C,OH,OW] (or [C,OH,OW]); NHWC: input [N,H,W,C] or [H,W,C]. ' +
    'OH = floor((H + 2·padding − dilation·(kh − 1) − 1) / stride) + 1 (rounded up with ceilMode, as torch does). Padding ' +
    'never wins a max and is counted by avg only with countIncludePad (the default). A NaN in a max window gives NaN.',
  body: Body,
  example: { input: [[[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]], kind: 'max', kernelSize: 2 },
  exampleReply: { result: { shape: [1, 2, 2], dtype: 'float64', data: [[[6, 8], [14, 16]]] } },
  prepare: inputPrepare((shape, body: Static<typeof Body>, limits) => pool2dInfo(shape, body, limits)),
  run: ({ dtype, input, info }: InputTask<Pool2dInfo>) => pool2dKernel(resultArray(dtype, info.outElements), input, info)
})

export default pool2d

/** POST /v1/pool2d/backward. */
export const pool2dBackward = defineBackward(pool2d, {
  operands: ['input'],
  kernel: pool2dGrad,
  work: (info, _wrt, withResult) => info.flops * (withResult ? 2 : 1),
  description: 'The gradient of pool2d with respect to input, given gradOutput (of the result\'s shape), as torch.autograd.grad ' +
    'gives it: max pooling passes each gradOutput element to its window\'s first maximal position (row-major; summed where ' +
    'windows overlap), avg pooling spreads it evenly, divided as the forward divided, over the window\'s positions inside the input.',
  example: { input: [[[1, 2], [4, 3]]], kind: 'max', kernelSize: 2, gradOutput: [[[1]]] },
  exampleReply: { grads: { input: { shape: [1, 2, 2], dtype: 'float64', data: [[[0, 0], [1, 0]]] } } }
})
