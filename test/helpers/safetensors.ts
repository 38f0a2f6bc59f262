/**
 * Safetensors for the tests, written apart from src/tensor/safetensors.ts: a checker of the
 * format's rules as the safetensors library lays files out, which also reads the values (16-bit
 * values from their bits by the IEEE formulas), and a plain writer for request files.
 */
import { expect } from 'vitest'

export type FileDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'BOOL' | 'I64'
export interface FileTensorSpec { dtype: FileDtype, shape: number[], values: ArrayLike<number> }

const ITEMSIZE: Record<FileDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, BOOL: 1, I64: 8 }

/** A float16's value from its bits, by the definition of binary16. */
export function half (h: number): number {
  const s = h & 0x8000 ? -1 : 1
  const e = (h >> 10) & 0x1f
  const m = h & 0x3ff
  if (e === 31) return m === 0 ? s * Infinity : NaN
  if (e === 0) return s * m / 1024 * 2 ** -14
  return s * (1 + m / 1024) * 2 ** (e - 15)
}

/** A bfloat16's value from its bits: the top half of a float32. */
export function bfloat (h: number): number {
  return new Float32Array(new Uint32Array([h << 16]).buffer)[0]
}

/** The bytes of values in a dtype (16-bit values must be exact in their type). */
export function bytesOf (dtype: FileDtype, values: ArrayLike<number>): Uint8Array {
  const n = values.length
  switch (dtype) {
    case 'F64': return new Uint8Array(Float64Array.from(values).buffer)
    case 'F32': return new Uint8Array(Float32Array.from(values).buffer)
    case 'BOOL': return Uint8Array.from(values)
    case 'I64': return new Uint8Array(BigInt64Array.from(Array.from(values, v => BigInt(v))).buffer)
    case 'BF16': {
      const u = new Uint32Array(Float32Array.from(values).buffer)
      const out = new Uint16Array(n)
      for (let i = 0; i < n; i++) {
        expect(u[i] & 0xffff, `${values[i]} is a bfloat16`).toBe(0)
        out[i] = u[i] >>> 16
      }
      return new Uint8Array(out.buffer)
    }
    case 'F16': {
      const out = new Uint16Array(n)
      for (let i = 0; i < n; i++) {
        // search the bits (the tests' values are few): exactness is required
        let h = 0
        while (h < 65536 && !Object.is(half(h), values[i]) && !(Number.isNaN(values[i]) && Number.isNaN(half(h)))) h++
        expect(h, `${values[i]} is a float16`).toBeLessThan(65536)
        out[i] = h
      }
      return new Uint8Array(out.buffer)
    }
  }
}

/** A file as the library writes it: compact header, padded with spaces, data in the order given. */
export function writeFile (tensors: Record<string, FileTensorSpec>, metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {}
  if (metadata !== undefined) header.__metadata__ = metadata
  const parts: Uint8Array[] = []
  let at = 0
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = bytesOf(t.dtype, t.values)
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + bytes.length] }
    parts.push(bytes)
    at += bytes.length
  }
  let text = JSON.stringify(header)
  text += ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8)
  const head = Buffer.alloc(8)
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(text)))
  return Buffer.concat([head, Buffer.from(text), ...parts])
}

export interface ReadTensor { dtype: FileDtype, shape: number[], values: number[] }

/**
 * Checks a file against the format's rules as the library writes files (8-byte little-endian
 * length; a UTF-8 JSON object padded with spaces to a multiple of 8; entries with exactly dtype,
 * shape, data_offsets, in the order of their offsets, covering the data exactly, sorted by name
 * within a dtype) and reads its tensors.
 */
export function checkFile (file: Uint8Array): { metadata?: Record<string, string>, tensors: Record<string, ReadTensor> } {
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength)
  expect(buf.length).toBeGreaterThanOrEqual(8)
  const n = Number(buf.readBigUInt64LE(0))
  expect(n % 8, 'header length is a multiple of 8').toBe(0)
  expect(8 + n).toBeLessThanOrEqual(buf.length)
  const text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + n))
  expect(text.startsWith('{')).toBe(true)
  const trimmed = text.replace(/ +$/, '')
  expect(text.length - trimmed.length).toBeLessThan(8)
  expect(JSON.stringify(JSON.parse(trimmed)), 'compact JSON').toBe(trimmed)
  const header = JSON.parse(trimmed) as Record<string, unknown>
  const data = buf.subarray(8 + n)
  const tensors: Record<string, ReadTensor> = {}
  let at = 0
  let previous = ''
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue
    const { dtype, shape, data_offsets: offsets, ...rest } = info as { dtype: FileDtype, shape: number[], data_offsets: [number, number] }
    expect(rest).toEqual({})
    expect(Object.keys(info as object)).toEqual(['dtype', 'shape', 'data_offsets'])
    expect(['F64', 'F32', 'F16', 'BF16', 'BOOL']).toContain(dtype)
    expect(name > previous, `${name} after ${previous}`).toBe(true)
    previous = name
    expect(offsets[0]).toBe(at)
    const count = shape.reduce((p, d) => p * d, 1)
    expect(offsets[1] - offsets[0]).toBe(count * ITEMSIZE[dtype])
    at = offsets[1]
    const bytes = data.subarray(offsets[0], offsets[1])
    const values: number[] = []
    for (let i = 0; i < count; i++) {
      values.push(dtype === 'F64'
        ? bytes.readDoubleLE(i * 8)
        : dtype === 'F32'
          ? bytes.readFloatLE(i * 4)
          : dtype === 'F16' ? half(bytes.readUInt16LE(i * 2)) : dtype === 'BF16' ? bfloat(bytes.readUInt16LE(i * 2)) : bytes[i])
    }
    tensors[name] = { dtype, shape, values }
  }
  expect(at, 'the offsets cover the data exactly').toBe(data.length)
  return { metadata: header.__metadata__ as Record<string, string> | undefined, tensors }
}
