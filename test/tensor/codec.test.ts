import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ApiError } from '../../src/errors.js'
import type { DType, Limits } from '../../src/kernels/types.js'
import { castTo, computeDtype, decodeMask, decodeTensor } from '../../src/tensor/decode.js'
import { ENCODINGS, encodeReply, encodeTensor, formatFloat32, formatFloat64 } from '../../src/tensor/encode.js'

const LIMITS: Limits = { maxElements: 1000, maxFlops: 2e11 }

function errorOf (fn: () => unknown): ApiError {
  try { fn() } catch (e) { return e as ApiError }
  throw new Error('expected an error')
}

const decode = (v: unknown) => {
  const t = decodeTensor(v, 'a', LIMITS)
  return { shape: t.shape, dtype: t.dtype, data: Array.from(t.data) }
}

describe('decoding the three wire forms', () => {
  it('nested arrays, a bare number and the non-finite strings', () => {
    expect(decode([[1, 2], [3, 4]])).toEqual({ shape: [2, 2], dtype: 'float64', data: [1, 2, 3, 4] })
    expect(decode(5)).toEqual({ shape: [], dtype: 'float64', data: [5] })
    expect(decode(['NaN', 'Infinity', '-Infinity']).data).toEqual([NaN, Infinity, -Infinity])
    expect(decode([[], []])).toEqual({ shape: [2, 0], dtype: 'float64', data: [] })
  })
  it('object form with flat data, nested data, rank 0 and float32 rounding', () => {
    expect(decode({ shape: [2, 2], data: [1, 2, 3, 4] })).toEqual({ shape: [2, 2], dtype: 'float64', data: [1, 2, 3, 4] })
    expect(decode({ shape: [2, 2], data: [[1, 2], [3, 4]], dtype: 'float32' }).shape).toEqual([2, 2])
    expect(decode({ data: [[1, 2]] }).shape).toEqual([1, 2])
    expect(decode({ shape: [], data: [7] })).toEqual({ shape: [], dtype: 'float64', data: [7] })
    expect(decode({ shape: [1], data: [0.1], dtype: 'float32' }).data).toEqual([Math.fround(0.1)])
    expect(decode({ shape: [0, 3], data: [] })).toEqual({ shape: [0, 3], dtype: 'float64', data: [] })
  })
  it('base64 of little-endian float32 and float64', () => {
    // 1.0f = 00 00 80 3f, 2.0f = 00 00 00 40
    expect(decode({ shape: [2], dtype: 'float32', data: 'AACAPwAAAEA=' }).data).toEqual([1, 2])
    const f64 = Buffer.from(Float64Array.from([0.1, -3]).buffer).toString('base64')
    expect(decode({ shape: [1, 2], data: f64 }).data).toEqual([0.1, -3])
    expect(decode({ shape: [0], data: '' }).data).toEqual([])
  })
})

describe('decoding refuses what is malformed, naming the operand and the place', () => {
  const cases: Array<[string, unknown, string, string]> = [
    ['ragged rows', [[1, 2], [3]], 'INVALID_TENSOR', 'a[1]'],
    ['a row where a number belongs', [[1, 2], 3], 'INVALID_TENSOR', 'a[1]'],
    ['a nested array where a number belongs', [[1, [2]], [3, 4]], 'INVALID_TENSOR', 'a[0][1]'],
    ['a non-numeric leaf', [[1, 'x']], 'INVALID_TENSOR', 'a[0][1]'],
    ['null inside data', [1, null], 'INVALID_TENSOR', 'a[1]'],
    ['rank 9 nested', [[[[[[[[[1]]]]]]]]], 'INVALID_TENSOR', 'rank 8'],
    ['rank 9 shape', { shape: [1, 1, 1, 1, 1, 1, 1, 1, 1], data: [1] }, 'INVALID_TENSOR', 'rank'],
    ['an unknown key', { shape: [1], data: [1], order: 'F' }, 'INVALID_TENSOR', 'order'],
    ['flat data of the wrong length', { shape: [2, 2], data: [1, 2, 3] }, 'INVALID_TENSOR', 'needs 4'],
    ['nested data disagreeing with shape', { shape: [2, 2], data: [[1, 2, 3], [4, 5, 6]] }, 'INVALID_TENSOR', '[2,3]'],
    ['a negative dimension', { shape: [-1], data: [] }, 'INVALID_TENSOR', 'shape[0]'],
    ['a fractional dimension', { shape: [1.5], data: [1] }, 'INVALID_TENSOR', 'shape[0]'],
    ['base64 without a shape', { data: 'AAAA' }, 'INVALID_TENSOR', 'shape'],
    ['base64 outside the alphabet', { shape: [1], dtype: 'float32', data: 'AA-A' }, 'INVALID_TENSOR', 'base64'],
    ['base64 with whitespace', { shape: [2], dtype: 'float32', data: 'AACA PwAAAEA=' }, 'INVALID_TENSOR', 'base64'],
    ['base64 of the wrong byte length', { shape: [3], dtype: 'float32', data: 'AACAPwAAAEA=' }, 'INVALID_TENSOR', '12 bytes'],
    ['base64 without its padding', { shape: [2], dtype: 'float32', data: 'AACAPwAAAEA' }, 'INVALID_TENSOR', 'base64'],
    ['a dtype the service does not have', { shape: [1], data: [1], dtype: 'int32' }, 'INVALID_TENSOR', 'dtype'],
    ['a string that is no tensor', 'three', 'INVALID_TENSOR', 'a'],
    ['more elements than MAX_ELEMENTS (nested)', Array.from({ length: 1001 }, () => 0), 'TOO_LARGE', 'MAX_ELEMENTS'],
    ['a declared shape of 2^40 x 2^40 x 2^40', { shape: [2 ** 40, 2 ** 40, 2 ** 40], data: 'AAAA' }, 'TOO_LARGE', 'MAX_ELEMENTS'],
    ['a dimension of 1e300', { shape: [1e300], data: [] }, 'INVALID_TENSOR', 'shape[0]']
  ]
  for (const [title, value, code, fragment] of cases) {
    it(`${title}: ${code}`, () => {
      const e = errorOf(() => decodeTensor(value, 'a', LIMITS))
      expect(e.code).toBe(code)
      expect(e.message).toContain(fragment)
    })
  }
  it('nesting 100000 deep is refused at the rank cap, not by exhausting the stack', () => {
    let deep: unknown = 1
    for (let i = 0; i < 100000; i++) deep = [deep]
    expect(errorOf(() => decodeTensor(deep, 'a', LIMITS)).code).toBe('INVALID_TENSOR')
  })
})

describe('base64 is accepted exactly when it is the standard encoding of its bytes', () => {
  // the oracle: Node's lenient decoder, then the bytes encoded again must give the same text
  const standard = (s: string, bytes: number): boolean => {
    const b = Buffer.from(s, 'base64')
    return b.length === bytes && b.toString('base64') === s
  }
  const accepted = (s: string, count: number): boolean => {
    try {
      decodeTensor({ shape: [count], dtype: 'float32', data: s }, 'a', LIMITS)
      return true
    } catch (e) {
      expect((e as ApiError).code).toBe('INVALID_TENSOR')
      return false
    }
  }
  it('on valid encodings mutated at random places with the alphabet, padding, URL-safe, whitespace and non-ASCII characters', () => {
    const junk = fc.constantFrom('A', 'Q', 'z', '+', '/', '=', '-', '_', ' ', '\n', '.', 'é', '\u0000', '💥', 'AA', '==')
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 40 }), fc.array(fc.tuple(fc.nat(), junk), { maxLength: 3 }), fc.boolean(),
      (bytes, edits, tail) => {
        const count = bytes.length >> 2
        let s = Buffer.from(bytes.subarray(0, count * 4)).toString('base64')
        for (const [at, c] of edits) {
          const i = s.length === 0 ? 0 : at % s.length
          s = s.slice(0, i) + c + s.slice(i + (c.length === 1 ? 1 : 0))
        }
        if (tail && s.length > 0) s = s.slice(0, -1) + 'B' // non-zero bits after the last byte, or a lost '='
        expect(accepted(s, count), JSON.stringify(s)).toBe(standard(s, count * 4))
      }), { numRuns: 5000 })
  })
  it('valid float32 and float64 data decodes to the same bits', () => {
    fc.assert(fc.property(fc.float32Array({ maxLength: 30 }), (x) => {
      const s = Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('base64')
      const t = decodeTensor({ shape: [x.length], dtype: 'float32', data: s }, 'a', LIMITS)
      expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(x.buffer, x.byteOffset, x.byteLength))).toBe(true)
    }))
  })
})

describe('masks', () => {
  it('booleans make a bool mask, numbers an additive one', () => {
    const b = decodeMask([[true, false]], 'mask', LIMITS)
    expect(b.kind).toBe('bool')
    expect(Array.from(b.data)).toEqual([1, 0])
    const n = decodeMask([[0, '-Infinity']], 'mask', LIMITS)
    expect(n.kind).toBe('additive')
    expect(Array.from(n.data)).toEqual([0, -Infinity])
  })
  it('mixing booleans and numbers is refused', () => {
    expect(errorOf(() => decodeMask([true, 0], 'mask', LIMITS)).message).toContain('mask[1]')
    expect(errorOf(() => decodeMask([0, true], 'mask', LIMITS)).message).toContain('mask[1]')
  })
})

describe('dtype promotion', () => {
  it('float32 only when every operand is float32; the request dtype overrides', () => {
    expect(computeDtype([{ dtype: 'float32' }, { dtype: 'float32' }], undefined)).toBe('float32')
    expect(computeDtype([{ dtype: 'float32' }, { dtype: 'float64' }], undefined)).toBe('float64')
    expect(computeDtype([{ dtype: 'float64' }], 'float32')).toBe('float32')
    expect(computeDtype([{ dtype: 'float32' }], 'float64')).toBe('float64')
  })
  it('castTo widens exactly and narrows by rounding', () => {
    expect(Array.from(castTo(Float32Array.from([0.1]), 'float64'))).toEqual([Math.fround(0.1)])
    expect(Array.from(castTo(Float64Array.from([0.1]), 'float32'))).toEqual([Math.fround(0.1)])
  })
})

describe('encoding', () => {
  it('nested, flat and base64, with non-finite values as strings and never null', () => {
    const data = Float64Array.from([1, NaN, Infinity, -Infinity, -0, 0.1])
    expect(encodeTensor([2, 3], 'float64', data)).toBe('{"shape":[2,3],"dtype":"float64","data":[[1,"NaN","Infinity"],["-Infinity",0,0.1]]}')
    expect(encodeTensor([2, 3], 'float64', data, 'flat')).toBe('{"shape":[2,3],"dtype":"float64","data":[1,"NaN","Infinity","-Infinity",0,0.1]}')
    expect(encodeTensor([], 'float64', Float64Array.from([2]))).toBe('{"shape":[],"dtype":"float64","data":2}')
    expect(encodeTensor([2, 0], 'float64', new Float64Array(0))).toBe('{"shape":[2,0],"dtype":"float64","data":[[],[]]}')
    expect(encodeTensor([2], 'float32', Float32Array.from([1, 2]), 'base64')).toBe('{"shape":[2],"dtype":"float32","data":"AACAPwAAAEA="}')
  })
  it('float32 prints the shortest decimal that reads back to the same float32, as NumPy does', () => {
    expect(formatFloat32(Math.fround(0.1))).toBe('0.1')
    expect(formatFloat32(Math.fround(1 / 3))).toBe('0.33333334')
    expect(formatFloat32(Math.fround(3.4028234663852886e38))).toBe('3.4028235e+38')
    expect(formatFloat32(Math.fround(16777217))).toBe('16777216')
  })
  it('float32 printing round-trips and is shortest, for any float32', () => {
    fc.assert(fc.property(fc.float({ noNaN: true, noDefaultInfinity: true }), (x) => {
      const s = formatFloat32(x)
      expect(Math.fround(Number(s))).toBe(x === 0 ? 0 : x)
      const digits = s.replace(/^-/, '').replace(/e.*$/, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '').length
      if (digits > 1 && x !== 0) {
        // no decimal with one digit fewer reads back to x
        expect(Math.fround(Number(x.toPrecision(digits - 1)))).not.toBe(x)
      }
    }), { numRuns: 2000 })
  })
  it('float32 printing equals the first of p = 1..9 digits that reads back, tried in order, for any float32 bits', () => {
    // the plain definition, as a reference for the binary search
    const byScan = (x: number): string => {
      for (let p = 1; p < 9; p++) {
        const y = Number(x.toPrecision(p))
        if (Math.fround(y) === x) return String(y)
      }
      return String(Number(x.toPrecision(9)))
    }
    const bits = new Uint32Array(1)
    const view = new Float32Array(bits.buffer)
    const special: number[] = []
    for (let e = 0; e < 255; e++) {
      for (const m of [0, 1, 2, 0x7fffff, 0x7ffffe, 0x400000]) { // powers of two, their neighbours, subnormals
        bits[0] = (e << 23) | m
        special.push(view[0], -view[0])
      }
    }
    for (const x of special) if (x !== 0) expect(formatFloat32(x), String(x)).toBe(byScan(x))
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (b) => {
      bits[0] = b
      const x = view[0]
      if (Number.isFinite(x) && x !== 0) expect(formatFloat32(x)).toBe(byScan(x))
    }), { numRuns: 20000 })
  })
  it('float64 results print exactly as String(x), for any float64 bits (the WebAssembly printer)', () => {
    const js = (x: number): string => formatFloat64(x) // String(x), non-finite values quoted
    const expectSameText = (values: Float64Array, label: string): void => {
      // (one string: on a difference, the diff shows the value)
      const got = encodeTensor([values.length], 'float64', values, 'flat')
      const want = `{"shape":[${values.length}],"dtype":"float64","data":[${Array.from(values, js).join(',')}]}`
      expect(got, label).toBe(want)
    }
    // random bit patterns (every exponent, subnormals, NaN payloads, infinities)
    const bits = new BigUint64Array(100000)
    let state = 0x9e3779b97f4a7c15n
    for (let i = 0; i < bits.length; i++) {
      state ^= state << 13n; state &= (1n << 64n) - 1n
      state ^= state >> 7n
      state ^= state << 17n; state &= (1n << 64n) - 1n
      bits[i] = state
    }
    expectSameText(new Float64Array(bits.buffer), 'random bits')
    // short decimals, integers, powers of two and of ten, float32 values, the notation boundaries
    const nice: number[] = [0, -0, 5e-324, -5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, Number.MAX_VALUE,
      1e21, 1e21 - 65536, 123456789012345680000, 1e-7, 1e-6, 1e-6 * (1 - 2 ** -52), 1.5e-7, 0.1, 0.30000000000000004,
      2 ** 53 + 2, 2 ** 53, 1e22, 1e23, 5e-7, -1e-5 / 3, 1e-5 / 7]
    for (let e = -1074; e <= 1023; e++) nice.push(2 ** e, -(2 ** e))
    for (let e = -330; e <= 310; e++) nice.push(Number(`1e${e}`), Number(`7.3e${e}`))
    for (let i = 0; i < 20000; i++) {
      nice.push(i / 100, Math.fround(i / 7), i * 1e15 + 1, (i - 10000) / 3)
    }
    expectSameText(Float64Array.from(nice), 'chosen values')
    fc.assert(fc.property(fc.array(fc.double(), { maxLength: 300 }), (xs) => {
      expectSameText(Float64Array.from(xs), 'fast-check doubles')
    }), { numRuns: 300 })
  })
  it('float64 printing is the shortest round-trip form', () => {
    fc.assert(fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (x) => {
      expect(Number(formatFloat64(x))).toBe(x === 0 ? 0 : x)
    }), { numRuns: 2000 })
  })
})

describe('reply fields', () => {
  it('dotted fields nest, numeric segments make an array with null where absent or not given, in order', () => {
    const buffer = Float64Array.of(1, 2, 3, 4)
    const text = encodeReply(buffer, 'float64', {
      format: 'json',
      encoding: 'flat',
      outputs: [
        { field: 'grads.operands.0', shape: [], length: 0, absent: true },
        { field: 'grads.operands.1', shape: [2], length: 2 },
        { field: 'grads.operands.3', shape: [1], length: 1 },
        { field: 'result', shape: [], length: 1 }
      ]
    })
    expect(text).toBe('{"grads":{"operands":[null,{"shape":[2],"dtype":"float64","data":[1,2]},null,{"shape":[1],"dtype":"float64","data":[3]}]},' +
      '"result":{"shape":[],"dtype":"float64","data":[4]}}')
    expect(JSON.parse(text).grads.operands).toHaveLength(4)
  })

  it('a path keeps its keys whole (dots, digits, quotes), and a value is written as JSON', () => {
    const buffer = Float64Array.of(1, 2, 3)
    const text = encodeReply(buffer, 'float64', {
      format: 'json',
      encoding: 'flat',
      outputs: [
        { field: 'params.layer.0.w', path: ['params', 'layer.0.w'], shape: [1], length: 1 },
        { field: 'params.0', path: ['params', '0'], shape: [1], length: 1 },
        { field: 'params."q"', path: ['params', '"q"\\'], shape: [], length: 1 },
        { field: 'state.step', path: ['state', 'step'], shape: [], length: 0, value: 7 },
        { field: 'empty', path: ['empty'], shape: [], length: 0, value: {} }
      ]
    })
    expect(JSON.parse(text)).toEqual({
      params: {
        'layer.0.w': { shape: [1], dtype: 'float64', data: [1] },
        0: { shape: [1], dtype: 'float64', data: [2] },
        '"q"\\': { shape: [], dtype: 'float64', data: [3] }
      },
      state: { step: 7 },
      empty: {}
    })
    expect(Array.isArray(JSON.parse(text).params)).toBe(false)
  })
})

describe('round trip: a response tensor posted back decodes to the same values', () => {
  const value = fc.oneof(
    { weight: 8, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e300, max: 1e300 }) },
    { weight: 1, arbitrary: fc.constantFrom(NaN, Infinity, -Infinity) }
  )
  it('for every shape, dtype and encoding', () => {
    fc.assert(fc.property(
      fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 4 }), fc.constantFrom<DType>('float32', 'float64'),
      fc.constantFrom(...ENCODINGS), fc.array(value, { minLength: 81, maxLength: 81 }),
      (shape, dtype, encoding, pool) => {
        const n = shape.reduce((p, d) => p * d, 1)
        const data = castTo(Float64Array.from({ length: n }, (_, i) => pool[i]), dtype)
        const wire = JSON.parse(encodeTensor(shape, dtype, data, encoding))
        const back = decodeTensor(wire, 'result', LIMITS)
        expect(back.shape).toEqual(shape)
        expect(back.dtype).toBe(dtype)
        // JSON may print -0 as 0 (the contract allows it); base64 and every other value come back bit for bit
        const want = encoding === 'base64' ? Array.from(data) : Array.from(data, v => (v === 0 ? 0 : v))
        expect(Array.from(back.data)).toEqual(want)
      }
    ), { numRuns: 500 })
  })
})
