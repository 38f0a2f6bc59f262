/**
 * Decoding of a tensor in the contract's response form `{"shape","dtype","data"}` into plain
 * numbers, for tests. `data` may be nested arrays (a bare value for rank 0), one flat array, or
 * base64 of the little-endian bytes (float64, float32, float16 or bfloat16); inside arrays the strings "NaN", "Infinity"
 * and "-Infinity" stand for those values. Anything else is malformed and throws.
 */
import { Buffer } from 'node:buffer'

export type WireEncoding = 'nested' | 'flat' | 'base64'

export interface WireTensor {
  shape: number[]
  dtype: string
  data: unknown
}

const SPECIAL: Record<string, number> = { NaN, Infinity, '-Infinity': -Infinity }
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

function scalar (v: unknown, where: string): number {
  if (typeof v === 'number') return v
  if (typeof v === 'string' && Object.hasOwn(SPECIAL, v)) return SPECIAL[v]
  throw new Error(`${where}: not a number: ${JSON.stringify(v)}`)
}

function readNested (v: unknown, shape: readonly number[], axis: number, out: number[], where: string): void {
  if (axis === shape.length) {
    out.push(scalar(v, where))
    return
  }
  if (!Array.isArray(v) || v.length !== shape[axis]) {
    throw new Error(`${where}: expected an array of ${shape[axis]} along axis ${axis}, got ${JSON.stringify(v)?.slice(0, 80)}`)
  }
  for (let i = 0; i < v.length; i++) readNested(v[i], shape, axis + 1, out, `${where}[${i}]`)
}

/** Bytes per element of each wire dtype. */
const SIZE: Record<string, number> = { float64: 8, float32: 4, float16: 2, bfloat16: 2 }

/** An IEEE half's value from its bits. */
function fromFloat16 (bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1
  const exp = (bits >> 10) & 0x1f
  const frac = bits & 0x3ff
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN
  return exp === 0 ? sign * frac * 2 ** -24 : sign * (1 + frac / 1024) * 2 ** (exp - 15)
}

/** A bfloat16's value from its bits (the high half of a float32). */
function fromBfloat16 (bits: number): number {
  return new Float32Array(new Uint32Array([bits << 16 >>> 0]).buffer)[0]
}

/** The form of `data`, when the caller does not say which one it expects. */
function detect (data: unknown): WireEncoding {
  if (typeof data === 'string') return 'base64'
  if (Array.isArray(data)) return data.some(Array.isArray) ? 'nested' : 'flat'
  return 'nested'
}

/**
 * The values of a wire tensor as a Float64Array in row-major order (float32 data widened
 * exactly). With `encoding`, `data` must be in exactly that form (for rank 1, nested and flat
 * coincide); without, the form is read from `data` itself.
 */
export function decodeWireTensor (t: WireTensor, encoding?: WireEncoding): Float64Array {
  if (t === null || typeof t !== 'object' || Array.isArray(t)) throw new Error(`tensor is not an object: ${JSON.stringify(t)}`)
  const { shape, dtype, data } = t
  if (!Array.isArray(shape) || !shape.every(d => Number.isInteger(d) && d >= 0)) {
    throw new Error(`bad shape: ${JSON.stringify(shape)}`)
  }
  if (!Object.hasOwn(SIZE, dtype)) throw new Error(`bad dtype: ${JSON.stringify(dtype)}`)
  const n = shape.reduce((p, d) => p * d, 1)
  const form = encoding ?? detect(data)

  if (form === 'base64') {
    if (typeof data !== 'string' || !BASE64.test(data)) throw new Error(`data is not padded standard base64: ${JSON.stringify(data)?.slice(0, 80)}`)
    const bytes = Buffer.from(data, 'base64')
    const size = SIZE[dtype]
    if (bytes.length !== n * size) throw new Error(`base64 data has ${bytes.length} bytes, expected ${n} x ${size}`)
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const out = new Float64Array(n)
    for (let i = 0; i < n; i++) {
      out[i] = dtype === 'float64'
        ? view.getFloat64(8 * i, true)
        : dtype === 'float32'
          ? view.getFloat32(4 * i, true)
          : dtype === 'float16' ? fromFloat16(view.getUint16(2 * i, true)) : fromBfloat16(view.getUint16(2 * i, true))
    }
    return out
  }

  if (form === 'flat') {
    if (!Array.isArray(data) || data.length !== n) {
      throw new Error(`flat data must be an array of ${n} values, got ${JSON.stringify(data)?.slice(0, 80)}`)
    }
    return Float64Array.from(data, (v, i) => scalar(v, `data[${i}]`))
  }

  if (form === 'nested') {
    const out: number[] = []
    readNested(data, shape, 0, out, 'data')
    return Float64Array.from(out)
  }
  throw new Error(`unknown encoding ${JSON.stringify(form)}`)
}
