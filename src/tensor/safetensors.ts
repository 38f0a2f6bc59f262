/**
 * The safetensors format (https://github.com/huggingface/safetensors), the binary body of every
 * operation: an 8-byte little-endian header length N, N bytes of a JSON header
 * `{"__metadata__": {string: string}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}}`,
 * then the tensors' little-endian bytes, which the offsets (relative to the end of the header)
 * must cover exactly.
 *
 * Reading gives the body the JSON form would give, for the same schema to validate: each tensor
 * becomes a FileTensor in its field (`operands.0`, `operands.1` … fill the array `operands`),
 * each `__metadata__` entry a field, read as JSON when it parses as JSON, else as the string.
 * Writing lays a reply out as the safetensors library does: the header compact, padded with
 * spaces to a multiple of 8 bytes, the tensors in order of their names (the library's order for
 * tensors of one dtype).
 */
import { Buffer } from 'node:buffer'
import sjson from 'secure-json-parse'
import { bodyLooksLike, invalidTensor } from '../errors.js'
import { elementCount, formatShape, MAX_RANK } from '../kernels/shape.js'
import type { FloatArray, Limits, WireDType } from '../kernels/types.js'
import { buffers } from './buffers.js'
import type { ReplyOutput } from './encode.js'
import { FILE_VALUES, type FileTensor, isFileTensor } from './decode.js'
import { bitsToFloat32, toBits16Array } from './half.js'

/** The longest header the format allows (the library refuses longer ones). */
export const MAX_HEADER_BYTES = 100_000_000

const PARSE_OPTIONS = { protoAction: 'error', constructorAction: 'error' } as const

/** The format's dtype names, and the bool a mask may be. */
const FILE_DTYPES: Record<string, WireDType | 'bool'> = { F64: 'float64', F32: 'float32', F16: 'float16', BF16: 'bfloat16', BOOL: 'bool' }
const FILE_NAMES: Record<WireDType, string> = { float64: 'F64', float32: 'F32', float16: 'F16', bfloat16: 'BF16' }
const ITEMSIZE: Record<WireDType | 'bool', number> = { float64: 8, float32: 4, float16: 2, bfloat16: 2, bool: 1 }

/** Marks a body read from a file: its tensor fields must be tensors of the file (src/operations/spec.ts). */
export const FROM_FILE = Symbol('body read from a safetensors file')

export function isFileBody (body: unknown): boolean {
  return typeof body === 'object' && body !== null && FROM_FILE in body
}

interface Entry { name: string, dtype: WireDType | 'bool', shape: number[], begin: number, end: number }

const utf8 = new TextDecoder('utf-8', { fatal: true })

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isIndex (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

const show = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v)
  return s.length > 40 ? s.slice(0, 40) + '…' : s
}

/** The header's entries and metadata, every rule of the format checked; throws INVALID_TENSOR or TOO_LARGE. */
export function readHeader (bytes: Uint8Array, limits: Limits): { entries: Entry[], metadata: Record<string, string>, dataStart: number } {
  if (bytes.length < 8) {
    throw invalidTensor(`the body is ${bytes.length} bytes; a safetensors file starts with an 8-byte little-endian header length`)
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const length = view.getBigUint64(0, true)
  // (a body that plainly is not a file, JSON or gzip, is told so rather than by its odd header length)
  if (length > BigInt(MAX_HEADER_BYTES) || 8 + Number(length) > bytes.length) {
    const looks = bodyLooksLike(bytes, 'safetensors')
    if (looks !== null) throw invalidTensor(looks)
  }
  if (length > BigInt(MAX_HEADER_BYTES)) throw invalidTensor(`the safetensors header length ${length} is over the format's limit of ${MAX_HEADER_BYTES} bytes`)
  const n = Number(length)
  if (8 + n > bytes.length) {
    throw invalidTensor(`the safetensors header length ${n} runs past the end of the body (${bytes.length} bytes: at most ${bytes.length - 8})`)
  }
  let header: unknown
  try {
    const text = utf8.decode(bytes.subarray(8, 8 + n))
    if (!text.startsWith('{')) throw new Error('not an object')
    header = sjson.parse(text, PARSE_OPTIONS)
  } catch {
    throw invalidTensor('the safetensors header is not a JSON object (UTF-8, starting with "{")')
  }
  if (!isObject(header)) throw invalidTensor('the safetensors header is not a JSON object (UTF-8, starting with "{")')
  const dataStart = 8 + n
  const dataBytes = bytes.length - dataStart
  let metadata: Record<string, string> = {}
  const entries: Entry[] = []
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isObject(info) || !Object.values(info).every(v => typeof v === 'string')) {
        throw invalidTensor('the safetensors __metadata__ must map strings to strings')
      }
      metadata = info as Record<string, string>
      continue
    }
    entries.push(readEntry(name, info, limits))
  }
  // the data offsets must cover the data exactly: in order, no hole, no overlap, nothing after
  const sorted = entries.slice().sort((x, y) => x.begin - y.begin || x.end - y.end)
  let at = 0
  for (const e of sorted) {
    if (e.begin !== at) {
      throw invalidTensor(e.begin < at
        ? `the data of tensor ${show(e.name)} [${e.begin},${e.end}] overlaps the tensor before it (which ends at ${at})`
        : `the data offsets leave a hole: no tensor covers bytes [${at},${e.begin}) (before tensor ${show(e.name)})`)
    }
    at = e.end
  }
  if (at !== dataBytes) {
    throw invalidTensor(at > dataBytes
      ? `the data offsets reach byte ${at}, past the end of the data (${dataBytes} bytes after the header)`
      : `the body has ${dataBytes - at} bytes after the last tensor's data (the offsets must cover the data exactly)`)
  }
  return { entries, metadata, dataStart }
}

function readEntry (name: string, info: unknown, limits: Limits): Entry {
  const what = `tensor ${show(name)}`
  if (!isObject(info)) throw invalidTensor(`${what} in the safetensors header is not an object {dtype, shape, data_offsets}`)
  for (const key of Object.keys(info)) {
    if (key !== 'dtype' && key !== 'shape' && key !== 'data_offsets') {
      throw invalidTensor(`${what} has an unknown key ${show(key)}; an entry has dtype, shape and data_offsets`)
    }
  }
  const { dtype: fileDtype, shape, data_offsets: offsets } = info
  if (fileDtype === undefined || shape === undefined || offsets === undefined) {
    throw invalidTensor(`${what} lacks ${fileDtype === undefined ? 'dtype' : shape === undefined ? 'shape' : 'data_offsets'}; an entry has dtype, shape and data_offsets`)
  }
  if (typeof fileDtype !== 'string' || !Object.hasOwn(FILE_DTYPES, fileDtype)) {
    throw invalidTensor(`${what} has dtype ${show(fileDtype)}; accepted: F64, F32, F16, BF16 (and BOOL for a mask)`)
  }
  if (!Array.isArray(shape) || !shape.every(isIndex)) throw invalidTensor(`${what} has shape ${show(shape)}; a shape is an array of integers >= 0`)
  if (shape.length > MAX_RANK) throw invalidTensor(`${what} has shape ${formatShape(shape)} of rank ${shape.length}, over the maximum rank ${MAX_RANK}`)
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex) || offsets[0] > offsets[1]) {
    throw invalidTensor(`${what} has data_offsets ${show(offsets)}; expected [begin, end] with 0 <= begin <= end`)
  }
  const dtype = FILE_DTYPES[fileDtype]
  const count = elementCount(shape, what, limits)
  const [begin, end] = offsets as number[]
  if (end - begin !== count * ITEMSIZE[dtype]) {
    throw invalidTensor(`${what} holds ${end - begin} bytes, but ${count} elements of ${fileDtype} need ${count * ITEMSIZE[dtype]}`)
  }
  return { name, dtype, shape: shape as number[], begin, end }
}

/**
 * A tensor's values. float64 and float32 values aligned in a body that owns its memory are viewed
 * where they lie (the body's buffer then moves to a worker with them); others are copied into an
 * array of their own.
 */
function valuesOf (bytes: Uint8Array, e: Entry, dataStart: number, owned: boolean): FloatArray | Uint8Array {
  const src = bytes.subarray(dataStart + e.begin, dataStart + e.end)
  const count = (e.end - e.begin) / ITEMSIZE[e.dtype]
  if (owned && (e.dtype === 'float64' || e.dtype === 'float32') && src.byteOffset % ITEMSIZE[e.dtype] === 0) {
    return e.dtype === 'float64' ? new Float64Array(src.buffer, src.byteOffset, count) : new Float32Array(src.buffer, src.byteOffset, count)
  }
  switch (e.dtype) {
    case 'bool': {
      const out = new Uint8Array(count)
      for (let i = 0; i < count; i++) out[i] = src[i] === 0 ? 0 : 1
      return out
    }
    case 'float16':
    case 'bfloat16': {
      const bits = new Uint16Array(count)
      new Uint8Array(bits.buffer).set(src)
      return bitsToFloat32(bits, e.dtype)
    }
    default: {
      const out = e.dtype === 'float64' ? new Float64Array(count) : new Float32Array(count)
      new Uint8Array(out.buffer).set(src)
      return out
    }
  }
}

/** A metadata value: its JSON value when it parses as JSON, else the string itself. */
function metadataValue (s: string): unknown {
  try {
    return sjson.parse(s, PARSE_OPTIONS)
  } catch {
    return s
  }
}

const ARRAY_ITEM = /^([^.]+)\.(0|[1-9][0-9]{0,5})$/

/**
 * The request body a safetensors file stands for (to be validated by the operation's schema):
 * its tensors as FileTensors in their fields, its metadata as the other fields.
 *
 * `maps` are the fields that are objects of tensors by the user's names (the optimizer's `params`,
 * `state.expAvg`, …): a tensor `params.layer1.weight` is the entry `layer1.weight` of `params`,
 * under the longest map its name extends. A metadata key under one of those fields nests at its
 * dots (`state.step` is the field `step` of `state`).
 */
export function decodeSafetensorsBody (
  bytes: Uint8Array,
  limits: Limits,
  // whether the body's whole buffer is the caller's to hand over (a pooled body, moved to a worker);
  // by default only a buffer that the body fills exactly (a small Buffer may be a slice of Node's
  // shared pool, which must never move to a worker)
  owned = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength,
  maps: readonly string[] = []
): Record<string, unknown> {
  const { entries, metadata, dataStart } = readHeader(bytes, limits)
  const body: Record<string, unknown> = {}
  const arrays = new Map<string, unknown[]>()
  for (const e of entries) {
    const tensor: FileTensor = { shape: e.shape, data: [], [FILE_VALUES]: valuesOf(bytes, e, dataStart, owned) }
    if (e.dtype !== 'bool') tensor.dtype = e.dtype
    const entry = mapEntry(e.name, maps)
    const item = entry === null ? ARRAY_ITEM.exec(e.name) : null
    if (entry !== null) {
      setPath(body, entry, tensor, e.name)
    } else if (item !== null) {
      const index = Number(item[2])
      if (index >= entries.length) throw gap(item[1], index)
      let list = arrays.get(item[1])
      if (list === undefined) arrays.set(item[1], list = [])
      list[index] = tensor
    } else {
      setField(body, e.name, tensor)
    }
  }
  for (const [field, list] of arrays) {
    if (list.includes(undefined) || Object.keys(list).length !== list.length) throw gap(field, list.length - 1)
    if (Object.hasOwn(body, field)) throw invalidTensor(`the file has both a tensor ${show(field)} and tensors ${show(`${field}.0`)}…`)
    setField(body, field, list)
  }
  const roots = new Set(maps.map(m => m.split('.')[0]))
  for (const [key, value] of Object.entries(metadata)) {
    if (Object.hasOwn(body, key) && isFileTensor(body[key])) {
      throw invalidTensor(`__metadata__ entry ${show(key)} names a tensor of the file; tensor fields are tensors of the file, never __metadata__ entries`)
    }
    const path = roots.has(key.split('.')[0]) ? key.split('.') : [key]
    setPath(body, path, metadataValue(value), `__metadata__ entry ${key}`)
  }
  Object.defineProperty(body, FROM_FILE, { value: true })
  return body
}

/** The place of a tensor in a map of `maps` (the longest its name extends), or null. */
function mapEntry (name: string, maps: readonly string[]): string[] | null {
  let best: string | undefined
  for (const m of maps) {
    if (name.length > m.length + 1 && name.startsWith(`${m}.`) && (best === undefined || m.length > best.length)) best = m
  }
  return best === undefined ? null : [...best.split('.'), name.slice(best.length + 1)]
}

/** An object of the body that is not a tensor: what a path goes through, or merges with. */
function isBranch (v: unknown): v is Record<string, unknown> {
  return isObject(v) && !isFileTensor(v)
}

/** Sets the value at a path of the body, through objects made on the way; two values for one place are INVALID_TENSOR. */
function setPath (body: Record<string, unknown>, path: string[], value: unknown, what: string, whole = path): void {
  // (as in JSON bodies, whose parser refuses the key)
  if (path.includes('__proto__')) throw invalidTensor(`${show(what)} names a field __proto__`)
  let node = body
  for (const key of path.slice(0, -1)) {
    if (!Object.hasOwn(node, key)) setField(node, key, {})
    const next = node[key]
    if (!isBranch(next)) throw twice(whole, what)
    node = next
  }
  const leaf = path[path.length - 1]
  if (!Object.hasOwn(node, leaf)) {
    setField(node, leaf, value)
    return
  }
  // (a metadata object beside tensors of the same field: `state` with `state.expAvg.w`)
  const held = node[leaf]
  if (!isBranch(held) || !isBranch(value)) throw twice(whole, what)
  for (const [k, v] of Object.entries(value)) setPath(held, [k], v, what, [...whole, k])
}

function twice (path: string[], what: string): Error {
  return invalidTensor(`the file gives ${show(path.join('.'))} twice (the second time as ${show(what)})`)
}

function gap (field: string, index: number): Error {
  return invalidTensor(`the file has tensor ${show(`${field}.${index}`)}, but the items of ${show(field)} must be numbered ${field}.0, ${field}.1, … without gaps`)
}

function setField (body: Record<string, unknown>, key: string, value: unknown): void {
  // (the header's parser refuses __proto__ keys; a field of that name is never set, whatever the input)
  Object.defineProperty(body, key, { value, enumerable: true, writable: true, configurable: true })
}

/** Where a reply's tensors lie in its safetensors file: its header, each tensor's place in the result buffer, the file's size. */
interface SafetensorsLayout {
  header: Buffer
  placed: Array<ReplyOutput & { from: number }>
  total: number
}

/** The layout of a safetensors reply: names in order (all of one dtype), header padded with spaces to 8 bytes. */
function safetensorsLayout (dtype: WireDType, outputs: readonly ReplyOutput[]): SafetensorsLayout {
  const itemsize = ITEMSIZE[dtype]
  let offset = 0
  // (an absent output, an einsum gradient not asked for, is no tensor of the file)
  const placed = outputs.map(o => {
    const p = { ...o, from: offset }
    offset += o.length
    return p
  }).filter(o => o.absent !== true && o.value === undefined).sort((x, y) => x.field < y.field ? -1 : x.field > y.field ? 1 : 0)
  let end = 0
  const header: Record<string, unknown> = {}
  // (a number of the reply, adam's step count, is a __metadata__ entry: a tensor of the result dtype could not hold it)
  const metadata = outputs.filter(o => typeof o.value === 'number')
  if (metadata.length > 0) header.__metadata__ = Object.fromEntries(metadata.map(o => [o.field, String(o.value)]))
  for (const o of placed) {
    const begin = end
    end += o.length * itemsize
    header[o.field] = { dtype: FILE_NAMES[dtype], shape: o.shape, data_offsets: [begin, end] }
  }
  let text = JSON.stringify(header)
  text += ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8)
  const headerBytes = Buffer.from(text, 'utf8')
  return { header: headerBytes, placed, total: 8 + headerBytes.length + end }
}

/**
 * The place in `into` where a safetensors reply will hold its tensors, as one array of the result
 * buffer's length: a run step that computes its result there saves the copy into the reply. Only
 * where the file's tensors are the result buffer's, in its order and of its element type (float32
 * or float64 replies, every output a tensor, names already in sorted order); else null.
 */
export function safetensorsResultPlace (dtype: WireDType, outputs: readonly ReplyOutput[], into: ArrayBuffer): FloatArray | null {
  if (dtype !== 'float32' && dtype !== 'float64') return null
  if (outputs.some(o => o.absent === true || o.value !== undefined || o.explain !== undefined)) return null
  for (let i = 1; i < outputs.length; i++) if (!(outputs[i - 1].field < outputs[i].field)) return null
  const { header, total } = safetensorsLayout(dtype, outputs)
  if (into.byteLength < total) return null
  const length = outputs.reduce((n, o) => n + o.length, 0)
  const at = 8 + header.length
  return dtype === 'float32' ? new Float32Array(into, at, length) : new Float64Array(into, at, length)
}

/**
 * A safetensors file of the result tensors cut in order from one buffer, laid out as the
 * safetensors library writes them: names in order (all of one dtype), header padded with spaces.
 * A tensor already at its place in `into` (safetensorsResultPlace) is not copied.
 */
export function encodeSafetensors (
  buffer: FloatArray,
  dtype: WireDType,
  outputs: readonly ReplyOutput[],
  // written here when it is large enough, else into a buffer of this thread's pool
  into?: ArrayBuffer
): Uint8Array {
  const { header, placed, total } = safetensorsLayout(dtype, outputs)
  const out = new Uint8Array(into !== undefined && into.byteLength >= total ? into : buffers.take(total), 0, total)
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true)
  out.set(header, 8)
  let at = 8 + header.length
  for (const o of placed) {
    const data = buffer.subarray(o.from, o.from + o.length)
    const src = ITEMSIZE[dtype] === 2 ? toBits16Array(data, dtype as 'float16' | 'bfloat16') : data
    if (src.buffer !== out.buffer || src.byteOffset !== at) out.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength), at)
    at += src.byteLength
  }
  return out
}
