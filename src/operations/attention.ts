import { Type } from 'typebox'
import { attentionInfo } from '../kernels/attention.js'
import { product } from '../kernels/shape.js'
import { commonFields, MaskSchema, ResultTensorSchema, TensorSchema } from '../schemas/tensor.js'
import { castTo, computeDtype } from '../tensor/decode.js'
import { buffersOf, defineOperation } from './spec.js'

const Body = Type.Object({
  query: TensorSchema,
  key: TensorSchema,
  value: TensorSchema,
  mask: Type.Optional(MaskSchema),
  causal: Type.Optional(Type.Boolean({ description: 'Query i sees keys 0..i only (top-left aligned)' })),
  scale: Type.Optional(Type.Number({ description: 'Score scale; default 1/sqrt(E)' })),
  returnWeights: Type.Optional(Type.Boolean({ description: 'Also return the attention weights [..., Lq, Lk]' })),
  ...commonFields
}, { additionalProperties: false })

export default defineOperation({
  name: 'attention',
  summary: 'Scaled dot-product attention: softmax(Q·Kᵀ·scale + mask)·V',
  description: 'softmax(query·keyᵀ·scale + mask)·value over the last axis. query [..., Lq, E], key [..., Lk, E], value ' +
    '[..., Lk, Ev]; the batch dimensions of the three (and the mask\'s own) broadcast; the result is [..., Lq, Ev]. ' +
    'mask: booleans (true = may attend) or numbers added to the scores, broadcastable to [..., Lq, Lk]. causal: query i ' +
    'sees keys 0..i. Both apply together. A query row that may attend to no key gives zeros, never NaN. ' +
    'scale defaults to 1/sqrt(E); with E = 0 the scores are 0. returnWeights adds "weights" [..., Lq, Lk].',
  body: Body,
  extraReply: { weights: Type.Optional(ResultTensorSchema) },
  example: {
    query: [[1, 0], [0, 1]],
    key: [[1, 0], [0, 1], [1, 1]],
    value: [[1, 2], [3, 4], [5, 6]],
    causal: true,
    returnWeights: true
  },
  exampleReply: {
    result: { shape: [2, 2], dtype: 'float64', data: [[1, 2], [2.3395230986533138, 3.3395230986533138]] },
    weights: { shape: [2, 3], dtype: 'float64', data: [[1, 0, 0], [0.3302384506733431, 0.6697615493266569, 0]] }
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
    return {
      task: { dtype, query: qd, key: kd, value: vd, mask: md, info },
      transfer: buffersOf(qd, kd, vd, md),
      outputs
    }
  }
})
