/**
 * The backward operations against central finite differences, independent of PyTorch: for random
 * float64 bodies of every operation and option combination, the gradient of L = Σ gradOutput·f(x)
 * with respect to each operand, element by element, (L(x + h) − L(x − h)) / 2h, compared with what
 * the backward operation returns, and the float32, float16 and bfloat16 gradients within the accuracy
 * of their rounding of those.
 * Operations run as the service runs them (prepare, then the task), in this thread.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { FloatArray, Limits } from '../../src/kernels/types.js'
import { OPERATIONS, type OperationName } from '../../src/operations/index.js'
import { decoderFor, type Operation } from '../../src/operations/spec.js'
import { firstMismatch } from '../helpers/compare.js'

const LIMITS: Limits = { maxElements: 1 << 20, maxFlops: 1e9 }

interface Flat { shape: number[], data: number[] }
type Body = Record<string, unknown>

/** Runs an operation on a body: its reply's tensors by field. */
export function runOperation (name: OperationName, body: Body): Record<string, FloatArray> {
  const spec: Operation = OPERATIONS[name]
  const prepared = spec.prepare(body, decoderFor(LIMITS, {}))
  const all = spec.run(prepared.task)
  const out: Record<string, FloatArray> = {}
  let offset = 0
  for (const o of prepared.outputs) {
    out[o.field] = all.subarray(offset, offset + o.length)
    offset += o.length
  }
  return out
}

const size = (shape: number[]): number => shape.reduce((p, d) => p * d, 1)

/** Deterministic values in [-1.5, 1.5) from a seed. */
function values (n: number, seed: number): number[] {
  let s = seed >>> 0
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return (s / 4294967296) * 3 - 1.5
  })
}

const tensor = (shape: number[], seed: number): Flat => ({ shape, data: values(size(shape), seed) })

/**
 * Checks every requested gradient of `op` at `body` against finite differences of the forward
 * operation (`wrt` defaults to the operands named).
 */
function checkGradients (op: 'matmul' | 'dot' | 'linear' | 'conv2d' | 'attention' | 'binary' | 'unary' | 'softmax' | 'reduce' | 'layer_norm' | 'pool2d' | 'loss', body: Body, operands: string[], seed: number): void {
  const forward = runOperation(op, body).result
  const g = values(forward.length, seed + 99)
  const gradOutput = { shape: resultShape(op, body), data: g }
  const grads = runOperation(`${op}Backward`, { ...body, gradOutput })
  const loss = (b: Body): number => {
    const y = runOperation(op, b).result
    let s = 0
    for (let i = 0; i < y.length; i++) s += g[i] * y[i]
    return s
  }
  for (const name of operands) {
    const x = body[name] as Flat
    const got = grads[`grads.${name}`]
    expect(got, `grads.${name}`).toBeDefined()
    const want = new Float64Array(x.data.length)
    for (let i = 0; i < x.data.length; i++) {
      const h = 1e-6 * Math.max(1, Math.abs(x.data[i]))
      const at = (v: number): number => {
        const data = x.data.slice()
        data[i] = v
        return loss({ ...body, [name]: { shape: x.shape, data } })
      }
      want[i] = (at(x.data[i] + h) - at(x.data[i] - h)) / (2 * h)
    }
    const bad = firstMismatch(got, want, { rtol: 1e-6, atol: 1e-7 * Math.max(1, ...Array.from(want, Math.abs)) })
    expect(bad, `${op} d/d${name} ${JSON.stringify({ ...body, gradOutput: undefined })}`).toBeNull()
  }
  // the same in float32 (on the engine's float32 paths where it is enabled), float16 and bfloat16
  // (operands rounded to them, computed in float32), each within the accuracy of its rounding
  for (const [dtype, rtol] of [['float32', 1e-4], ['float16', 2e-2], ['bfloat16', 1e-1]] as const) {
    const low = runOperation(`${op}Backward`, { ...body, gradOutput, dtype })
    for (const name of operands) {
      const want = grads[`grads.${name}`]
      const bad = firstMismatch(low[`grads.${name}`], want, { rtol, atol: rtol * Math.max(1, ...Array.from(want, Math.abs)) })
      expect(bad, `${op} ${dtype} d/d${name} ${JSON.stringify({ ...body, gradOutput: undefined })}`).toBeNull()
    }
  }
}

function resultShape (op: string, body: Body): number[] {
  const spec = OPERATIONS[op as OperationName]
  return spec.prepare(body, decoderFor(LIMITS, {})).outputs[0].shape
}

const dim = (max: number, min = 1): fc.Arbitrary<number> => fc.integer({ min, max })
const batch = fc.array(fc.constantFrom(1, 2, 3), { maxLength: 2 })

describe('gradients against finite differences (float64)', () => {
  it('matmul: 2-D, batched with broadcast batch dimensions, 1-D operands', () => {
    fc.assert(fc.property(batch, batch, dim(4), dim(4), dim(4), fc.constantFrom('nd', 'vec-a', 'vec-b', 'vec-both'), fc.nat(1000),
      (ab, bb, m, k, n, form, seed) => {
        // broadcast-compatible batches: where both have a dimension, one of them is 1 or they agree
        const rank = Math.min(ab.length, bb.length)
        for (let i = 1; i <= rank; i++) {
          const x = ab[ab.length - i]
          const y = bb[bb.length - i]
          if (x !== y && x !== 1 && y !== 1) bb[bb.length - i] = x
        }
        const aShape = form === 'vec-a' || form === 'vec-both' ? [k] : [...ab, m, k]
        const bShape = form === 'vec-b' || form === 'vec-both' ? [k] : [...bb, k, n]
        checkGradients('matmul', { a: tensor(aShape, seed), b: tensor(bShape, seed + 1) }, ['a', 'b'], seed)
      }), { numRuns: 60, seed: 11 })
  })

  it('dot: vectors, matrices and scalars', () => {
    fc.assert(fc.property(fc.array(dim(4), { maxLength: 3 }), fc.nat(1000), (shape, seed) => {
      checkGradients('dot', { a: tensor(shape, seed), b: tensor(shape, seed + 1) }, ['a', 'b'], seed)
    }), { numRuns: 20, seed: 12 })
  })

  it('linear: every activation, with and without bias, 1-D to 3-D input', () => {
    fc.assert(fc.property(fc.array(dim(3), { maxLength: 2 }), dim(4), dim(4), fc.boolean(),
      fc.constantFrom('none', 'relu', 'sigmoid', 'tanh', 'gelu', 'softmax'), fc.nat(1000),
      (lead, inF, outF, withBias, activation, seed) => {
        const body: Body = { input: tensor([...lead, inF], seed), weights: tensor([inF, outF], seed + 1), activation }
        if (withBias) body.bias = tensor([outF], seed + 2)
        checkGradients('linear', body, withBias ? ['input', 'weights', 'bias'] : ['input', 'weights'], seed)
      }), { numRuns: 60, seed: 13 })
  })

  it('conv2d: stride, padding, dilation, groups, NCHW and NHWC, bias, unbatched input', () => {
    const options = fc.record({
      layout: fc.constantFrom('NCHW', 'NHWC'),
      batched: fc.boolean(),
      N: dim(2),
      groups: dim(2),
      cg: dim(2),
      kg: dim(2),
      H: dim(6),
      W: dim(6),
      kh: dim(3),
      kw: dim(3),
      stride: fc.oneof(dim(2), fc.tuple(dim(3), dim(2))),
      dilation: fc.oneof(dim(2), fc.tuple(dim(2), dim(2))),
      padding: fc.oneof(fc.constantFrom('valid', 'same'), dim(2, 0), fc.tuple(dim(2, 0), dim(1, 0))),
      bias: fc.boolean(),
      seed: fc.nat(1000)
    })
    let checked = 0
    fc.assert(fc.property(options, (o) => {
      const stride = o.padding === 'same' ? 1 : o.stride
      const C = o.groups * o.cg
      const K = o.groups * o.kg
      const nchw = o.layout === 'NCHW'
      const image = nchw ? [C, o.H, o.W] : [o.H, o.W, C]
      const input = tensor(o.batched ? [o.N, ...image] : image, o.seed)
      const kernel = tensor(nchw ? [K, o.cg, o.kh, o.kw] : [o.kh, o.kw, o.cg, K], o.seed + 1)
      const body: Body = { input, kernel, stride, dilation: o.dilation, padding: o.padding, groups: o.groups, layout: o.layout }
      if (o.bias) body.bias = tensor([K], o.seed + 2)
      try {
        resultShape('conv2d', body)
      } catch {
        return // the dilated kernel does not fit: not a body the forward accepts
      }
      checked++
      checkGradients('conv2d', body, o.bias ? ['input', 'kernel', 'bias'] : ['input', 'kernel'], o.seed)
    }), { numRuns: 80, seed: 14 })
    expect(checked).toBeGreaterThan(40)
  })

  it('attention: masks with their own batch dimensions, causal, scale, broadcast batches, E = 0', () => {
    const options = fc.record({
      qb: batch,
      kb: batch,
      Lq: dim(4),
      Lk: dim(4),
      E: dim(3, 0),
      Ev: dim(3, 0),
      mask: fc.constantFrom('none', 'bool', 'additive'),
      maskRank: fc.integer({ min: 0, max: 3 }),
      causal: fc.boolean(),
      scale: fc.option(fc.double({ min: -2, max: 2, noNaN: true }), { nil: undefined }),
      seed: fc.nat(1000)
    })
    fc.assert(fc.property(options, (o) => {
      // key and value share their batch; query's broadcasts against it
      const kb = o.kb.slice()
      const rank = Math.min(o.qb.length, kb.length)
      for (let i = 1; i <= rank; i++) {
        const x = o.qb[o.qb.length - i]
        const y = kb[kb.length - i]
        if (x !== y && x !== 1 && y !== 1) kb[kb.length - i] = x
      }
      const body: Body = {
        query: tensor([...o.qb, o.Lq, o.E], o.seed),
        key: tensor([...kb, o.Lk, o.E], o.seed + 1),
        value: tensor([...kb, o.Lk, o.Ev], o.seed + 2),
        causal: o.causal
      }
      if (o.scale !== undefined) body.scale = o.scale
      if (o.mask !== 'none') {
        const full = [1, o.Lq, o.Lk]
        const shape = full.slice(3 - o.maskRank)
        const n = size(shape)
        const v = values(n, o.seed + 3)
        body.mask = o.mask === 'bool'
          ? { shape, data: v.map(x => x > -0.9) }
          : { shape, data: v.map(x => x < -1.3 ? '-Infinity' : x) }
      }
      checkGradients('attention', body, ['query', 'key', 'value'], o.seed)
    }), { numRuns: 80, seed: 15 })
  })

  it('reduce: every op over all axes, one axis, a list of axes, keepdims, correction', () => {
    const ops = ['sum', 'mean', 'prod', 'max', 'min', 'var', 'std', 'logsumexp', 'norm']
    fc.assert(fc.property(fc.constantFrom(...ops), fc.array(dim(3), { minLength: 1, maxLength: 3 }), fc.subarray([0, 1, 2]), fc.boolean(), fc.nat(2), fc.nat(1000),
      (op, shape, picked, keepdims, correction, seed) => {
        const axes = picked.filter(a => a < shape.length)
        const input = tensor(shape, seed)
        // max and min away from ties: distinct multiples of 1/8 (exact in bfloat16 too), in the random values' order;
        // var and std with more elements than the correction
        if (op === 'max' || op === 'min') {
          const order = input.data.map((x, i) => [x, i]).sort((p, q) => p[0] - q[0]).map(([, i]) => i)
          order.forEach((i, rank) => { input.data[i] = (rank - order.length / 2) / 8 })
        }
        if ((op === 'var' || op === 'std') && axes.reduce((n, a) => n * shape[a], axes.length === 0 ? size(shape) : 1) <= correction) return
        const body: Body = { op, input, keepdims, correction }
        if (axes.length > 0) body.axis = axes.length === 1 ? axes[0] - shape.length : axes
        checkGradients('reduce', body, ['input'], seed)
      }), { numRuns: 80, seed: 19 })
  })

  it('layer_norm: one to three normalised dimensions, with and without weight and bias', () => {
    fc.assert(fc.property(fc.array(dim(3), { minLength: 1, maxLength: 3 }), fc.nat(2), fc.boolean(), fc.boolean(), fc.nat(1000),
      (shape, drop, withWeight, withBias, seed) => {
        const normalizedShape = shape.slice(Math.min(drop, shape.length - 1))
        const body: Body = { input: tensor(shape, seed), normalizedShape, eps: 0.01 }
        const operands = ['input']
        if (withWeight) { body.weight = tensor(normalizedShape, seed + 1); operands.push('weight') }
        if (withBias) { body.bias = tensor(normalizedShape, seed + 2); operands.push('bias') }
        checkGradients('layer_norm', body, operands, seed)
      }), { numRuns: 60, seed: 20 })
  })

  it('pool2d: max and avg, windows, strides, padding, dilation, ceilMode, countIncludePad, NCHW and NHWC', () => {
    fc.assert(fc.property(fc.constantFrom('max', 'avg'), fc.boolean(), dim(2), dim(5, 2), dim(5, 2), dim(3), dim(3), dim(3), dim(3), fc.nat(1), fc.nat(1),
      fc.integer({ min: 1, max: 2 }), fc.boolean(), fc.boolean(), fc.constantFrom('NCHW', 'NHWC'), fc.nat(1000),
      (kind, batched, c, h, w, kh, kw, sh, sw, ph, pw, d, ceilMode, countIncludePad, layout, seed) => {
        const spatial = layout === 'NCHW' ? [c, h, w] : [h, w, c]
        const shape = batched ? [2, ...spatial] : spatial
        const input = tensor(shape, seed)
        // distinct values, multiples of 1/8 (exact in float16 and bfloat16): no ties for max to break differently
        const order = input.data.map((x, i) => [x, i]).sort((p, q) => p[0] - q[0]).map(([, i]) => i)
        order.forEach((i, rank) => { input.data[i] = (rank - order.length / 2) / 8 })
        const body: Body = { input, kind, kernelSize: [kh, kw], stride: [sh, sw], padding: [Math.min(ph, kh >> 1), Math.min(pw, kw >> 1)], ceilMode, layout }
        if (kind === 'max') body.dilation = d
        else body.countIncludePad = countIncludePad
        try {
          resultShape('pool2d', body)
        } catch {
          return // a window that does not fit the input
        }
        checkGradients('pool2d', body, ['input'], seed)
      }), { numRuns: 80, seed: 21 })
  })

  it('loss: every kind and reduction, cross_entropy with class indices and probabilities, label smoothing', () => {
    fc.assert(fc.property(fc.constantFrom('mse', 'l1', 'huber', 'bce_with_logits', 'cross_entropy', 'cross_entropy_probs'), fc.constantFrom('mean', 'sum', 'none'),
      dim(3), dim(4, 2), fc.array(dim(2), { maxLength: 1 }), fc.constantFrom(0, 0.2), fc.nat(1000),
      (kind, reduction, n, c, spatial, smoothing, seed) => {
        const shape = [n, c, ...spatial]
        const input = tensor(shape, seed)
        let target = tensor(shape, seed + 1)
        const body: Body = { kind, input, reduction }
        const operands = ['input', 'target']
        if (kind === 'l1' || kind === 'huber') {
          // away from the kinks (|x - t| = 0, and delta for huber)
          target = { shape, data: input.data.map((x, i) => x + (i % 2 === 0 ? 0.25 : -0.375) * (1 + (i % 3))) }
          if (kind === 'huber') body.delta = 0.6
        }
        if (kind === 'bce_with_logits') target = { shape, data: target.data.map(v => (v + 1.5) / 3) }
        if (kind.startsWith('cross_entropy')) {
          body.kind = 'cross_entropy'
          if (smoothing > 0) body.labelSmoothing = smoothing
          if (kind === 'cross_entropy') {
            const samples = [n, ...spatial]
            target = { shape: samples, data: values(size(samples), seed + 1).map(v => Math.floor((v + 1.5) / 3 * c) % c) }
            operands.pop() // class indices take no gradient
          }
        }
        body.target = target
        checkGradients('loss', body, operands, seed)
      }), { numRuns: 80, seed: 22 })
  })

  it('softmax and log_softmax along every axis', () => {
    fc.assert(fc.property(fc.array(dim(4), { maxLength: 3 }), fc.integer({ min: -3, max: 2 }), fc.boolean(), fc.nat(1000), (shape, axis, log, seed) => {
      // an axis in range, given negative from the end when the drawn one is negative
      const rank = Math.max(shape.length, 1)
      const a = ((axis % rank) + rank) % rank
      checkGradients('softmax', { input: tensor(shape, seed), axis: axis < 0 ? a - rank : a, log }, ['input'], seed)
    }), { numRuns: 60, seed: 18 })
  })

  it('unary: every function, away from the points where it is not smooth', () => {
    const ops = ['neg', 'abs', 'exp', 'log', 'sqrt', 'square', 'reciprocal', 'sin', 'cos', 'tanh', 'sigmoid', 'relu', 'gelu', 'silu', 'softplus', 'erf']
    fc.assert(fc.property(fc.constantFrom(...ops), fc.array(dim(3), { maxLength: 3 }), fc.nat(1000), (op, shape, seed) => {
      const input = tensor(shape, seed)
      // log, sqrt on positive values; abs, relu, reciprocal away from 0
      if (op === 'log' || op === 'sqrt') input.data = input.data.map(x => Math.abs(x) + 0.25)
      if (op === 'abs' || op === 'relu' || op === 'reciprocal') input.data = input.data.map(x => x < 0 ? x - 0.25 : x + 0.25)
      checkGradients('unary', { op, input }, ['input'], seed)
    }), { numRuns: 80, seed: 17 })
  })

  it('binary: every op, broadcast shapes (dimensions of 1, missing ones, rank 0)', () => {
    // each dimension of the result, and for each operand whether it has it (1 where it broadcasts)
    const axes = fc.array(fc.tuple(dim(3), fc.constantFrom('both', 'a', 'b')), { maxLength: 3 })
    fc.assert(fc.property(fc.constantFrom('add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum'), axes, fc.nat(2), fc.nat(1000),
      (op, dims, drop, seed) => {
        const aShape = dims.map(([d, who]) => who === 'b' ? 1 : d)
        const bShape = dims.map(([d, who]) => who === 'a' ? 1 : d).slice(Math.min(drop, dims.length))
        const a = tensor(aShape, seed)
        const b = tensor(bShape, seed + 1)
        // pow on positive bases; div away from 0 (the gradients are smooth there)
        if (op === 'pow') a.data = a.data.map(x => Math.abs(x) + 0.25)
        if (op === 'div') b.data = b.data.map(x => x < 0 ? x - 0.25 : x + 0.25)
        // maximum and minimum away from ties, also once rounded to bfloat16: a on odd eighths, b on quarters
        if (op === 'maximum' || op === 'minimum') {
          a.data = a.data.map(x => Math.round(x * 4) / 4 + 0.125)
          b.data = b.data.map(x => Math.round(x * 4) / 4)
        }
        checkGradients('binary', { op, a, b }, ['a', 'b'], seed)
      }), { numRuns: 80, seed: 16 })
  })
})

describe('backward bodies', () => {
  it('wrt selects the gradients; returnResult adds the forward result', () => {
    const body = { a: tensor([2, 3], 1), b: tensor([3, 2], 2), gradOutput: tensor([2, 2], 3) }
    const both = runOperation('matmulBackward', body)
    expect(Object.keys(both)).toEqual(['grads.a', 'grads.b'])
    const onlyB = runOperation('matmulBackward', { ...body, wrt: ['b'], returnResult: true })
    expect(Object.keys(onlyB)).toEqual(['grads.b', 'result'])
    expect(Array.from(onlyB['grads.b'])).toEqual(Array.from(both['grads.b']))
    expect(Array.from(onlyB.result)).toEqual(Array.from(runOperation('matmul', body).result))
  })

  it('a relu at exactly 0 passes no gradient (relu\'(0) = 0)', () => {
    const out = runOperation('linearBackward', {
      input: { shape: [1, 2], data: [1, -1] },
      weights: { shape: [2, 2], data: [1, 1, 1, 2] },
      activation: 'relu',
      gradOutput: { shape: [1, 2], data: [1, 1] }
    })
    // z = [0, -1]: neither passes the gradient
    expect(Array.from(out['grads.input'])).toEqual([0, 0])
    expect(Array.from(out['grads.weights'])).toEqual([0, 0, 0, 0])
  })

  it('a softmax row that was all -Infinity gets zero gradients', () => {
    const out = runOperation('linearBackward', {
      input: { shape: [2, 1], data: [1, 2] },
      weights: { shape: [1, 2], data: [1, 1] },
      bias: { shape: [2], data: ['-Infinity', '-Infinity'] },
      activation: 'softmax',
      gradOutput: { shape: [2, 2], data: [1, 2, 3, 4] }
    })
    expect(Array.from(out['grads.input'])).toEqual([0, 0])
    expect(Array.from(out['grads.bias'])).toEqual([0, 0])
  })

  it('a fully masked attention row gives zero gradients, and a NaN behind a masked key does not leak', () => {
    const out = runOperation('attentionBackward', {
      query: { shape: [2, 1], data: [1, 2] },
      key: { shape: [2, 1], data: [1, 'NaN'] },
      value: { shape: [2, 1], data: [3, 'NaN'] },
      mask: { shape: [2, 2], data: [true, false, false, false] },
      gradOutput: { shape: [2, 1], data: [1, 1] }
    })
    expect(Array.from(out['grads.query'])).toEqual([0, 0])
    expect(Array.from(out['grads.key'])).toEqual([0, 0])
    expect(Array.from(out['grads.value'])).toEqual([1, 0])
  })
})
