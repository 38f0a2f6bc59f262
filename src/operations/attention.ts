import { Type } from 'typebox'
import { attention as attentionKernel, attentionInfo } from '../kernels/attention.js'
import { attentionBackward as attentionGrad } from '../kernels/grad/attention.js'
import { checkElements, product } from '../kernels/shape.js'
import { commonFields, MaskSchema, ResultTensorSchema, TensorSchema } from '../schemas/tensor.js'
import { castTo, computeDtype } from '../tensor/decode.js'
import { buffersOf, defineOperation, resultArray } from './spec.js'
import { elementName, type Explained, explainField, ExplanationSchema, explainOutput, productsText, sumOf, textNumber, unravel } from './explain.js'
import { defineBackward } from './backward.js'

const Body = Type.Object({
  query: TensorSchema,
  key: TensorSchema,
  value: TensorSchema,
  mask: Type.Optional(MaskSchema),
  causal: Type.Optional(Type.Boolean({ description: 'Query i sees keys 0..i only (top-left aligned)' })),
  scale: Type.Optional(Type.Number({ description: 'Score scale; default 1/sqrt(E)' })),
  returnWeights: Type.Optional(Type.Boolean({ description: 'Also return the attention weights [..., Lq, Lk]' })),
  ...explainField,
  ...commonFields
}, { additionalProperties: false })

const attention = defineOperation({
  name: 'attention',
  summary: 'Scaled dot-product attention: softmax(Q·Kᵀ·scale + mask)·V',
  description: 'softmax(query·keyᵀ·scale + mask)·value over the last axis. query [..., Lq, E], key [..., Lk, E], value ' +
    '[..., Lk, Ev]; the batch dimensions of the three (and the mask\'s own) broadcast; the result is [..., Lq, Ev]. ' +
    'mask: booleans (true = may attend) or numbers added to the scores, broadcastable to [..., Lq, Lk]. causal: query i ' +
    'sees keys 0..i. Both apply together. A query row that may attend to no key gives zeros, never NaN. ' +
    'scale defaults to 1/sqrt(E); with E = 0 the scores are 0. returnWeights adds "weights" [..., Lq, Lk].',
  body: Body,
  extraReply: { weights: Type.Optional(ResultTensorSchema), explanation: Type.Optional(ExplanationSchema) },
  example: {
    query: [[1, 0], [0, 1]],
    key: [[1, 0], [0, 1], [1, 1]],
    value: [[1, 2], [3, 4], [5, 6]],
    causal: true,
    returnWeights: true,
    explain: true
  },
  exampleReply: {
    result: { shape: [2, 2], dtype: 'float64', data: [[1, 2], [2.3395230986533138, 3.3395230986533138]] },
    weights: { shape: [2, 3], dtype: 'float64', data: [[1, 0, 0], [0.3302384506733431, 0.6697615493266569, 0]] },
    explanation: [
      {
        index: [0, 0],
        scores: [
          { key: 0, products: [[1, 1], [0, 0]], value: 0.7071067811865475 },
          { key: 1, products: [[1, 0], [0, 1]], value: '-Infinity' },
          { key: 2, products: [[1, 1], [0, 1]], value: '-Infinity' }
        ],
        weights: [1, 0, 0],
        products: [[1, 1], [0, 3], [0, 5]],
        value: 1,
        text: 'out[0,0] = 1*1 + 0*3 + 0*5 = 1, weights = softmax([(1*1 + 0*0)*0.7071067811865475, hidden, hidden]) = softmax([0.7071067811865475, -Infinity, -Infinity]) = [1, 0, 0]'
      },
      {
        index: [0, 1],
        scores: [
          { key: 0, products: [[1, 1], [0, 0]], value: 0.7071067811865475 },
          { key: 1, products: [[1, 0], [0, 1]], value: '-Infinity' },
          { key: 2, products: [[1, 1], [0, 1]], value: '-Infinity' }
        ],
        weights: [1, 0, 0],
        products: [[1, 2], [0, 4], [0, 6]],
        value: 2,
        text: 'out[0,1] = 1*2 + 0*4 + 0*6 = 2, weights = softmax([(1*1 + 0*0)*0.7071067811865475, hidden, hidden]) = softmax([0.7071067811865475, -Infinity, -Infinity]) = [1, 0, 0]'
      },
      {
        index: [1, 0],
        scores: [
          { key: 0, products: [[0, 1], [1, 0]], value: 0 },
          { key: 1, products: [[0, 0], [1, 1]], value: 0.7071067811865475 },
          { key: 2, products: [[0, 1], [1, 1]], value: '-Infinity' }
        ],
        weights: [0.3302384506733431, 0.6697615493266569, 0],
        products: [[0.3302384506733431, 1], [0.6697615493266569, 3], [0, 5]],
        value: 2.3395230986533138,
        text: 'out[1,0] = 0.3302384506733431*1 + 0.6697615493266569*3 + 0*5 = 2.3395230986533138, weights = softmax([(0*1 + 1*0)*0.7071067811865475, (0*0 + 1*1)*0.7071067811865475, hidden]) = softmax([0, 0.7071067811865475, -Infinity]) = [0.3302384506733431, 0.6697615493266569, 0]'
      },
      {
        index: [1, 1],
        scores: [
          { key: 0, products: [[0, 1], [1, 0]], value: 0 },
          { key: 1, products: [[0, 0], [1, 1]], value: 0.7071067811865475 },
          { key: 2, products: [[0, 1], [1, 1]], value: '-Infinity' }
        ],
        weights: [0.3302384506733431, 0.6697615493266569, 0],
        products: [[0.3302384506733431, 2], [0.6697615493266569, 4], [0, 6]],
        value: 3.3395230986533138,
        text: 'out[1,1] = 0.3302384506733431*2 + 0.6697615493266569*4 + 0*6 = 3.3395230986533138, weights = softmax([(0*1 + 1*0)*0.7071067811865475, (0*0 + 1*1)*0.7071067811865475, hidden]) = softmax([0, 0.7071067811865475, -Infinity]) = [0.3302384506733431, 0.6697615493266569, 0]'
      }
    ]
  },
  prepare (body, decode) {
    const { limits } = decode
    const query = decode.tensor(body.query, 'query')
    const key = decode.tensor(body.key, 'key')
    const value = decode.tensor(body.value, 'value')
    const mask = body.mask === undefined ? null : decode.mask(body.mask, 'mask')
    const info = attentionInfo(query.shape, key.shape, value.shape, mask?.shape ?? null, mask?.kind ?? null, {
      causal: body.causal,
      scale: body.scale,
      returnWeights: body.returnWeights
    }, limits)
    // a numeric mask takes no part in dtype promotion
    const dtype = computeDtype([query, key, value], body.dtype)
    const qd = castTo(query.data, dtype)
    const kd = castTo(key.data, dtype)
    const vd = castTo(value.data, dtype)
    const md = mask === null ? null : mask.kind === 'bool' ? mask.data : castTo(mask.data as Float64Array, dtype)
    const outputs = [{ field: 'result', shape: info.outShape, length: product(info.outShape) }]
    if (info.returnWeights) outputs.push({ field: 'weights', shape: info.weightsShape, length: product(info.weightsShape) })
    // (an element is the weighted sum of Lk values, each weight from a score of E products)
    outputs.push(...explainOutput(body, product(info.outShape), info.Lk * (info.E + 1), 'Lk·(E + 1): the scores and the weighted sum'))
    return {
      task: { dtype, query: qd, key: kd, value: vd, mask: md, info },
      transfer: buffersOf(qd, kd, vd, md),
      outputs
    }
  },
  /** The output and (when asked) the weights share one buffer, output first. */
  run ({ dtype, query, key, value, mask, info }) {
    const outN = info.B * info.Lq * info.Ev
    const all = resultArray(dtype, outN + (info.returnWeights ? info.B * info.Lq * info.Lk : 0))
    attentionKernel(all.subarray(0, outN), info.returnWeights ? all.subarray(outN) : null, query, key, value, mask, info)
    return all
  },
  /**
   * out[..., i, j] = Σ_t weights[t]·value[..., t, j], weights = softmax over t of the scores
   * (query[..., i]·key[..., t])·scale + mask, −∞ for a key the mask or causal hides; a row that
   * sees no key has zero weights.
   */
  explain ({ dtype, query, key, value, mask, info }, result) {
    const num = textNumber(dtype)
    const { Lq, Lk, E, Ev, scale, causal, maskOffsets, maskRowStride, maskColStride } = info
    const out: Explained[] = []
    const n = Lq * Ev
    for (let f = 0; f < n * info.B; f++) {
      const j = f % Ev
      const i = Math.floor(f / Ev) % Lq
      const b = Math.floor(f / n)
      const scores = []
      const terms: string[] = []
      for (let t = 0; t < Lk; t++) {
        const products: Array<[number, number]> = []
        for (let e = 0; e < E; e++) products.push([query[info.qOffsets[b] + i * E + e], key[info.kOffsets[b] + t * E + e]])
        const m = mask === null || maskOffsets === null ? 0 : mask[maskOffsets[b] + i * maskRowStride + t * maskColStride]
        const hidden = (causal && t > i) || (info.maskKind === 'bool' && m === 0)
        const added = info.maskKind === 'bool' ? 0 : m
        scores.push({ key: t, products, value: hidden ? -Infinity : sumOf(products) * scale + added })
        terms.push(hidden ? 'hidden' : `(${productsText(products, num)})*${num(scale)}${info.maskKind === 'additive' ? ` + ${num(added)}` : ''}`)
      }
      const top = Math.max(...scores.map(sc => sc.value))
      const exps = scores.map(sc => top === -Infinity ? 0 : Math.exp(sc.value - top))
      const total = exps.reduce((x, y) => x + y, 0)
      const weights = exps.map(x => top === -Infinity ? 0 : x / total)
      const products = weights.map((w, t): [number, number] => [w, value[info.vOffsets[b] + t * Ev + j]])
      const index = unravel(f, info.outShape)
      out.push({
        index,
        scores,
        weights,
        products,
        value: result[f],
        text: `${elementName('out', index)} = ${productsText(products, num)} = ${num(result[f])}, ` +
          `weights = softmax([${terms.join(', ')}]) = softmax([${scores.map(sc => num(sc.value)).join(', ')}]) = [${weights.map(num).join(', ')}]`
      })
    }
    return out
  }
})

export default attention

/** POST /v1/attention/backward. */
export const attentionBackward = defineBackward(attention, {
  operands: ['query', 'key', 'value'],
  constants: ['mask'],
  kernel: (forward, g, outs) => attentionGrad(forward.dtype, forward, g, outs),
  // the operands' blocks per batch, as the gradients are formed before they are summed
  check: (info, wrt, limits) => {
    checkElements(info.B * info.Lq * info.E, 'attention query blocks per batch (the query gradient before its broadcast sum)', limits)
    checkElements(info.B * info.Lk * info.E, 'attention key blocks per batch (the key gradient before its broadcast sum)', limits)
    checkElements(info.B * info.Lk * info.Ev, 'attention value blocks per batch (the value gradient before its broadcast sum)', limits)
  },
  work: (info, wrt) => {
    const s = 2 * info.B * info.Lq * info.Lk
    const qk = wrt.includes('query') || wrt.includes('key')
    return info.flops + (wrt.includes('value') ? s * info.Ev : 0) + (qk ? s * info.Ev : 0) +
      (wrt.includes('query') ? s * info.E : 0) + (wrt.includes('key') ? s * info.E : 0)
  },
  description: 'The gradients of attention with respect to query, key and value, given gradOutput (of the output\'s shape, ' +
    'not the weights\'), as torch.autograd.grad gives them, each summed over the batch dimensions that broadcast its operand. ' +
    'A masked or causally hidden key gets no gradient from that query; a query row that attends to no key gives zero ' +
    'gradients. The mask is not differentiable.',
  example: {
    query: [[1, 0], [0, 1]],
    key: [[1, 0], [0, 1], [1, 1]],
    value: [[1, 2], [3, 4], [5, 6]],
    causal: true,
    gradOutput: [[1, 0], [0, 1]]
  },
  exampleReply: {
    grads: {
      query: { shape: [2, 2], dtype: 'float64', data: [[0, 0], [-0.3127971930902208, 0.3127971930902208]] },
      key: { shape: [3, 2], dtype: 'float64', data: [[0, -0.3127971930902208], [0, 0.3127971930902208], [0, 0]] },
      value: { shape: [3, 2], dtype: 'float64', data: [[1, 0.3302384506733431], [0, 0.6697615493266569], [0, 0]] }
    }
  }
})
