/**
 * The safetensors reader's rules, one case each with the message that names what is wrong; the
 * body a file stands for (tensors in their fields, `operands.0`, `operands.1` … as an array,
 * metadata as JSON or strings); and the writer checked against the format's rules.
 */
import { describe, expect, it } from 'vitest'
import { FILE_VALUES, type FileTensor } from '../../src/tensor/decode.js'
import { decodeSafetensorsBody, encodeSafetensors, isFileBody } from '../../src/tensor/safetensors.js'
import { checkFile, writeFile } from '../helpers/safetensors.js'

const LIMITS = { maxElements: 1000, maxFlops: 1e9 }

function file (header: unknown, data: Uint8Array = new Uint8Array(0), length?: bigint): Buffer {
  const text = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header))
  const head = Buffer.alloc(8)
  head.writeBigUInt64LE(length ?? BigInt(text.length))
  return Buffer.concat([head, text, data])
}

function refused (bytes: Uint8Array, code: string, message: string | RegExp): void {
  try {
    decodeSafetensorsBody(bytes, LIMITS)
  } catch (err) {
    expect((err as { code: string }).code).toBe(code)
    if (typeof message === 'string') expect((err as Error).message).toBe(message)
    else expect((err as Error).message).toMatch(message)
    return
  }
  expect.fail('accepted')
}

const entry = (dtype: string, shape: number[], begin: number, end: number): object => ({ dtype, shape, data_offsets: [begin, end] })

describe('the reader refuses malformed files, naming what is wrong', () => {
  it.each([
    ['fewer than 8 bytes', Buffer.from([1, 2, 3]), 'INVALID_TENSOR', 'the body is 3 bytes; a safetensors file starts with an 8-byte little-endian header length'],
    ['a header length past the end', file('{}', undefined, 100n), 'INVALID_TENSOR', 'the safetensors header length 100 runs past the end of the body (10 bytes: at most 2)'],
    ['a header length over 100 MB', file('{}', undefined, 2n ** 64n - 1n), 'INVALID_TENSOR', "the safetensors header length 18446744073709551615 is over the format's limit of 100000000 bytes"],
    ['a header that is not JSON', file('{"a":'), 'INVALID_TENSOR', 'the safetensors header is not a JSON object (UTF-8, starting with "{")'],
    ['a header that is an array', file('[]'), 'INVALID_TENSOR', 'the safetensors header is not a JSON object (UTF-8, starting with "{")'],
    ['a header that is not UTF-8', file(Buffer.from([0x7b, 0xff, 0x7d]).toString('latin1')), 'INVALID_TENSOR', /not a JSON object/],
    ['a __proto__ key', file('{"__proto__":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}', new Uint8Array(4)), 'INVALID_TENSOR', /not a JSON object/],
    ['metadata that is not strings', file({ __metadata__: { a: 1 } }), 'INVALID_TENSOR', 'the safetensors __metadata__ must map strings to strings'],
    ['an entry without dtype', file({ a: { shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)), 'INVALID_TENSOR', 'tensor "a" lacks dtype; an entry has dtype, shape and data_offsets'],
    ['an entry without data_offsets', file({ a: { dtype: 'F32', shape: [1] } }, new Uint8Array(4)), 'INVALID_TENSOR', 'tensor "a" lacks data_offsets; an entry has dtype, shape and data_offsets'],
    ['an unknown key in an entry', file({ a: { ...entry('F32', [1], 0, 4), foo: 1 } }, new Uint8Array(4)), 'INVALID_TENSOR', 'tensor "a" has an unknown key "foo"; an entry has dtype, shape and data_offsets'],
    ['dtype I64', file({ a: entry('I64', [1], 0, 8) }, new Uint8Array(8)), 'INVALID_TENSOR', 'tensor "a" has dtype "I64"; accepted: F64, F32, F16, BF16 (and BOOL for a mask)'],
    ['a negative dimension', file({ a: entry('F32', [-1], 0, 4) }, new Uint8Array(4)), 'INVALID_TENSOR', 'tensor "a" has shape [-1]; a shape is an array of integers >= 0'],
    ['rank 9', file({ a: entry('F32', [1, 1, 1, 1, 1, 1, 1, 1, 1], 0, 4) }, new Uint8Array(4)), 'INVALID_TENSOR', 'tensor "a" has shape [1,1,1,1,1,1,1,1,1] of rank 9, over the maximum rank 8'],
    ['a shape whose product overflows', file({ a: entry('F32', [2 ** 40, 2 ** 40, 2 ** 40], 0, 4) }, new Uint8Array(4)), 'TOO_LARGE', 'tensor "a" of shape [1099511627776,1099511627776,1099511627776] has more than 1000 elements (MAX_ELEMENTS)'],
    ['offsets reversed', file({ a: entry('F32', [1], 4, 0) }, new Uint8Array(4)), 'INVALID_TENSOR', 'tensor "a" has data_offsets [4,0]; expected [begin, end] with 0 <= begin <= end'],
    ['a byte length that is not elements × itemsize', file({ a: entry('F32', [2], 0, 4) }, new Uint8Array(4)), 'INVALID_TENSOR', 'tensor "a" holds 4 bytes, but 2 elements of F32 need 8'],
    ['overlapping tensors', file({ a: entry('F32', [2], 0, 8), b: entry('F32', [1], 4, 8) }, new Uint8Array(8)), 'INVALID_TENSOR', 'the data of tensor "b" [4,8] overlaps the tensor before it (which ends at 8)'],
    ['a hole', file({ a: entry('F32', [1], 4, 8) }, new Uint8Array(8)), 'INVALID_TENSOR', 'the data offsets leave a hole: no tensor covers bytes [0,4) (before tensor "a")'],
    ['offsets past the data', file({ a: entry('F32', [1], 0, 4) }, new Uint8Array(2)), 'INVALID_TENSOR', 'the data offsets reach byte 4, past the end of the data (2 bytes after the header)'],
    ['trailing bytes', file({ a: entry('F32', [1], 0, 4) }, new Uint8Array(6)), 'INVALID_TENSOR', "the body has 2 bytes after the last tensor's data (the offsets must cover the data exactly)"],
    ['operands with a gap', file({ 'operands.0': entry('F32', [1], 0, 4), 'operands.2': entry('F32', [1], 4, 8) }, new Uint8Array(8)), 'INVALID_TENSOR', /"operands.2", but the items of "operands" must be numbered operands.0, operands.1, … without gaps/],
    ['a metadata entry naming a tensor', file({ __metadata__: { a: '1' }, a: entry('F32', [1], 0, 4) }, new Uint8Array(4)), 'INVALID_TENSOR', /names a tensor of the file/]
  ] as Array<[string, Buffer, string, string | RegExp]>)('%s', (_, bytes, code, message) => {
    refused(bytes, code, message)
  })
})

describe('the body a file stands for', () => {
  it('tensors in their fields as FileTensors; operands.N in an array; metadata as JSON, else strings', () => {
    const bytes = writeFile({
      'operands.1': { dtype: 'F16', shape: [2], values: [1.5, -2] },
      'operands.0': { dtype: 'F64', shape: [], values: [3] },
      gradOutput: { dtype: 'BF16', shape: [1], values: [0.5] },
      mask: { dtype: 'BOOL', shape: [2], values: [1, 0] }
    }, { equation: 'i,i->', wrt: '[0]', causal: 'true', scale: '0.5', padding: 'same', text: '"x"' })
    const body = decodeSafetensorsBody(bytes, LIMITS) as Record<string, any>
    expect(isFileBody(body)).toBe(true)
    expect(Object.keys(body).sort()).toEqual(['causal', 'equation', 'gradOutput', 'mask', 'operands', 'padding', 'scale', 'text', 'wrt'])
    expect(body).toMatchObject({ equation: 'i,i->', wrt: [0], causal: true, scale: 0.5, padding: 'same', text: 'x' })
    const [o0, o1] = body.operands as FileTensor[]
    expect(o0).toMatchObject({ shape: [], dtype: 'float64', data: [] })
    expect(o0[FILE_VALUES]).toEqual(new Float64Array([3]))
    expect(o1[FILE_VALUES]).toEqual(new Float32Array([1.5, -2]))
    expect((body.gradOutput as FileTensor)[FILE_VALUES]).toEqual(new Float32Array([0.5]))
    expect((body.mask as FileTensor).dtype).toBeUndefined()
    expect((body.mask as FileTensor)[FILE_VALUES]).toEqual(new Uint8Array([1, 0]))
    // JSON sees the object form with empty data, which the schemas accept
    expect(JSON.parse(JSON.stringify(body.operands))).toEqual([{ shape: [], dtype: 'float64', data: [] }, { shape: [2], dtype: 'float16', data: [] }])
  })
})

describe('objects of named tensors (the optimizer\'s maps)', () => {
  const MAPS = ['params', 'grads', 'state.expAvg', 'state.expAvgSq']
  const t = { dtype: 'F32' as const, shape: [1], values: [1] }

  it('a name under a map is its entry whole, under the longest map it extends; metadata under a map\'s field nests at dots', () => {
    const bytes = writeFile({ 'params.layer1.weight': t, 'params.0': t, 'grads.layer1.weight': t, 'state.expAvg.a.b': t, 'state.expAvgSq.a.b': t, 'operands.0': t },
      { 'state.step': '4', lr: '0.1', 'grads.x': '1' })
    const body = decodeSafetensorsBody(bytes, LIMITS, undefined, MAPS) as Record<string, any>
    expect(Object.keys(body.params).sort()).toEqual(['0', 'layer1.weight'])
    expect(Array.isArray(body.params)).toBe(false)
    expect(Object.keys(body.grads).sort()).toEqual(['layer1.weight', 'x'])
    expect(body.grads.x).toBe(1)
    expect(Object.keys(body.state).sort()).toEqual(['expAvg', 'expAvgSq', 'step'])
    expect(body.state.step).toBe(4)
    expect(Object.keys(body.state.expAvg)).toEqual(['a.b'])
    expect(body.state.expAvg['a.b'][FILE_VALUES]).toEqual(new Float32Array([1]))
    expect(body.operands).toHaveLength(1)
    expect(body.lr).toBe(0.1)
    // without the maps, the names are fields as they stand
    expect(Object.keys(decodeSafetensorsBody(bytes, LIMITS) as object).sort()).toContain('params.layer1.weight')
  })

  it('a metadata object merges with tensors of its field; two values for one place, or a __proto__ key, are refused', () => {
    const merged = decodeSafetensorsBody(writeFile({ 'state.expAvg.w': t }, { state: '{"step": 2}' }), LIMITS, undefined, MAPS) as Record<string, any>
    expect(Object.keys(merged.state).sort()).toEqual(['expAvg', 'step'])
    const cases: Array<[Buffer, RegExp]> = [
      [writeFile({ 'params.w': t }, { 'params.w': '1' }), /"params\.w" twice/],
      [writeFile({ 'state.expAvg.w': t }, { state: '{"expAvg": 1}' }), /"state\.expAvg" twice/],
      [writeFile({ 'state.expAvg.w': t }, { 'state.expAvg': '[]' }), /twice/],
      [writeFile({ 'params.__proto__': t }), /__proto__/],
      [writeFile({ t }, { 'state.__proto__': '1' }), /__proto__/]
    ]
    for (const [bytes, message] of cases) {
      expect(() => decodeSafetensorsBody(bytes, LIMITS, undefined, MAPS)).toThrow(message)
    }
    expect(({} as Record<string, unknown>).step).toBeUndefined()
  })

  it('the writer puts a number of the reply in __metadata__, and no tensor for it', () => {
    const bytes = encodeSafetensors(Float32Array.of(1, 2), 'float32', [
      { field: 'params.a.b', path: ['params', 'a.b'], shape: [2], length: 2 },
      { field: 'state.step', path: ['state', 'step'], shape: [], length: 0, value: 3 }
    ])
    const read = checkFile(bytes)
    expect(read.metadata).toEqual({ 'state.step': '3' })
    expect(Object.keys(read.tensors)).toEqual(['params.a.b'])
  })
})

describe('values viewed in place or copied', () => {
  it('aligned float32 and float64 values of a body that owns its memory are views of it; others are copies', () => {
    const file = writeFile({ a: { dtype: 'F64', shape: [2], values: [1, 2] }, b: { dtype: 'F32', shape: [3], values: [3, 4, 5] }, c: { dtype: 'F16', shape: [1], values: [6] } })
    const owned = new Uint8Array(file) // (a buffer of its own)
    const body = decodeSafetensorsBody(owned, LIMITS) as Record<string, FileTensor>
    expect(body.a[FILE_VALUES].buffer).toBe(owned.buffer)
    expect(body.b[FILE_VALUES].buffer).toBe(owned.buffer)
    expect(Array.from(body.b[FILE_VALUES])).toEqual([3, 4, 5])
    expect(body.c[FILE_VALUES].buffer).not.toBe(owned.buffer)
    // a slice of a larger buffer (as Node's pooled small Buffers are) is never viewed
    const pooled = new Uint8Array(owned.length + 16)
    pooled.set(owned, 8)
    const slice = pooled.subarray(8, 8 + owned.length)
    const copied = decodeSafetensorsBody(slice, LIMITS) as Record<string, FileTensor>
    expect(copied.a[FILE_VALUES].buffer).not.toBe(pooled.buffer)
    expect(Array.from(copied.a[FILE_VALUES])).toEqual([1, 2])
    // unaligned data (a header not padded to 8 bytes) is copied
    const header = JSON.stringify({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } })
    const odd = new Uint8Array(8 + header.length + 4)
    new DataView(odd.buffer).setUint32(0, header.length, true)
    odd.set(Buffer.from(header), 8)
    new DataView(odd.buffer).setFloat32(8 + header.length, 7.5, true)
    expect(header.length % 4).not.toBe(0)
    const unaligned = decodeSafetensorsBody(odd, LIMITS) as Record<string, FileTensor>
    expect(Array.from(unaligned.a[FILE_VALUES])).toEqual([7.5])
  })
})

describe('the writer', () => {
  it('lays files out by the format\'s rules: names in order, header padded with spaces, data covered exactly', () => {
    for (const dtype of ['float64', 'float32', 'float16', 'bfloat16'] as const) {
      const buffer = dtype === 'float64' ? new Float64Array([1, 2, 3, 4, 5, 6]) : new Float32Array([1, 2, 3, 4, 5, 6])
      const bytes = encodeSafetensors(buffer, dtype, [
        { field: 'result', shape: [2, 1], length: 2 },
        { field: 'grads.b', shape: [3], length: 3 },
        { field: 'grads.a', shape: [], length: 1 }
      ])
      const { tensors } = checkFile(bytes)
      expect(Object.keys(tensors)).toEqual(['grads.a', 'grads.b', 'result'])
      expect(tensors.result.values).toEqual([1, 2])
      expect(tensors['grads.b'].values).toEqual([3, 4, 5])
      expect(tensors['grads.a']).toMatchObject({ shape: [], values: [6] })
      // and it reads back
      const back = decodeSafetensorsBody(bytes, LIMITS) as Record<string, any>
      expect(Array.from(back.result[FILE_VALUES] as ArrayLike<number>)).toEqual([1, 2])
    }
  })
})
