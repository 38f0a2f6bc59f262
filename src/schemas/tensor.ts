/**
 * The wire forms of a tensor, as TypeBox schemas. They check the outer form; the decoder in
 * src/tensor/decode.ts walks the numbers once and reports ragged or malformed data precisely.
 */
import { Type } from 'typebox'
import { MAX_RANK } from '../kernels/shape.js'

/** Bounds that keep every schema finite (the body limit is the tighter bound in practice). */
export const MAX_WIRE_ITEMS = 2 ** 28
export const MAX_BASE64_LENGTH = 2 ** 30
/** Options are JSON integers in the int32 range; their meaningful range is checked by each operation (INVALID_ARGUMENT). */
export const Int32 = (options: Record<string, unknown> = {}) =>
  Type.Integer({ format: 'int32', minimum: -2147483648, maximum: 2147483647, ...options })
const Dimension = Type.Integer({ format: 'int64', minimum: 0, maximum: Number.MAX_SAFE_INTEGER })

export const DTypeSchema = Type.Enum(['float64', 'float32', 'float16', 'bfloat16'], {
  description: 'Element type. The result takes the operands\' promoted dtype, as PyTorch promotes: float64 over float32 over the 16-bit types, float16 with bfloat16 giving float32; a request-level dtype sets it instead. float16 and bfloat16 are computed in float32 and rounded once at the end.'
})

export const EncodingSchema = Type.Enum(['nested', 'flat', 'base64'], {
  description: 'How result data is written: nested arrays (default), one flat row-major array, or base64 of little-endian IEEE-754 bytes.'
})

export const NonFiniteSchema = Type.Enum(['NaN', 'Infinity', '-Infinity'], {
  description: 'JSON has no NaN or infinities: these strings stand for them.'
})

export const TensorObjectSchema = Type.Object({
  shape: Type.Optional(Type.Array(Dimension, {
    maxItems: MAX_RANK,
    description: `Dimensions, each an integer >= 0; rank at most ${MAX_RANK}. Required with base64 data.`
  })),
  data: Type.Union([
    Type.Array(Type.Unknown(), { maxItems: MAX_WIRE_ITEMS, description: 'Flat row-major values (with shape), or nested arrays.' }),
    Type.String({ maxLength: MAX_BASE64_LENGTH, description: 'Base64 (RFC 4648 standard alphabet, padded, no whitespace) of the little-endian values; also "NaN", "Infinity" or "-Infinity" for rank 0.' }),
    Type.Number({ description: 'The value of a rank-0 tensor.' }),
    Type.Boolean({ description: 'The value of a rank-0 boolean mask.' })
  ]),
  dtype: Type.Optional(DTypeSchema)
}, { additionalProperties: false, title: 'TensorObject' })

export const TensorSchema = Type.Union([
  Type.Number({ description: 'A rank-0 tensor.' }),
  NonFiniteSchema,
  Type.Array(Type.Unknown(), { maxItems: MAX_WIRE_ITEMS, description: 'Nested arrays: rank = nesting depth; must be rectangular.' }),
  TensorObjectSchema
], {
  description: 'A tensor: a number, nested arrays (e.g. [[1,2],[3,4]]), or {shape, data, dtype} with data flat, nested or base64. ' +
    'Inside data the strings "NaN", "Infinity" and "-Infinity" stand for those values.'
})

export const MaskSchema = Type.Union([
  Type.Boolean(),
  Type.Number(),
  NonFiniteSchema,
  Type.Array(Type.Unknown(), { maxItems: MAX_WIRE_ITEMS, description: 'Nested arrays of booleans (true = may attend) or of numbers added to the scores.' }),
  TensorObjectSchema
], {
  description: 'Attention mask broadcastable to [..., Lq, Lk]: booleans (true = may attend) or numbers added to the scores.'
})

export const ResultTensorSchema = Type.Object({
  shape: Type.Array(Dimension, { maxItems: MAX_RANK }),
  dtype: DTypeSchema,
  data: Type.Union([
    Type.Array(Type.Unknown(), { maxItems: MAX_WIRE_ITEMS }),
    Type.String({ maxLength: MAX_BASE64_LENGTH, description: 'Base64 data' }),
    Type.Number(),
    NonFiniteSchema
  ], { description: 'Nested arrays (default), a flat array or a base64 string, following the request\'s encoding.' })
}, { additionalProperties: false, title: 'ResultTensor' })

export const ErrorSchema = Type.Object({
  statusCode: Type.Integer({ format: 'int32', minimum: 400, maximum: 599 }),
  code: Type.String({ maxLength: 64, pattern: '^[A-Z0-9_]+$', description: 'e.g. INVALID_TENSOR, SHAPE_MISMATCH, INVALID_ARGUMENT, TOO_LARGE, OVERLOADED, TIMEOUT, FST_ERR_VALIDATION' }),
  error: Type.String({ maxLength: 64, description: 'The HTTP status text' }),
  message: Type.String({ maxLength: 4096, description: 'What is wrong, naming the field, operand or limit at fault' })
}, { additionalProperties: false, title: 'Error' })

/** The fields every operation takes besides its tensors. */
export const commonFields = {
  encoding: Type.Optional(EncodingSchema),
  dtype: Type.Optional(DTypeSchema)
}
