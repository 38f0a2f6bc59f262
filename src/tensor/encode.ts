/**
 * Encoding of result tensors as JSON text in the contract's object form
 * `{"shape":[...],"dtype":"...","data":...}`, with data nested (default), flat or base64.
 * NaN and ±Infinity are written as the strings "NaN", "Infinity", "-Infinity", never null.
 * float64 prints in JavaScript's shortest round-trip form; float32, float16 and bfloat16 in the
 * shortest decimal that reads back to the same value of their type (as NumPy prints them).
 * A reply in safetensors is written by src/tensor/safetensors.ts.
 */
import { Buffer } from 'node:buffer'
import type { FloatArray, WireDType } from '../kernels/types.js'
import { begin, end } from '../kernels/wasm/runtime.js'
import { format16, type HalfDType, roundTo16, textOf, toBits16Array } from './half.js'
import { buffers } from './buffers.js'
import { encodeSafetensors } from './safetensors.js'

/** Most bytes the WebAssembly printer writes for one float64 and its comma ("-0.0000012345678901234567,"). */
const F64_TEXT_BYTES = 26

export const ENCODINGS = ['nested', 'flat', 'base64'] as const
export type Encoding = typeof ENCODINGS[number]

function nonFinite (x: number): string {
  return x !== x ? '"NaN"' : x > 0 ? '"Infinity"' : '"-Infinity"' // eslint-disable-line no-self-compare
}

export function formatFloat64 (x: number): string {
  if (!Number.isFinite(x)) return nonFinite(x)
  return String(x) // -0 prints as 0; exponents as 1e+21, valid JSON
}

const f32 = new Float32Array(1)
const f32Bits = new Uint32Array(f32.buffer)

/** True for ±2^k: the one float32 whose neighbours are not equally far on both sides. */
function isPowerOfTwo32 (x: number): boolean {
  f32[0] = x
  return (f32Bits[0] & 0x7fffff) === 0
}

/** Whether x's nearest decimal of p significant digits reads back (rounded to float32) to x. */
function roundTrips32 (x: number, p: number): boolean {
  return Math.fround(Number(x.toPrecision(p))) === x
}

/**
 * The shortest decimal that parses back (rounded to float32) to the same float32 value: of the
 * p = 1..9 digit decimals nearest to x, the first that reads back.
 * For x not a power of two, the values that read back to x lie in an interval centred on x, and
 * the nearest decimal of p+1 digits is never farther from x than that of p digits; so once some
 * p reads back, every larger p does, and a binary search finds the first (3 or 4 conversions
 * instead of up to 9). At a power of two the interval is lopsided and the digits are tried in order.
 */
export function formatFloat32 (x: number): string {
  if (!Number.isFinite(x)) return nonFinite(x)
  if (x === 0) return '0'
  let p = 1
  if (isPowerOfTwo32(x)) {
    while (p < 9 && !roundTrips32(x, p)) p++
  } else {
    let hi = 9
    while (p < hi) {
      const mid = (p + hi) >> 1
      if (roundTrips32(x, mid)) hi = mid
      else p = mid + 1
    }
  }
  return String(Number(x.toPrecision(p)))
}

/** Values per call of the WebAssembly printer (2 MiB of float64 in, at most 6.25 MiB of text out). */
const WASM_CHUNK = 1 << 18

/**
 * The JSON text of each row of `inner` float64 values (rows · inner = data.length), printed by the
 * WebAssembly Ryu printer (asm/format.ts) a chunk of rows at a time: the same text as String(x),
 * about four times faster and without a string per value.
 */
function rowTextsF64 (data: Float64Array, inner: number): string[] {
  const rows = data.length / inner
  const texts = new Array<string>(rows)
  const per = Math.max(1, Math.floor(WASM_CHUNK / inner))
  const ws = begin()
  try {
    const src = ws.alloc(per * inner, 8)
    const dst = ws.alloc(per * inner * F64_TEXT_BYTES, 1)
    const ends = ws.alloc(per, 4)
    ws.commit()
    for (let r0 = 0; r0 < rows; r0 += per) {
      const n = Math.min(per, rows - r0)
      ws.f64(src, n * inner).set(data.subarray(r0 * inner, (r0 + n) * inner))
      const bytes = ws.x.formatRowsF64(src, n, inner, dst, ends)
      const text = Buffer.from(ws.x.memory.buffer, dst, bytes).toString('latin1')
      const e = ws.i32(ends, n)
      let start = 0
      for (let r = 0; r < n; r++) {
        texts[r0 + r] = text.slice(start, e[r])
        start = e[r]
      }
    }
  } finally {
    end()
  }
  return texts
}

/**
 * Below this many values, String(x) is quicker than setting up the WebAssembly printer (a 4x4
 * result: 1.2 against 2.3 µs; they are even at about 32x32).
 */
const WASM_MIN_VALUES = 256

/** The printer of one value of the dtype. */
export function formatterOf (dtype: WireDType): (x: number) => string {
  if (dtype === 'float32') return formatFloat32
  if (dtype === 'float64') return formatFloat64
  if (dtype === 'bfloat16') {
    // the values are bfloat16 already: their bits are the float32's top half
    const f = new Float32Array(1)
    const u = new Uint32Array(f.buffer)
    return x => {
      f[0] = x
      return textOf(u[0] >>> 16, dtype)
    }
  }
  return x => format16(x, dtype)
}

/** The JSON text of each row of `inner` values (inner >= 1), values separated by commas. */
function rowTexts (data: FloatArray, dtype: WireDType, inner: number): string[] {
  if (dtype === 'float64' && inner <= WASM_CHUNK && data.length >= WASM_MIN_VALUES) return rowTextsF64(data as Float64Array, inner)
  const fmt = formatterOf(dtype)
  const rows = data.length / inner
  const texts = new Array<string>(rows)
  const row = new Array<string>(inner)
  for (let r = 0; r < rows; r++) {
    const o = r * inner
    for (let j = 0; j < inner; j++) row[j] = fmt(data[o + j])
    texts[r] = row.join(',')
  }
  return texts
}

function appendNested (parts: string[], data: FloatArray, shape: readonly number[], dtype: WireDType): void {
  const rank = shape.length
  if (rank === 0) {
    parts.push(formatterOf(dtype)(data[0]))
    return
  }
  const inner = shape[rank - 1]
  const rows = inner === 0 ? 0 : data.length / inner
  // counters over the outer dimensions, to open and close brackets
  const outer = shape.slice(0, -1)
  if (outer.some(d => d === 0) || rows === 0) {
    parts.push(emptyNested(shape))
    return
  }
  const texts = rowTexts(data, dtype, inner)
  const idx = new Array<number>(outer.length).fill(0)
  parts.push('['.repeat(rank))
  for (let r = 0; r < rows; r++) {
    parts.push(texts[r])
    // close the dimensions that just finished, open the next ones
    let closed = 1
    let a = outer.length - 1
    while (a >= 0) {
      idx[a]++
      if (idx[a] < outer[a]) break
      idx[a] = 0
      closed++
      a--
    }
    if (a < 0) {
      parts.push(']'.repeat(rank))
    } else {
      parts.push(']'.repeat(closed) + ',' + '['.repeat(closed))
    }
  }
}

/** Nested brackets for a shape with a zero dimension: [2,0] is [[],[]]. */
function emptyNested (shape: readonly number[]): string {
  const d = shape[0]
  if (d === 0 || shape.length === 1) return d === 0 ? '[]' : `[${new Array(d).fill('').join(',')}]`
  const inner = emptyNested(shape.slice(1))
  return `[${new Array(d).fill(inner).join(',')}]`
}

/** JSON text of one result tensor in the object form. */
export function encodeTensor (shape: readonly number[], dtype: WireDType, data: FloatArray, encoding: Encoding = 'nested'): string {
  const head = `{"shape":[${shape.join(',')}],"dtype":"${dtype}","data":`
  if (encoding === 'base64') {
    const bytes = dtype === 'float16' || dtype === 'bfloat16' ? toBits16Array(data, dtype) : data
    return head + '"' + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') + '"}'
  }
  const parts: string[] = [head]
  if (encoding === 'flat') {
    // rows of the last dimension (or one row), joined: the same commas as value by value
    const inner = shape.length > 0 && shape[shape.length - 1] > 0 ? shape[shape.length - 1] : Math.max(1, data.length)
    parts.push('[' + (data.length === 0 ? '' : rowTexts(data, dtype, inner).join(',')) + ']')
  } else {
    appendNested(parts, data, shape, dtype)
  }
  parts.push('}')
  return parts.join('')
}

/** The reply's body formats: JSON, or a safetensors file. */
export type ReplyFormat = 'json' | 'safetensors'

/** Where each result tensor sits in the one buffer an operation returns, and how to write them. */
export interface ReplySpec {
  format: ReplyFormat
  encoding: Encoding
  outputs: ReplyOutput[]
}

/** One place of the reply: a tensor cut from the buffer, or a value known before computing. */
export interface ReplyOutput {
  /** Its name in a safetensors reply, and by default its place in the JSON reply, split at the dots. */
  field: string
  /** Its place in the JSON reply when a key may hold dots (a name the user chose), every key a key of an object. */
  path?: string[]
  shape: number[]
  length: number
  /** A place written as null (an einsum operand whose gradient was not asked for). */
  absent?: boolean
  /** Not a tensor but this value (length 0): as JSON in the JSON reply, in `__metadata__` in a safetensors one (an object: nowhere). */
  value?: number | Record<string, never>
  /**
   * An explanation of the result (src/operations/explain.ts), printing about this many products: written
   * by the run step into `json`, the JSON text the reply carries at this place.
   */
  explain?: number
  json?: string
}

/**
 * The most bytes one number (and its comma) takes as JSON text, by dtype: the bound from which a
 * JSON reply's size is known from its shapes before computing ("-2.2250738585072014e-308",
 * "-1.17549435e-38", "-6.104e-05", "-1.175e-38").
 */
const TEXT_BYTES: Record<WireDType, number> = { float64: 25, float32: 16, float16: 11, bfloat16: 11 }
const BASE64_BYTES: Record<WireDType, number> = { float64: 32 / 3, float32: 16 / 3, float16: 8 / 3, bfloat16: 8 / 3 }

/** The most bytes a reply of this spec takes, from the shapes alone (headers and brackets included). */
export function replyBytesBound (dtype: WireDType, spec: ReplySpec): number {
  let total = 0
  for (const o of spec.outputs) {
    total += 64 + 6 * o.field.length + 2 * o.shape.length // field name (escaped), shape, dtype, quotes
    // each product printed twice (its pair and the text line), and each element's keys
    if (o.explain !== undefined) total += o.explain * (4 * TEXT_BYTES[dtype] + 16) + 65536
    for (const d of o.shape) total += String(d).length + 1
    if (spec.format === 'safetensors') total += o.length * (dtype === 'float64' ? 8 : dtype === 'float32' ? 4 : 2)
    else if (spec.encoding === 'base64') total += Math.ceil(o.length * BASE64_BYTES[dtype]) + 4
    // brackets: at most one pair per row of the last dimension, and their commas
    else total += o.length * TEXT_BYTES[dtype] + 3 * Math.ceil(o.length / Math.max(1, o.shape[o.shape.length - 1] ?? 1)) + 2 * o.shape.length
  }
  return total
}

const utf8 = new TextEncoder()

/**
 * The reply's body, in a buffer of its own (a worker moves it back to the main thread): JSON as
 * UTF-8 bytes, or a safetensors file.
 */
export function encodeReplyBytes (buffer: FloatArray, dtype: WireDType, spec: ReplySpec, into?: ArrayBuffer): Uint8Array {
  if (spec.format === 'safetensors') return encodeSafetensors(roundResult(buffer, dtype), dtype, spec.outputs, into)
  const text = encodeReply(buffer, dtype, spec)
  // (the text is ASCII, one byte a character: numbers, base64, field names and punctuation)
  const target = into !== undefined && into.byteLength >= text.length ? into : buffers.take(text.length)
  const { read, written } = utf8.encodeInto(text, new Uint8Array(target, 0, text.length))
  return read === text.length ? new Uint8Array(target, 0, written) : utf8.encode(text)
}

/** The reply's body on the main thread: JSON text, or a safetensors file. */
export function encodeReplyBody (buffer: FloatArray, dtype: WireDType, spec: ReplySpec): string | Uint8Array {
  if (spec.format === 'safetensors') return encodeSafetensors(roundResult(buffer, dtype), dtype, spec.outputs)
  return encodeReply(buffer, dtype, spec)
}

/** A 16-bit result, computed in float32, rounded once to its type (in place). */
function roundResult (buffer: FloatArray, dtype: WireDType): FloatArray {
  if (dtype === 'float16' || dtype === 'bfloat16') roundTo16(buffer, dtype as HalfDType, buffer as Float32Array)
  return buffer
}

/**
 * The JSON text of a reply `{"result": ..., ...}`, its tensors cut in order from one buffer. A
 * dotted field nests (`grads.a` is `{"grads":{"a":...}}`; fields sharing a prefix are consecutive),
 * and numeric segments make an array (`grads.operands.0`, `grads.operands.1`, … is
 * `{"grads":{"operands":[…,…]}}`), with null for an index not given or `absent`.
 */
export function encodeReply (buffer: FloatArray, dtype: WireDType, spec: ReplySpec): string {
  roundResult(buffer, dtype)
  let offset = 0
  const texts = spec.outputs.map(o => {
    if (o.absent === true) return 'null'
    if (o.value !== undefined) return JSON.stringify(o.value)
    if (o.json !== undefined) return o.json
    const data = buffer.subarray(offset, offset + o.length)
    offset += o.length
    return encodeTensor(o.shape, dtype, data, spec.encoding)
  })
  return objectText(spec.outputs.map(o => o.path ?? o.field.split('.').map(k => INDEX.test(k) ? Number(k) : k)), texts, 0, 0, texts.length)
}

/** A key that is an index: the numeric segments of a dotted field make an array. */
const INDEX = /^(0|[1-9][0-9]{0,5})$/

/** The JSON object (an array where every key is an index) of the fields [from, to), whose paths agree before `depth`. */
function objectText (paths: Array<Array<string | number>>, texts: string[], depth: number, from: number, to: number): string {
  const keys: Array<string | number> = []
  const values: string[] = []
  let i = from
  while (i < to) {
    const key = paths[i][depth]
    keys.push(key)
    if (paths[i].length === depth + 1) {
      values.push(texts[i])
      i++
      continue
    }
    let j = i + 1
    while (j < to && paths[j][depth] === key && paths[j].length > depth + 1) j++
    values.push(objectText(paths, texts, depth + 1, i, j))
    i = j
  }
  if (keys.length > 0 && keys.every(k => typeof k === 'number')) {
    const items = new Array<string>(Math.max(...(keys as number[])) + 1).fill('null')
    keys.forEach((k, x) => { items[k as number] = values[x] })
    return `[${items.join(',')}]`
  }
  return `{${keys.map((k, x) => `${JSON.stringify(String(k))}:${values[x]}`).join(',')}}`
}
