/**
 * Encoding of result tensors as JSON text in the contract's object form
 * `{"shape":[...],"dtype":"...","data":...}`, with data nested (default), flat or base64.
 * NaN and ±Infinity are written as the strings "NaN", "Infinity", "-Infinity", never null.
 * float64 prints in JavaScript's shortest round-trip form; float32 in the shortest decimal that
 * reads back to the same float32 (as NumPy prints float32).
 */
import { Buffer } from 'node:buffer'
import type { DType, FloatArray } from '../kernels/types.js'

export const ENCODINGS = ['nested', 'flat', 'base64'] as const
export type Encoding = typeof ENCODINGS[number]

function nonFinite (x: number): string {
  return x !== x ? '"NaN"' : x > 0 ? '"Infinity"' : '"-Infinity"' // eslint-disable-line no-self-compare
}

export function formatFloat64 (x: number): string {
  if (!Number.isFinite(x)) return nonFinite(x)
  return String(x) // -0 prints as 0; exponents as 1e+21, valid JSON
}

/** The shortest decimal that parses back (rounded to float32) to the same float32 value. */
export function formatFloat32 (x: number): string {
  if (!Number.isFinite(x)) return nonFinite(x)
  if (x === 0) return '0'
  for (let p = 1; p < 9; p++) {
    const s = x.toPrecision(p)
    const y = Number(s)
    if (Math.fround(y) === x) return String(y)
  }
  return String(Number(x.toPrecision(9)))
}

function appendNested (parts: string[], data: FloatArray, shape: readonly number[], fmt: (x: number) => string): void {
  const rank = shape.length
  if (rank === 0) {
    parts.push(fmt(data[0]))
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
  const idx = new Array<number>(outer.length).fill(0)
  parts.push('['.repeat(rank))
  const row = new Array<string>(inner)
  for (let r = 0; r < rows; r++) {
    const o = r * inner
    for (let j = 0; j < inner; j++) row[j] = fmt(data[o + j])
    parts.push(row.join(','))
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
export function encodeTensor (shape: readonly number[], dtype: DType, data: FloatArray, encoding: Encoding = 'nested'): string {
  const head = `{"shape":[${shape.join(',')}],"dtype":"${dtype}","data":`
  const fmt = dtype === 'float32' ? formatFloat32 : formatFloat64
  if (encoding === 'base64') {
    return head + '"' + Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64') + '"}'
  }
  const parts: string[] = [head]
  if (encoding === 'flat') {
    const vals = new Array<string>(data.length)
    for (let i = 0; i < data.length; i++) vals[i] = fmt(data[i])
    parts.push('[' + vals.join(',') + ']')
  } else {
    appendNested(parts, data, shape, fmt)
  }
  parts.push('}')
  return parts.join('')
}

/** Where each result tensor sits in the one buffer an operation returns, and how to write them. */
export interface ReplySpec {
  encoding: Encoding
  outputs: Array<{ field: string, shape: number[], length: number }>
}

/** The JSON text of a reply `{"result": ..., ...}`, its tensors cut in order from one buffer. */
export function encodeReply (buffer: FloatArray, dtype: DType, spec: ReplySpec): string {
  let offset = 0
  const fields = spec.outputs.map(o => {
    const data = buffer.subarray(offset, offset + o.length)
    offset += o.length
    return `"${o.field}":${encodeTensor(o.shape, dtype, data, spec.encoding)}`
  })
  return `{${fields.join(',')}}`
}
