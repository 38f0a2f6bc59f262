import { Type } from 'typebox'
import { ENGINE_BINARY, engineElementwise, useEngine } from '../kernels/ort/kernels.js'
import { binary as binaryKernel, binaryF32, BINARY_OPS, binaryInfo, hasBinaryF32, runLength } from '../kernels/binary.js'
import { binaryBackward as binaryGrad } from '../kernels/grad/binary.js'
import { CheckedEnum, commonFields, TensorSchema } from '../schemas/tensor.js'
import { castTo, computeDtype } from '../tensor/decode.js'
import { buffersOf, defineOperation, resultArray } from './spec.js'
import { defineBackward } from './backward.js'

/** The shortest runs (the result's last dimension where an operand broadcasts) worth a copy call each into the WebAssembly kernel's memory. */
export const RUN_MIN = 256

const Body = Type.Object({
  op: CheckedEnum([...BINARY_OPS], {
    description: 'add, sub, mul, div, pow, maximum or minimum (torch.add, torch.sub, torch.mul, torch.div, torch.pow, torch.maximum, torch.minimum)'
  }),
  a: TensorSchema,
  b: TensorSchema,
  ...commonFields
}, { additionalProperties: false })

const binary = defineOperation({
  name: 'binary',
  summary: 'Elementwise a (op) b with NumPy broadcasting: add, sub, mul, div, pow, maximum, minimum',
  description: 'op(a, b) element by element, as PyTorch computes it: the shapes broadcast as NumPy broadcasts them ' +
    '(aligned from the last dimension; a dimension of 1, or a missing one, stretches), e.g. [2,3] with [3] gives [2,3] ' +
    'and [4,1] with [1,5] gives [4,5]; shapes that do not broadcast are SHAPE_MISMATCH. IEEE arithmetic: x/0 is ±Infinity ' +
    'and 0/0 NaN; pow is C\'s pow (pow(1, y) = pow(x, 0) = 1, also for NaN); maximum and minimum give NaN when either ' +
    'value is NaN. float16 and bfloat16 are computed in float32 and rounded once.',
  body: Body,
  example: { op: 'add', a: [[1, 2, 3], [4, 5, 6]], b: [10, 20, 30] },
  exampleReply: { result: { shape: [2, 3], dtype: 'float64', data: [[11, 22, 33], [14, 25, 36]] } },
  prepare (body, decode) {
    const a = decode.tensor(body.a, 'a')
    const b = decode.tensor(body.b, 'b')
    const info = binaryInfo(body.op, a.shape, b.shape, decode.limits)
    const dtype = computeDtype([a, b], body.dtype)
    const ad = castTo(a.data, dtype)
    const bd = castTo(b.data, dtype)
    return {
      task: { dtype, a: ad, b: bd, info },
      transfer: buffersOf(ad, bd),
      outputs: [{ field: 'result', shape: info.outShape, length: info.outElements }]
    }
  },
  run ({ dtype, a, b, info }) {
    const out = resultArray(dtype, info.outElements, false)
    // add, sub, mul, div in float32 (and 16-bit) over runs of RUN_MIN elements or more: the WebAssembly SIMD kernel;
    // else from F32_MIN_MACS elements the engine's vectorised operator, broadcasting as NumPy does (both the same
    // correctly rounded values as the loop); else the loop
    if (out instanceof Float32Array && a instanceof Float32Array && b instanceof Float32Array && hasBinaryF32(info.op) && runLength(info) >= RUN_MIN) {
      return binaryF32(out, a, b, info)
    }
    const operator = ENGINE_BINARY[info.op]
    if (operator !== undefined && info.outElements > 0 && useEngine(info.outElements)) {
      engineElementwise(operator, out, info.outShape, [[a, info.aShape], [b, info.bShape]])
      return out
    }
    return binaryKernel(out, a, b, info)
  }
})

export default binary

/** POST /v1/binary/backward. */
export const binaryBackward = defineBackward(binary, {
  operands: ['a', 'b'],
  kernel: binaryGrad,
  work: (info, wrt, withResult) => info.outElements * (4 * wrt.length + (withResult ? 1 : 0)),
  description: 'The gradients of op(a, b) with respect to a and b, given gradOutput (of the broadcast result\'s shape), as ' +
    'torch.autograd.grad gives them, each summed over the dimensions along which its operand broadcast: add g, g; sub g, -g; ' +
    'mul g·b, g·a; div g/b, -g·(a/b)/b; pow g·b·a^(b-1) (0 where b = 0), g·a^b·ln a (0 where a = 0 and b >= 0); maximum and ' +
    'minimum give g to the larger (smaller) value, g/2 to each side of a tie, and g to both where either is NaN.',
  example: { op: 'mul', a: [[1, 2, 3], [4, 5, 6]], b: [10, 20, 30], gradOutput: [[1, 1, 1], [1, 1, 1]] },
  exampleReply: {
    grads: {
      a: { shape: [2, 3], dtype: 'float64', data: [[10, 20, 30], [10, 20, 30]] },
      b: { shape: [3], dtype: 'float64', data: [5, 7, 9] }
    }
  }
})
