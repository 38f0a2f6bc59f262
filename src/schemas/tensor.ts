/**
 * The wire forms of a tensor, as TypeBox schemas: named components of the OpenAPI document
 * (each has an `$id`) and the types of the TypeScript client. Where the document is stricter
 * than the validator (`checkedAs`), the validator keeps its looser schema and the operation's
 * own check answers with its own code and message: the decoder in src/tensor/decode.ts walks the
 * numbers once and reports ragged or malformed data precisely, and each operation checks the
 * range of its options (INVALID_ARGUMENT).
 */
import { type TArray, type TSchema, Type } from 'typebox'
import { MAX_RANK } from '../kernels/shape.js'

/** Bounds that keep every schema finite (the body limit is the tighter bound in practice). */
export const MAX_WIRE_ITEMS = 2 ** 28
export const MAX_BASE64_LENGTH = 2 ** 30

const CHECKED_AS = Symbol('checked as')

/**
 * `stated` in the document and the client's types, `checked` in the validator: the difference is
 * checked later by the decoder or the operation, whose answer (code and message) names the fault.
 */
export function checkedAs<T extends TSchema> (stated: T, checked: TSchema): T {
  return Object.assign(stated, { [CHECKED_AS]: checked })
}

/**
 * A schema as the validator compiles it: `checkedAs` schemas replaced by what they check, and the
 * components' `$id`s removed (a component appears several times in one body).
 */
export function validationSchema (schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(validationSchema)
  if (typeof schema !== 'object' || schema === null) return schema
  const checked = (schema as { [CHECKED_AS]?: TSchema })[CHECKED_AS]
  if (checked !== undefined) return validationSchema(checked)
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(schema)) {
    if (key !== '$id') out[key] = key === 'examples' || key === 'enum' ? value : validationSchema(value)
  }
  return out
}

/** Options are JSON integers in the int32 range; their meaningful range is checked by each operation (INVALID_ARGUMENT). */
export const Int32 = (options: Record<string, unknown> = {}) =>
  Type.Integer({ format: 'int32', minimum: -2147483648, maximum: 2147483647, ...options })
/** An int32 of at least `minimum` in the document; the operation answers INVALID_ARGUMENT below it. */
export const Int32AtLeast = (minimum: number, options: Record<string, unknown> = {}) =>
  checkedAs(Int32({ ...options, minimum }), Int32(options))
const Dimension = Type.Integer({ format: 'int64', minimum: 0, maximum: Number.MAX_SAFE_INTEGER })

/** An integer >= minimum, or a pair of them (in the document; below it the operation answers INVALID_ARGUMENT). */
export function intOrPair (minimum: number) {
  const int = () => Int32AtLeast(minimum)
  return [int(), Type.Array(int(), { minItems: 2, maxItems: 2 })] as [ReturnType<typeof int>, TArray<ReturnType<typeof int>>]
}

/** A string enum: typed in the document, checked by its values alone (the message lists them). */
export function StringEnum<const T extends string[]> (values: [...T], options: Record<string, unknown>) {
  return checkedAs(Type.Enum(values, { type: 'string', ...options }), Type.Enum(values))
}

/**
 * A string enum in the document whose values the operation checks itself, answering
 * INVALID_ARGUMENT with the values (the contract's rule for an operation's `op` or `kind`).
 */
export function CheckedEnum<const T extends string[]> (values: [...T], options: Record<string, unknown>) {
  return checkedAs(Type.Enum(values, { type: 'string', ...options }), Type.String({ maxLength: 64 }))
}

export const DTypeSchema = StringEnum(['float64', 'float32', 'float16', 'bfloat16'], {
  $id: 'DType',
  description: 'Element type. The result takes the operands\' promoted dtype, as PyTorch promotes: float64 over float32 over the 16-bit types, float16 with bfloat16 giving float32; a request-level dtype sets it instead. float16 and bfloat16 are computed in float32 and rounded once at the end.'
})

export const EncodingSchema = StringEnum(['nested', 'flat', 'base64'], {
  $id: 'Encoding',
  description: 'How result data is written: nested arrays (default), one flat row-major array, or base64 of little-endian IEEE-754 bytes.'
})

export const NonFiniteSchema = StringEnum(['NaN', 'Infinity', '-Infinity'], {
  $id: 'NonFinite',
  description: 'JSON has no NaN or infinities: these strings stand for them.'
})

const Shape = (description: string) => Type.Array(Dimension, { maxItems: MAX_RANK, description })

/** Nested arrays of numbers: each entry a number, one of the strings of NonFinite, or a row one level deeper. */
export const NestedArraysSchema = Type.Array(Type.Union([Type.Number(), NonFiniteSchema, Type.Array(Type.Unknown(), { maxItems: MAX_WIRE_ITEMS })]), {
  $id: 'NestedArrays',
  maxItems: MAX_WIRE_ITEMS,
  description: 'Nested arrays of numbers (or "NaN", "Infinity", "-Infinity"): rank = nesting depth; must be rectangular. ' +
    'Also a flat row-major list of values when a shape is given.'
})

export const TensorObjectSchema = Type.Object({
  shape: Type.Optional(Shape(`Dimensions, each an integer >= 0; rank at most ${MAX_RANK}. Without it the nesting of data gives the shape.`)),
  data: Type.Union([
    NestedArraysSchema,
    Type.Number({ description: 'The value of a rank-0 tensor.' }),
    NonFiniteSchema
  ], { description: 'Flat row-major values (with shape), nested arrays, or the value of a rank-0 tensor.' }),
  dtype: Type.Optional(DTypeSchema)
}, { $id: 'TensorObject', additionalProperties: false, description: 'A tensor as {shape, data, dtype} with flat or nested data.' })

export const TensorBase64Schema = Type.Object({
  shape: Shape(`Dimensions, each an integer >= 0; rank at most ${MAX_RANK}. Required with base64 data.`),
  data: Type.String({ maxLength: MAX_BASE64_LENGTH, description: 'Base64 (RFC 4648 standard alphabet, padded, no whitespace) of the little-endian values: elements × itemsize bytes.' }),
  dtype: Type.Optional(DTypeSchema)
}, { $id: 'TensorBase64', additionalProperties: false, description: 'A tensor as {shape, dtype, data} with base64 data.' })

/** What the validator checks of a tensor object (the decoder checks the rest: INVALID_TENSOR). */
const CheckedTensorObject = Type.Object({
  shape: Type.Optional(Type.Array(Dimension, { maxItems: MAX_RANK })),
  data: Type.Union([
    Type.Array(Type.Unknown(), { maxItems: MAX_WIRE_ITEMS }),
    Type.String({ maxLength: MAX_BASE64_LENGTH }),
    Type.Number(),
    Type.Boolean()
  ]),
  dtype: Type.Optional(DTypeSchema)
}, { additionalProperties: false })

export const TensorSchema = checkedAs(Type.Union([
  Type.Number({ description: 'A rank-0 tensor.' }),
  NonFiniteSchema,
  NestedArraysSchema,
  TensorObjectSchema,
  TensorBase64Schema
], {
  $id: 'Tensor',
  description: 'A tensor: a number, nested arrays (e.g. [[1,2],[3,4]]), or {shape, data, dtype} with data flat, nested or base64. ' +
    'Inside data the strings "NaN", "Infinity" and "-Infinity" stand for those values.'
}), Type.Union([Type.Number(), NonFiniteSchema, Type.Array(Type.Unknown(), { maxItems: MAX_WIRE_ITEMS }), CheckedTensorObject]))

/** Nested arrays of booleans. */
export const BooleanArraysSchema = Type.Array(Type.Union([Type.Boolean(), Type.Array(Type.Unknown(), { maxItems: MAX_WIRE_ITEMS })]), {
  $id: 'BooleanArrays',
  maxItems: MAX_WIRE_ITEMS,
  description: 'Nested arrays of booleans (true = may attend), or a flat row-major list when a shape is given.'
})

export const BooleanMaskObjectSchema = Type.Object({
  shape: Type.Optional(Shape('Dimensions of the mask; without it the nesting of data gives the shape.')),
  data: Type.Union([BooleanArraysSchema, Type.Boolean()])
}, { $id: 'BooleanMaskObject', additionalProperties: false, description: 'A boolean mask as {shape, data}.' })

export const MaskSchema = checkedAs(Type.Union([
  Type.Boolean(),
  BooleanArraysSchema,
  BooleanMaskObjectSchema,
  TensorSchema
], {
  $id: 'Mask',
  description: 'Attention mask broadcastable to [..., Lq, Lk]: booleans (true = may attend) or numbers added to the scores (any tensor form).'
}), Type.Union([
  Type.Boolean(),
  Type.Number(),
  NonFiniteSchema,
  Type.Array(Type.Unknown(), { maxItems: MAX_WIRE_ITEMS }),
  CheckedTensorObject
]))

export const ResultTensorSchema = Type.Object({
  shape: Type.Array(Dimension, { maxItems: MAX_RANK }),
  dtype: DTypeSchema,
  data: Type.Union([
    NestedArraysSchema,
    Type.String({ maxLength: MAX_BASE64_LENGTH, description: 'Base64 data (encoding "base64")' }),
    Type.Number({ description: 'The value of a rank-0 result' }),
    NonFiniteSchema
  ], { description: 'Nested arrays (default), a flat array or a base64 string, following the request\'s encoding.' })
}, { $id: 'ResultTensor', additionalProperties: false, description: 'A result tensor: always the object form, which can be posted back unchanged.' })

export const ErrorSchema = Type.Object({
  statusCode: Type.Integer({ format: 'int32', minimum: 400, maximum: 599 }),
  code: Type.String({ maxLength: 64, pattern: '^[A-Z0-9_]+$', description: 'e.g. INVALID_TENSOR, SHAPE_MISMATCH, INVALID_ARGUMENT, TOO_LARGE, OVERLOADED, TIMEOUT, FST_ERR_VALIDATION' }),
  error: Type.String({ maxLength: 64, description: 'The HTTP status text' }),
  message: Type.String({ maxLength: 4096, description: 'What is wrong, naming the field, operand or limit at fault' })
}, { $id: 'Error', additionalProperties: false, description: 'Every error: JSON, never a stack trace.' })

/** The fields every operation takes besides its tensors. */
export const commonFields = {
  encoding: Type.Optional(EncodingSchema),
  dtype: Type.Optional(DTypeSchema)
}
