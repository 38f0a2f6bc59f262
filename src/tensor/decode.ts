/**
 * Decoding of the contract's three tensor wire forms into typed arrays:
 *   nested arrays `[[1,2],[3,4]]` (a bare number is rank 0),
 *   `{shape, data: [flat or nested], dtype}` and `{shape, dtype, data: "<base64>"}`,
 * and of the tensors a binary body already decoded (src/tensor/safetensors.ts, `FileTensor`).
 * float16 and bfloat16 values are rounded to their type (ties to even) and held in Float32Array.
 * Every check runs from the shape before anything is allocated, and every message names the
 * operand and the place at fault. Nested arrays are walked once, to the rank cap and no deeper.
 */
import { Buffer } from 'node:buffer'
import { type ApiError, invalidTensor } from '../errors.js'
import { elementCount, formatShape, MAX_RANK } from '../kernels/shape.js'
import type { FloatArray, Limits, WireDType } from '../kernels/types.js'
import { buffers } from './buffers.js'
import { bitsToFloat32, type HalfDType, roundTo16 } from './half.js'
import { takeSpan } from './json.js'

export const NON_FINITE: Readonly<Record<string, number>> = { NaN, Infinity, '-Infinity': -Infinity }

export interface DecodedTensor {
  shape: number[]
  /** The operand's own dtype: its `dtype` field, else float64. */
  dtype: WireDType
  data: FloatArray
}

export interface DecodedMask {
  shape: number[]
  kind: 'bool' | 'additive'
  /** Uint8Array (1 = may attend) for a boolean mask, Float64Array for an additive one. */
  data: Uint8Array | Float64Array
}

type Leaf = 'number' | 'bool'

export const DTYPES: readonly WireDType[] = ['float64', 'float32', 'float16', 'bfloat16']
const ITEMSIZE: Record<WireDType, number> = { float64: 8, float32: 4, float16: 2, bfloat16: 2 }

/** The values of a FileTensor, on a symbol: the body's schema sees `{shape, dtype, data: []}` only. */
export const FILE_VALUES = Symbol('file tensor values')

/**
 * A tensor read from a binary body, already decoded, standing where a JSON tensor would: it
 * meets the tensor schemas as the object form with empty data, and the decoder takes its values.
 * `dtype` is absent for a boolean tensor (a mask).
 */
export interface FileTensor {
  shape: number[]
  dtype?: WireDType
  data: never[]
  [FILE_VALUES]: FloatArray | Uint8Array
}

export function isFileTensor (v: unknown): v is FileTensor {
  return typeof v === 'object' && v !== null && FILE_VALUES in v
}

function isHalf (dtype: WireDType): dtype is HalfDType {
  return dtype === 'float16' || dtype === 'bfloat16'
}

const TENSOR_KEYS = new Set(['shape', 'data', 'dtype'])

function isPlainObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function describe (v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 20 ? v.slice(0, 20) + '…' : v)}`
  return `${typeof v} ${typeof v === 'object' ? '' : String(v)}`.trim()
}

/** Shape of nested arrays, read down the first elements; refuses depth past the rank cap. */
function nestedShape (v: unknown, name: string): number[] {
  const shape: number[] = []
  let cur = v
  while (Array.isArray(cur)) {
    if (shape.length === MAX_RANK) throw invalidTensor(`${name} is nested deeper than the maximum rank ${MAX_RANK}`)
    shape.push(cur.length)
    if (cur.length === 0) break
    cur = cur[0]
  }
  return shape
}

function pathOf (name: string, idx: number[], depth: number): string {
  return name + idx.slice(0, depth).map(i => `[${i}]`).join('')
}

/**
 * Writes the leaves of rectangular nested arrays of the given shape into out (row-major),
 * checking every length and every leaf. Iterative, so no input can exhaust the stack.
 */
function fillNested (v: unknown, shape: number[], out: FloatArray | Uint8Array, name: string, leaf: Leaf): void {
  const rank = shape.length
  if (rank === 0) {
    out[0] = readLeaf(v, name, leaf)
    return
  }
  const stack: unknown[][] = new Array(rank)
  const idx = new Array<number>(rank).fill(0)
  stack[0] = v as unknown[]
  let depth = 0
  let pos = 0
  // descend to depth rank-1, checking lengths, then copy the innermost rows
  for (;;) {
    const arr = stack[depth]
    if (depth === rank - 1) {
      const n = shape[depth]
      for (let j = 0; j < n; j++) {
        const x = arr[j]
        if (typeof x === 'number') {
          if (leaf === 'bool') throw invalidTensor(`${pathOf(name, idx, depth)}[${j}] is a number, but this mask's other entries are booleans`)
          out[pos++] = x
        } else {
          idx[depth] = j
          out[pos++] = readLeaf(x, `${pathOf(name, idx, depth)}[${j}]`, leaf)
        }
      }
      // climb up to the next sibling
      for (;;) {
        depth--
        if (depth < 0) return
        idx[depth]++
        if (idx[depth] < shape[depth]) break
      }
      idx.fill(0, depth + 1)
    }
    const child = stack[depth][idx[depth]]
    if (!Array.isArray(child) || child.length !== shape[depth + 1]) {
      const at = pathOf(name, idx, depth + 1)
      if (!Array.isArray(child)) {
        throw invalidTensor(`${at} is ${describe(child)}, but ${name} has shape ${formatShape(shape)} (read from its first elements): the nested arrays are ragged`)
      }
      throw invalidTensor(`${at} has length ${child.length}, expected ${shape[depth + 1]}: ${name} is ragged (its first elements give shape ${formatShape(shape)})`)
    }
    depth++
    stack[depth] = child
  }
}

function readLeaf (x: unknown, where: string, leaf: Leaf): number {
  if (leaf === 'bool') {
    if (typeof x === 'boolean') return x ? 1 : 0
    throw invalidTensor(`${where} is ${describe(x)}; a boolean mask holds only true and false`)
  }
  if (typeof x === 'number') return x
  if (typeof x === 'string' && Object.hasOwn(NON_FINITE, x)) return NON_FINITE[x]
  if (Array.isArray(x)) throw invalidTensor(`${where} is an array where a number was expected: the nested arrays are ragged`)
  throw invalidTensor(`${where} is ${describe(x)}; expected a number or one of "NaN", "Infinity", "-Infinity"`)
}

function checkShapeField (shape: unknown, name: string): number[] {
  if (!Array.isArray(shape)) throw invalidTensor(`${name}.shape must be an array of dimensions; got ${describe(shape)}`)
  if (shape.length > MAX_RANK) throw invalidTensor(`${name}.shape ${formatShape(shape)} has rank ${shape.length}, over the maximum rank ${MAX_RANK}`)
  shape.forEach((d, i) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw invalidTensor(`${name}.shape[${i}] is ${describe(d)}; every dimension must be an integer >= 0`)
    }
  })
  return shape as number[]
}

function decodeBase64 (s: string, count: number, dtype: WireDType, name: string): FloatArray {
  const bytes = count * ITEMSIZE[dtype]
  // a span the JSON scan already decoded from the body's bytes (src/tensor/json.ts), checked there as strictly
  const span = takeSpan(s)
  const malformed = (): ApiError =>
    invalidTensor(`${name}.data is not valid base64: standard alphabet (A-Z a-z 0-9 + /), '=' padding, no whitespace`)
  if (span === undefined && s.length % 4 !== 0) throw malformed()
  const padding = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0
  const got = span === undefined ? (s.length / 4) * 3 - padding : span.length
  if (got !== bytes) {
    throw invalidTensor(`${name}.data holds ${got} bytes of base64, but ${count} elements of ${dtype} need ${bytes} bytes`)
  }
  if (span !== undefined) return fromSpan(span, count, dtype)
  // Decoded straight into the typed array's memory. Node's decoder is lenient: it skips characters
  // outside the alphabet and whitespace (then fewer bytes than expected come out) and takes the
  // URL-safe '-' and '_' (looked for). With '=' padding, the bits past the last byte must be zero
  // (the last quantum must be the standard encoding of its bytes). (A regular expression over a
  // string of megabytes costs ten times more; so did decoding and encoding again.)
  // (float32 and float64 into a buffer of this thread's pool: it moves to a worker with its task and comes back)
  const out = dtype === 'float64' ? new Float64Array(buffers.take(bytes), 0, count) : isHalf(dtype) ? new Uint16Array(count) : new Float32Array(buffers.take(bytes), 0, count)
  const view = Buffer.from(out.buffer, out.byteOffset, bytes)
  if (view.write(s, 'base64') !== bytes || s.includes('-') || s.includes('_')) throw malformed()
  if (padding > 0 && view.toString('base64', bytes - 3 + padding) !== s.slice(-4)) throw malformed()
  return out instanceof Uint16Array ? bitsToFloat32(out, dtype as HalfDType) : out
}

/** The array over a decoded span's bytes (a buffer of this thread's pool, of the right length). */
function fromSpan (span: Uint8Array, count: number, dtype: WireDType): FloatArray {
  const buffer = span.buffer as ArrayBuffer
  if (dtype === 'float64') return new Float64Array(buffer, 0, count)
  if (dtype === 'float32') return new Float32Array(buffer, 0, count)
  const out = bitsToFloat32(new Uint16Array(buffer, 0, count), dtype as HalfDType)
  buffers.give(buffer)
  return out
}

/** (16-bit values are read as float64, then rounded once: decodeAny) */
function allocLeaves (leaf: Leaf, dtype: WireDType, n: number): FloatArray | Uint8Array {
  if (leaf === 'bool') return new Uint8Array(n)
  return dtype === 'float32' ? new Float32Array(n) : new Float64Array(n)
}

/** Decodes nested arrays, checking rank and element count before allocating. */
function decodeNested (v: unknown, name: string, dtype: WireDType, leaf: Leaf, limits: Limits): { shape: number[], data: FloatArray | Uint8Array } {
  const shape = nestedShape(v, name)
  const n = elementCount(shape, name, limits)
  const data = allocLeaves(leaf, dtype, n)
  if (n > 0 || shape.length === 0) fillNested(v, shape, data, name, leaf)
  else checkEmptyNested(v, shape, name)
  return { shape, data }
}

/** An empty tensor's nested arrays must still be rectangular, e.g. [[],[]] but not [[],[1]]. */
function checkEmptyNested (v: unknown, shape: number[], name: string): void {
  const zero = shape.indexOf(0)
  const walk = (x: unknown, depth: number, path: string): void => {
    if (depth === zero) {
      if (!Array.isArray(x) || x.length !== 0) throw invalidTensor(`${path} must be an empty array: ${name} has shape ${formatShape(shape)}`)
      return
    }
    if (!Array.isArray(x) || x.length !== shape[depth]) throw invalidTensor(`${path} must be an array of ${shape[depth]} elements: ${name} has shape ${formatShape(shape)}`)
    x.forEach((c, i) => walk(c, depth + 1, `${path}[${i}]`))
  }
  walk(v, 0, name)
}

function decodeAny (v: unknown, name: string, leaf: Leaf, limits: Limits): { shape: number[], dtype: WireDType, data: FloatArray | Uint8Array } {
  const t = decodeForm(v, name, leaf, limits)
  // numbers of a 16-bit tensor, read as float64, rounded to its type once
  if (isHalf(t.dtype) && t.data instanceof Float64Array) t.data = roundTo16(t.data, t.dtype)
  return t
}

function decodeForm (v: unknown, name: string, leaf: Leaf, limits: Limits): { shape: number[], dtype: WireDType, data: FloatArray | Uint8Array } {
  if (!isPlainObject(v)) {
    if (Array.isArray(v) || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') {
      if (typeof v === 'string' && !Object.hasOwn(NON_FINITE, v)) {
        throw invalidTensor(`${name} is ${describe(v)}; a tensor is a number, nested arrays or an object {shape, data, dtype}`)
      }
      return { dtype: 'float64', ...decodeNested(v, name, 'float64', leaf, limits) }
    }
    throw invalidTensor(`${name} is ${describe(v)}; a tensor is a number, nested arrays or an object {shape, data, dtype}`)
  }
  for (const key of Object.keys(v)) {
    if (!TENSOR_KEYS.has(key)) throw invalidTensor(`${name} has an unknown key ${JSON.stringify(key)}; a tensor object has only shape, data and dtype`)
  }
  let dtype: WireDType = 'float64'
  if (v.dtype !== undefined) {
    if (!DTYPES.includes(v.dtype as WireDType)) throw invalidTensor(`${name}.dtype must be one of ${DTYPES.map(d => `"${d}"`).join(', ')}; got ${describe(v.dtype)}`)
    if (leaf === 'bool') throw invalidTensor(`${name}.dtype does not apply to a boolean mask`)
    dtype = v.dtype as WireDType
  }
  if (!('data' in v)) throw invalidTensor(`${name} has no data`)
  const data = v.data
  const shape = v.shape === undefined ? undefined : checkShapeField(v.shape, name)
  if (typeof data === 'string' && Object.hasOwn(NON_FINITE, data) && (shape === undefined || shape.length === 0)) {
    // a rank-0 NaN or infinity, as the service writes it ("NaN" is never valid base64 of 4 or 8 bytes)
    const out = allocLeaves(leaf, dtype, 1)
    out[0] = readLeaf(data, `${name}.data`, leaf)
    return { shape: [], dtype, data: out }
  }
  if (typeof data === 'string') {
    if (leaf === 'bool') throw invalidTensor(`${name}.data: a boolean mask cannot be base64`)
    if (shape === undefined) throw invalidTensor(`${name}.data is base64, so ${name}.shape is required`)
    const n = elementCount(shape, name, limits)
    return { shape, dtype, data: decodeBase64(data, n, dtype, name) }
  }
  if (shape === undefined) return { dtype, ...decodeNested(data, `${name}.data`, dtype, leaf, limits) }
  const n = elementCount(shape, name, limits)
  if (!Array.isArray(data)) {
    if (shape.length !== 0) throw invalidTensor(`${name}.data is ${describe(data)} but ${name}.shape is ${formatShape(shape)}; give a flat list of ${n} values`)
    const out = allocLeaves(leaf, dtype, 1)
    out[0] = readLeaf(data, `${name}.data`, leaf)
    return { shape, dtype, data: out }
  }
  const flat = shape.length <= 1 || data.length === 0 || !Array.isArray(data[0])
  if (flat) {
    if (data.length !== n) {
      throw invalidTensor(`${name}.data has ${data.length} values, but shape ${formatShape(shape)} needs ${n}`)
    }
    const out = allocLeaves(leaf, dtype, n)
    for (let i = 0; i < n; i++) {
      const x = data[i]
      out[i] = typeof x === 'number' && leaf === 'number' ? x : readLeaf(x, `${name}.data[${i}]`, leaf)
    }
    return { shape, dtype, data: out }
  }
  const nested = decodeNested(data, `${name}.data`, dtype, leaf, limits)
  // nested arrays stop at the first 0 dimension ([2,0,3] is written [[],[]]): a prefix ending there agrees
  const ns = nested.shape
  const agrees = ns.length === shape.length
    ? ns.every((d, i) => d === shape[i])
    : ns.length < shape.length && ns[ns.length - 1] === 0 && ns.every((d, i) => d === shape[i])
  if (!agrees) {
    throw invalidTensor(`${name}.data is nested arrays of shape ${formatShape(nested.shape)}, but ${name}.shape says ${formatShape(shape)}`)
  }
  return { shape, dtype, data: nested.data }
}

/** Decodes a numeric tensor operand (of its own dtype, float64 by default). */
export function decodeTensor (v: unknown, name: string, limits: Limits): DecodedTensor {
  if (isFileTensor(v)) {
    if (v.dtype === undefined) throw invalidTensor(`${name} is BOOL; only an attention mask may be boolean`)
    elementCount(v.shape, name, limits)
    return { shape: v.shape, dtype: v.dtype, data: v[FILE_VALUES] as FloatArray }
  }
  const t = decodeAny(v, name, 'number', limits)
  return t as DecodedTensor
}

/** Decodes an attention mask: booleans (true = may attend) or numbers added to the scores. */
export function decodeMask (v: unknown, name: string, limits: Limits): DecodedMask {
  if (isFileTensor(v)) {
    elementCount(v.shape, name, limits)
    const values = v[FILE_VALUES]
    if (v.dtype === undefined) return { shape: v.shape, kind: 'bool', data: values as Uint8Array }
    return { shape: v.shape, kind: 'additive', data: values instanceof Float64Array ? values : Float64Array.from(values) }
  }
  const leaf: Leaf = firstLeafIsBoolean(v) ? 'bool' : 'number'
  const t = decodeAny(v, name, leaf, limits)
  if (leaf === 'bool') return { shape: t.shape, kind: 'bool', data: t.data as Uint8Array }
  const data = t.data instanceof Float64Array ? t.data : Float64Array.from(t.data)
  return { shape: t.shape, kind: 'additive', data }
}

function firstLeafIsBoolean (v: unknown): boolean {
  let cur = isPlainObject(v) ? v.data : v
  for (let depth = 0; Array.isArray(cur) && depth <= MAX_RANK; depth++) cur = cur[0]
  return typeof cur === 'boolean'
}

/**
 * The operand converted to the result's dtype (a no-op when it already is): float64 or float32,
 * or for float16 and bfloat16 a Float32Array of values rounded to the type (computed in float32).
 */
export function castTo (data: FloatArray, dtype: WireDType): FloatArray {
  if (dtype === 'float64') return data instanceof Float64Array ? data : Float64Array.from(data)
  if (isHalf(dtype)) return roundTo16(data, dtype, data instanceof Float32Array ? data : undefined)
  return data instanceof Float32Array ? data : Float32Array.from(data)
}

/**
 * The result's dtype, promoted as PyTorch promotes: the request's `dtype` if given, else float64
 * over float32 over the 16-bit types, float16 with bfloat16 giving float32.
 */
export function computeDtype (operands: ReadonlyArray<{ dtype: WireDType }>, requested: WireDType | undefined): WireDType {
  if (requested !== undefined) return requested
  if (operands.length === 0) return 'float64'
  let f16 = false
  let bf16 = false
  let f32 = false
  for (const t of operands) {
    if (t.dtype === 'float64') return 'float64'
    if (t.dtype === 'float32') f32 = true
    else if (t.dtype === 'float16') f16 = true
    else bf16 = true
  }
  return f32 || (f16 && bf16) ? 'float32' : f16 ? 'float16' : 'bfloat16'
}
