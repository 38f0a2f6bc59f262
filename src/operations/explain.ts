/**
 * Explain mode (`"explain": true` on matmul, dot, linear, conv2d and attention): the reply gains an
 * `explanation`, one entry per result element in row-major order, with the pairs that were
 * multiplied, the bias and activation where there are some, the element's value as the reply
 * prints it, and a line of text in the style `C[0,0] = 1*5 + 2*7 = 19`.
 *
 * For small inputs only (people learning the operations): a result of at most EXPLAIN_MAX_ELEMENTS
 * elements, each summing at most EXPLAIN_MAX_PRODUCTS products, and JSON replies only. The
 * explanation is written after the run step, from the task's operands and its result, in the
 * thread that computed it (src/operations/spec.ts, runOperation); its intermediate sums are
 * formed in float64 and printed rounded to the dtype, as the result's numbers are.
 */
import { Type } from 'typebox'
import { invalidArgument } from '../errors.js'
import type { FloatArray, WireDType } from '../kernels/types.js'
import { formatterOf, type ReplyOutput } from '../tensor/encode.js'
import { roundTo16 } from '../tensor/half.js'
import { NonFiniteSchema } from '../schemas/tensor.js'

export const EXPLAIN_MAX_ELEMENTS = 256
export const EXPLAIN_MAX_PRODUCTS = 64

/** The body field of the operations that explain. */
export const explainField = {
  explain: Type.Optional(Type.Boolean({
    description: 'Also return "explanation": for every result element, the products summed, the bias and activation, its value ' +
      `and a line such as "C[0,0] = 1*5 + 2*7 = 19". JSON replies only; at most ${EXPLAIN_MAX_ELEMENTS} result elements of ` +
      `at most ${EXPLAIN_MAX_PRODUCTS} products each.`
  }))
}

const Value = Type.Union([Type.Number(), NonFiniteSchema])
const Count = (description: string) => Type.Integer({ format: 'int32', minimum: 0, maximum: 2147483647, description })
const Pairs = Type.Array(Type.Array(Value, { minItems: 2, maxItems: 2 }), {
  maxItems: EXPLAIN_MAX_PRODUCTS,
  description: 'The pairs multiplied and summed, in order: [operand value, operand value]'
})
const Values = (description: string, maxItems: number) => Type.Array(Value, { maxItems, description })

/** The reply's `explanation` (the OpenAPI document's `Explanation`). */
export const ExplanationSchema = Type.Array(Type.Object({
  index: Type.Array(Count('An index'), { maxItems: 64, description: 'The element\'s index in the result' }),
  products: Type.Optional(Pairs),
  channels: Type.Optional(Type.Array(Type.Object({
    channel: Count('The input channel'),
    products: Pairs,
    sum: Value
  }, { additionalProperties: false }), {
    maxItems: EXPLAIN_MAX_PRODUCTS,
    description: 'conv2d: the patch·kernel products of each input channel of the window, and their sum (padding is left out: it adds nothing)'
  })),
  bias: Type.Optional(Value),
  preActivation: Type.Optional(Value),
  activation: Type.Optional(Type.String({ maxLength: 16, description: 'linear: the activation applied to preActivation' })),
  row: Type.Optional(Values('linear with softmax: the row of pre-activations the softmax takes', EXPLAIN_MAX_ELEMENTS)),
  scores: Type.Optional(Type.Array(Type.Object({
    key: Count('The key\'s position'),
    products: Pairs,
    value: Value
  }, { additionalProperties: false }), {
    maxItems: EXPLAIN_MAX_PRODUCTS,
    description: 'attention: query·key for each key, times the scale, plus the mask (-Infinity where hidden)'
  })),
  weights: Type.Optional(Values('attention: the softmax of the scores', EXPLAIN_MAX_PRODUCTS)),
  value: Value,
  text: Type.String({ maxLength: 65536, description: 'The element written out, e.g. "C[0,0] = 1*5 + 2*7 = 19"' })
}, { additionalProperties: false }), {
  $id: 'Explanation',
  maxItems: EXPLAIN_MAX_ELEMENTS,
  description: 'Present when the body asked for explain: each result element in row-major order and how it was computed.'
})

/** One element's explanation: numbers print in the dtype's form, except the integer keys (`index`, `channel`, `key`). */
export type Explained = { index: number[], text: string, value: number } & Record<string, unknown>

/** What an operation's prepare step adds to its outputs: nothing, or the explanation, once the limits are checked. */
export function explainOutput (
  body: { explain?: boolean }, elements: number, productsPerElement: number, what: string, printedPerElement = productsPerElement
): ReplyOutput[] {
  if (body.explain !== true) return []
  if (elements > EXPLAIN_MAX_ELEMENTS) {
    throw invalidArgument(`explain is for small inputs: the result has ${elements} elements, over ${EXPLAIN_MAX_ELEMENTS}`)
  }
  if (productsPerElement > EXPLAIN_MAX_PRODUCTS) {
    throw invalidArgument(`explain is for small inputs: each result element sums ${productsPerElement} products (${what}), over ${EXPLAIN_MAX_PRODUCTS}`)
  }
  return [{ field: 'explanation', shape: [], length: 0, explain: elements * Math.max(1, printedPerElement) }]
}

const INTEGER_KEYS = new Set(['index', 'channel', 'key'])

/** The JSON text of an explanation: numbers as the reply prints the dtype's numbers ("NaN" and the infinities as strings). */
export function explanationJson (elements: Explained[], dtype: WireDType): string {
  const fmt = formatterOf(dtype)
  const write = (v: unknown, integers: boolean): string => {
    if (typeof v === 'number') return integers ? String(v) : fmt(round(v, dtype))
    if (typeof v === 'string') return JSON.stringify(v)
    if (Array.isArray(v)) return `[${v.map(x => write(x, integers)).join(',')}]`
    return `{${Object.entries(v as object).filter(([, x]) => x !== undefined).map(([k, x]) => `${JSON.stringify(k)}:${write(x, INTEGER_KEYS.has(k))}`).join(',')}}`
  }
  return write(elements, false)
}

const half = new Float32Array(1)

/** x rounded to the dtype, as the reply rounds a result. */
export function round (x: number, dtype: WireDType): number {
  if (dtype === 'float64') return x
  if (dtype === 'float32') return Math.fround(x)
  half[0] = x
  return roundTo16(half, dtype, half)[0]
}

/** A printer of the dtype's numbers for the text lines: rounded to the dtype, NaN and the infinities bare. */
export function textNumber (dtype: WireDType): (x: number) => string {
  const fmt = formatterOf(dtype)
  return x => {
    const s = fmt(round(x, dtype))
    return s.charCodeAt(0) === 0x22 ? s.slice(1, -1) : s
  }
}

/** `name[i,j]`, or the name alone for a rank-0 result. */
export function elementName (name: string, index: readonly number[]): string {
  return index.length === 0 ? name : `${name}[${index.join(',')}]`
}

/** A row-major index of the shape from a flat position. */
export function unravel (flat: number, shape: readonly number[]): number[] {
  const index = new Array<number>(shape.length)
  for (let d = shape.length - 1; d >= 0; d--) {
    index[d] = flat % shape[d]
    flat = Math.floor(flat / shape[d])
  }
  return index
}

/** The products written out: `1*5 + 2*7` ("0" for none). */
export function productsText (pairs: ReadonlyArray<readonly [number, number]>, num: (x: number) => string): string {
  return pairs.length === 0 ? '0' : pairs.map(([a, b]) => `${num(a)}*${num(b)}`).join(' + ')
}

/** Σ a·b in float64. */
export function sumOf (pairs: ReadonlyArray<readonly [number, number]>): number {
  let s = 0
  for (const [a, b] of pairs) s += a * b
  return s
}

/** The explanation of a result that is sums of products, one element after the other (matmul, dot). */
export function explainSums (
  name: string, dtype: WireDType, result: FloatArray, shape: readonly number[], pairsOf: (flat: number) => Array<[number, number]>
): Explained[] {
  const num = textNumber(dtype)
  const out: Explained[] = []
  for (let f = 0; f < result.length; f++) {
    const index = unravel(f, shape)
    const products = pairsOf(f)
    const value = result[f]
    out.push({ index, products, value, text: `${elementName(name, index)} = ${productsText(products, num)} = ${num(value)}` })
  }
  return out
}
