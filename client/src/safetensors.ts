/**
 * A minimal reader and writer of the safetensors format (https://github.com/huggingface/safetensors),
 * with no dependency and no Node.js API (DataView, TextEncoder: Node.js 20+ and browsers alike):
 * an 8-byte little-endian header length N, N bytes of a JSON header
 * `{"__metadata__": {string: string}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}}`,
 * then the tensors' little-endian bytes, which the offsets (relative to the end of the header)
 * cover exactly.
 */

export type FileDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'BOOL'

/** A tensor of a file: its dtype, shape and little-endian bytes. */
export interface FileTensor {
  dtype: FileDType
  shape: readonly number[]
  bytes: Uint8Array
}

export const ITEMSIZE: Record<FileDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, BOOL: 1 }

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * A file of the given tensors and metadata. The tensors of the larger item sizes come first and
 * the header is padded with spaces to a multiple of 8 bytes, so every tensor lies aligned to its
 * item size (the reader may then view it where it lies).
 */
export function writeSafetensors (tensors: ReadonlyArray<readonly [string, FileTensor]>, metadata: Record<string, string> = {}): Uint8Array<ArrayBuffer> {
  const ordered = [...tensors].sort((x, y) => ITEMSIZE[y[1].dtype] - ITEMSIZE[x[1].dtype])
  const entries: Array<[string, unknown]> = []
  if (Object.keys(metadata).length > 0) entries.push(['__metadata__', metadata])
  let end = 0
  for (const [name, t] of ordered) {
    entries.push([name, { dtype: t.dtype, shape: [...t.shape], data_offsets: [end, end + t.bytes.byteLength] }])
    end += t.bytes.byteLength
  }
  const header = encoder.encode(JSON.stringify(Object.fromEntries(entries)))
  const padded = Math.ceil(header.length / 8) * 8
  const out = new Uint8Array(8 + padded + end)
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true)
  out.set(header, 8)
  out.fill(0x20, 8 + header.length, 8 + padded)
  let at = 8 + padded
  for (const [, t] of ordered) {
    out.set(t.bytes, at)
    at += t.bytes.byteLength
  }
  return out
}

/** The tensors (each with bytes of its own) and metadata of a file; throws an Error when the file is malformed. */
export function readSafetensors (file: Uint8Array): { tensors: Map<string, FileTensor>, metadata: Record<string, string> } {
  const fail = (why: string): never => { throw new Error(`not a safetensors file: ${why}`) }
  if (file.byteLength < 8) fail(`${file.byteLength} bytes`)
  const n = Number(new DataView(file.buffer, file.byteOffset, file.byteLength).getBigUint64(0, true))
  if (8 + n > file.byteLength) fail(`a header of ${n} bytes in ${file.byteLength}`)
  let header: unknown
  try {
    header = JSON.parse(decoder.decode(file.subarray(8, 8 + n)))
  } catch {
    fail('the header is not JSON')
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return fail('the header is not a JSON object')
  const dataStart = 8 + n
  const tensors = new Map<string, FileTensor>()
  let metadata: Record<string, string> = {}
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = info as Record<string, string>
      continue
    }
    const { dtype, shape, data_offsets: offsets } = info as { dtype: FileDType, shape: number[], data_offsets: [number, number] }
    if (!Object.hasOwn(ITEMSIZE, dtype) || !Array.isArray(shape) || !Array.isArray(offsets)) fail(`the entry of ${name}`)
    const [begin, end] = offsets
    const count = shape.reduce((p, d) => p * d, 1)
    if (!(begin >= 0 && end - begin === count * ITEMSIZE[dtype] && dataStart + end <= file.byteLength)) fail(`the offsets of ${name}`)
    tensors.set(name, { dtype, shape, bytes: file.slice(dataStart + begin, dataStart + end) })
  }
  return { tensors, metadata }
}
