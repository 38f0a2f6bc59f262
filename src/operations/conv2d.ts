import { Type } from 'typebox'
import { conv2d as conv2dKernel, conv2dInfo } from '../kernels/conv2d.js'
import { conv2dBackward as conv2dGrad, conv2dBackwardCheck } from '../kernels/grad/conv2d.js'
import { commonFields, Int32AtLeast, intOrPair, StringEnum, TensorSchema } from '../schemas/tensor.js'
import { castTo, computeDtype } from '../tensor/decode.js'
import { buffersOf, defineOperation, resultArray } from './spec.js'
import { elementName, type Explained, explainField, ExplanationSchema, explainOutput, productsText, sumOf, textNumber, unravel } from './explain.js'
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
  ...explainField,
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
    padding: 'valid',
    explain: true
  },
  exampleReply: {
    result: { shape: [1, 1, 2, 2], dtype: 'float64', data: [[[[-3.5, -3.5], [-3.5, -3.5]]]] },
    explanation: [
      {
        index: [0, 0, 0, 0],
        channels: [{ channel: 0, products: [[1, 1], [2, 0], [4, 0], [5, -1]], sum: -4 }],
        bias: 0.5,
        value: -3.5,
        text: 'out[0,0,0,0] = (1*1 + 2*0 + 4*0 + 5*-1) + 0.5 = -4 + 0.5 = -3.5'
      },
      {
        index: [0, 0, 0, 1],
        channels: [{ channel: 0, products: [[2, 1], [3, 0], [5, 0], [6, -1]], sum: -4 }],
        bias: 0.5,
        value: -3.5,
        text: 'out[0,0,0,1] = (2*1 + 3*0 + 5*0 + 6*-1) + 0.5 = -4 + 0.5 = -3.5'
      },
      {
        index: [0, 0, 1, 0],
        channels: [{ channel: 0, products: [[4, 1], [5, 0], [7, 0], [8, -1]], sum: -4 }],
        bias: 0.5,
        value: -3.5,
        text: 'out[0,0,1,0] = (4*1 + 5*0 + 7*0 + 8*-1) + 0.5 = -4 + 0.5 = -3.5'
      },
      {
        index: [0, 0, 1, 1],
        channels: [{ channel: 0, products: [[5, 1], [6, 0], [8, 0], [9, -1]], sum: -4 }],
        bias: 0.5,
        value: -3.5,
        text: 'out[0,0,1,1] = (5*1 + 6*0 + 8*0 + 9*-1) + 0.5 = -4 + 0.5 = -3.5'
      }
    ]
  },
  extraReply: { explanation: Type.Optional(ExplanationSchema) },
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
      outputs: [
        { field: 'result', shape: info.outShape, length: info.outElements },
        ...explainOutput(body, info.outElements, (info.C / info.groups) * info.kh * info.kw, 'the kernel\'s window over the input channels')
      ]
    }
  },
  run: ({ dtype, input, kernel, bias, info }) => conv2dKernel(resultArray(dtype, info.outElements), input, kernel, bias, info),
  /**
   * out[n, k, y, x] = Σ over the input channels c of its group of (the window of input channel c at
   * y, x)·(kernel k's slice for c), plus bias[k]: the per-channel sums, then their total. Taps in the
   * padding add nothing and are left out.
   */
  explain ({ dtype, input, kernel, bias, info }, result) {
    const num = textNumber(dtype)
    const { C, H, W, K, kh, kw, OH, OW, groups } = info
    const nhwc = info.layout === 'NHWC'
    const cg = C / groups
    const out: Explained[] = []
    for (let f = 0; f < result.length; f++) {
      let n: number, k: number, oy: number, ox: number
      if (nhwc) {
        k = f % K; ox = Math.floor(f / K) % OW; oy = Math.floor(f / (K * OW)) % OH; n = Math.floor(f / (K * OW * OH))
      } else {
        ox = f % OW; oy = Math.floor(f / OW) % OH; k = Math.floor(f / (OW * OH)) % K; n = Math.floor(f / (OW * OH * K))
      }
      const group = Math.floor(k / (K / groups))
      const channels = []
      for (let ci = 0; ci < cg; ci++) {
        const c = group * cg + ci
        const products: Array<[number, number]> = []
        for (let ky = 0; ky < kh; ky++) {
          const y = oy * info.sh - info.padTop + ky * info.dh
          if (y < 0 || y >= H) continue
          for (let kx = 0; kx < kw; kx++) {
            const x = ox * info.sw - info.padLeft + kx * info.dw
            if (x < 0 || x >= W) continue
            const xi = nhwc ? ((n * H + y) * W + x) * C + c : ((n * C + c) * H + y) * W + x
            const wi = nhwc ? ((ky * kw + kx) * cg + ci) * K + k : ((k * cg + ci) * kh + ky) * kw + kx
            products.push([input[xi], kernel[wi]])
          }
        }
        channels.push({ channel: c, products, sum: sumOf(products) })
      }
      const index = unravel(f, info.outShape)
      const b = bias === null ? undefined : bias[k]
      const value = result[f]
      const terms = channels.map(ch => `(${productsText(ch.products, num)})`)
      const sums = channels.map(ch => num(ch.sum))
      if (b !== undefined) {
        terms.push(num(b))
        sums.push(num(b))
      }
      out.push({
        index,
        channels,
        bias: b,
        value,
        text: `${elementName('out', index)} = ${terms.join(' + ')} = ${sums.length > 1 ? `${sums.join(' + ')} = ` : ''}${num(value)}`
      })
    }
    return out
  }
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
