/**
 * parseJsonBytes (src/tensor/json.ts) gives exactly the value of Fastify's JSON parser (JSON.parse with
 * secure-json-parse's prototype checks), and throws where it throws:
 * for rows of numbers in every JSON number form (all converted by the WebAssembly scanner, which
 * must round as JSON.parse does), rows inside strings, after escapes, in keys' places, ragged,
 * too long for the scanner's fast path, in invalid JSON. With `spans`, the base64 strings the scan
 * decodes from the bytes (the values of "data" keys that are strict base64) come back as exactly the
 * bytes the string encodes, and every other string is left as JSON.parse reads it.
 */
import fc from 'fast-check'
import sjson from 'secure-json-parse'
import { describe, expect, it } from 'vitest'
import { parseJsonBytes, SCAN_MIN_BYTES, SPAN_MIN_CHARS, takeSpan } from '../../src/tensor/json.js'

/** JSON.parse's value or the fact that it threw. */
function outcome (parse: () => unknown): { value?: unknown, threw?: true } {
  try {
    return { value: parse() }
  } catch {
    return { threw: true }
  }
}

/** Both parse alike: the same value (-0 distinguished) or both throw. The reference is Fastify's own parser. */
function expectSame (text: string): void {
  const want = outcome(() => sjson.parse(text, { protoAction: 'error', constructorAction: 'error' }))
  const got = outcome(() => parseJsonBytes(Buffer.from(text)))
  expect(got.threw, text.slice(0, 200)).toBe(want.threw)
  if (want.threw === undefined) expect(Object.is(got.value, want.value) || deepSame(got.value, want.value), text.slice(0, 200)).toBe(true)
}

/** Deep equality with -0 distinguished; iterative, for deep nesting. */
function deepSame (a: unknown, b: unknown): boolean {
  const stack: Array<[unknown, unknown]> = [[a, b]]
  while (stack.length > 0) {
    const [x, y] = stack.pop() as [unknown, unknown]
    if (Object.is(x, y)) continue
    if (Array.isArray(x) && Array.isArray(y)) {
      if (x.length !== y.length) return false
      x.forEach((e, i) => stack.push([e, y[i]]))
      continue
    }
    if (typeof x !== 'object' || typeof y !== 'object' || x === null || y === null || Array.isArray(x) || Array.isArray(y)) return false
    const kx = Object.keys(x)
    const ky = Object.keys(y)
    if (kx.length !== ky.length || kx.some((k, i) => k !== ky[i])) return false
    for (const k of kx) stack.push([(x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k]])
  }
  return true
}

/** A JSON number in one of many textual forms. */
const numberText = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).map(x => String(x)),
  fc.double({ noNaN: true, noDefaultInfinity: true }).chain(x => fc.integer({ min: 0, max: 20 }).map(d => x.toExponential(d))),
  fc.double({ min: -1e6, max: 1e6, noNaN: true }).chain(x => fc.integer({ min: 0, max: 20 }).map(d => x.toFixed(d))),
  fc.bigInt({ min: -(10n ** 25n), max: 10n ** 25n }).map(x => x.toString()),
  fc.tuple(fc.integer({ min: 0, max: 10 ** 9 }), fc.integer({ min: -400, max: 400 })).map(([m, e]) => `${m}e${e}`),
  fc.tuple(fc.stringMatching(/^[0-9]{1,25}$/), fc.stringMatching(/^[0-9]{1,25}$/), fc.integer({ min: -330, max: 330 }))
    .map(([a, b, e]) => `${a.replace(/^0+(?=\d)/, '')}.${b}E${e >= 0 ? '+' : ''}${e}`),
  fc.constantFrom('0', '-0', '0.0', '-0.0e-0', '1e400', '-1e400', '1e-400', '5e-324', '2.4703282292062328e-324',
    '2.2250738585072011e-308', '2.2250738585072012e-308', '1.7976931348623157e308', '1.7976931348623158e308',
    '9007199254740993', '9007199254740992.5', '0.1', '123456789012345678', '1234567890123456789', '12345678901234567890',
    '0.30000000000000004', '4.9406564584124654e-324', '1e23', '8.589973e9', '1.00000000000000011102230246251565404236316680908203125',
    `0.${'0'.repeat(2000)}5e2000`, `-0.${'0'.repeat(330)}17e+0000331`)
)
/** Malformed number texts: JSON.parse throws on them, inside or outside a row. */
const badNumber = fc.constantFrom('01', '1.', '.5', '+1', '1e', '1e+', '-', '--1', '0x10', 'NaN', 'Infinity', '1.5.2', '1ee5', '00', '-01')
const space = fc.constantFrom('', ' ', '\n', '\t', '\r\n  ')

const row = fc.tuple(fc.array(numberText, { minLength: 14, maxLength: 40 }), space).map(([xs, ws]) => `[${ws}${xs.join(`${ws},${ws}`)}${ws}]`)

describe('parseJsonBytes parses as JSON.parse does', () => {
  it('rows of numbers in every JSON form, in tensors of every depth and in objects', () => {
    fc.assert(fc.property(fc.array(row, { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 3 }), (rows, depth) => {
      let value = `[${rows.join(',')}]`
      for (let d = 0; d < depth; d++) value = `[${value}]`
      // padded past the size below which the scanner is not used
      expectSame(`{"a": ${value}, "pad": "${'x'.repeat(SCAN_MIN_BYTES)}", "b": ${rows[0]}}`)
    }), { numRuns: 300 })
  })

  it('malformed numbers, rows in strings and in keys, escapes, trailing commas, broken text', () => {
    const long = Array.from({ length: 20 }, (_, i) => String(i / 7)).join(',')
    const pad = `"pad": "${'y'.repeat(SCAN_MIN_BYTES)}"`
    const cases = [
      `{"a": [${long}], ${pad}}`,
      `{"a": "[${long}]", ${pad}}`,
      `{"a": "\\"[${long}]", ${pad}}`,
      `{"a\\\\": [${long}], ${pad}}`,
      `{[${long}]: 1, ${pad}}`,
      `{"a": [${long},], ${pad}}`,
      `{"a": [${long}] [${long}], ${pad}}`,
      `{"a": [${long}, "NaN"], ${pad}}`,
      `{"a": [${long}, true], ${pad}}`,
      `{"a": [${long}, [1]], ${pad}}`,
      `{"a": [${long}]]], ${pad}}`,
      `{"a": [[${long}], [${long}]], ${pad}`,
      `[${long}]`.repeat(2) + ` ${pad}`,
      `{"a": [${long}], ${pad}, "__proto__": {"x": [${long}]}}`,
      `{"a": [${long}], ${pad}, "constructor": {"prototype": [${long}]}}`,
      `\uFEFF{"a": [${long}], ${pad}}`,
      `{"é": [${long}], ${pad}, "ü": "\u00ff"}`,
      `${'['.repeat(5000)}${long}${']'.repeat(5000)}`,
      `{"a": [${long}], ${pad}, "s": "\\u005b${long}]"}`
    ]
    for (const text of cases) expectSame(text)
    fc.assert(fc.property(fc.array(numberText, { minLength: 15, maxLength: 30 }), badNumber, fc.nat(30), (xs, bad, at) => {
      xs.splice(at % (xs.length + 1), 0, bad)
      expectSame(`{"a": [${xs.join(',')}], ${pad}}`)
    }), { numRuns: 200 })
  })

  it('any JSON value of fast-check, and any text cut from a valid body', () => {
    const body = `{"a": [[${Array.from({ length: 40 }, (_, i) => String(Math.sin(i))).join(',')}]], "pad": "${'z'.repeat(SCAN_MIN_BYTES)}"}`
    fc.assert(fc.property(fc.nat(body.length), (cut) => { expectSame(body.slice(0, cut)) }), { numRuns: 300 })
    fc.assert(fc.property(fc.jsonValue(), (v) => { expectSame(JSON.stringify({ v, pad: 'w'.repeat(SCAN_MIN_BYTES) })) }), { numRuns: 300 })
  })
})

/** The value with every span placeholder swapped for the base64 of its bytes; the spans taken. */
function withSpansRestored (value: unknown): { value: unknown, spans: number } {
  let spans = 0
  const swap = (x: unknown): unknown => {
    if (typeof x === 'string') {
      const bytes = takeSpan(x)
      if (bytes === undefined) return x
      spans++
      return Buffer.from(bytes).toString('base64')
    }
    if (Array.isArray(x)) return x.map(swap)
    if (typeof x === 'object' && x !== null) return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, swap(v)]))
    return x
  }
  return { value: swap(value), spans }
}

/** With spans, the same value (or throw) as Fastify's parser, once the spans are encoded again; returns the spans. */
function expectSameWithSpans (text: string): number {
  const want = outcome(() => sjson.parse(text, { protoAction: 'error', constructorAction: 'error' }))
  let spans = 0
  const got = outcome(() => {
    const restored = withSpansRestored(parseJsonBytes(Buffer.from(text), { spans: true }))
    spans = restored.spans
    return restored.value
  })
  expect(got.threw, text.slice(0, 200)).toBe(want.threw)
  if (want.threw === undefined) expect(deepSame(got.value, want.value), text.slice(0, 200)).toBe(true)
  return spans
}

/** Strict base64 of n random bytes. */
const base64Of = (n: number): fc.Arbitrary<string> => fc.uint8Array({ minLength: n, maxLength: n }).map(b => Buffer.from(b).toString('base64'))

describe('parseJsonBytes with spans: base64 decoded from the bytes', () => {
  const pad = `"pad": "${'p'.repeat(SCAN_MIN_BYTES)}"`
  const long = (SPAN_MIN_CHARS / 4) * 3

  it('strict base64 "data" values of every length from the threshold up become their bytes', () => {
    fc.assert(fc.property(fc.integer({ min: long - 3, max: long + 40 }), fc.integer({ min: 0, max: 3 }), (n, copies) => {
      const b = fc.sample(base64Of(n), 1)[0]
      const tensors = Array.from({ length: copies }, (_, i) => `"t${i}": {"shape": [${n}], "data": ${JSON.stringify(b)}, "dtype": "float32"}`)
      const spans = expectSameWithSpans(`{${[...tensors, pad].join(', ')}}`)
      expect(spans).toBe(b.length >= SPAN_MIN_CHARS ? copies : 0)
    }), { numRuns: 60 })
  })

  it('strings that are not strict base64, or not the value of "data", are left to JSON.parse', () => {
    const b = Buffer.alloc(long + 2, 7).toString('base64') // ends in '='
    expect(b.endsWith('=')).toBe(true)
    const cases: Array<[string, number]> = [
      [b, 1],
      [b.slice(0, -2) + 'B=', 0], // bits past the last byte not zero
      [b.slice(0, -4) + 'AAB=', 0],
      [b.slice(0, -3) + 'B==', 0],
      [b.replace('B', '-'), 0], // URL-safe alphabet
      [b.replace('B', '_'), 0],
      [b.slice(0, 100) + ' ' + b.slice(101), 0], // whitespace
      [b.slice(0, 100) + '\\/' + b.slice(101), 0], // an escape
      [b.slice(0, -1), 0], // length not a multiple of 4
      [b.slice(0, 100) + '=' + b.slice(101), 0], // padding inside
      [b.slice(0, 100) + '\\u0041' + b.slice(101), 0],
      [b + '=', 0]
    ]
    for (const [data, spans] of cases) {
      expect(expectSameWithSpans(`{"a": {"shape": [1], "data": "${data}"}, ${pad}}`), `${cases.findIndex(c => c[0] === data)}`).toBe(spans)
    }
    for (const key of ['xdata', 'Data', 'data ', '\\"data', 'da\\u0074a', 'dat']) {
      expect(expectSameWithSpans(`{"a": {"shape": [1], "${key}": "${b}"}, ${pad}}`), key).toBe(0)
    }
    expect(expectSameWithSpans(`{"a": {"data" : \n\t "${b}"}, ${pad}}`.replace('\\n\\t', '\n\t'))).toBe(1)
    // a "data" value inside a string, and one that is a key
    expect(expectSameWithSpans(`{"s": "{\\"data\\": \\"${b}\\"}", ${pad}}`)).toBe(0)
    expect(expectSameWithSpans(`{"data": {"${b}": 1}, ${pad}}`)).toBe(0)
  })

  it('a placeholder that is not of this parse is not a span', () => {
    const b = Buffer.alloc(long, 1).toString('base64')
    const value = parseJsonBytes(Buffer.from(`{"data": "${b}", ${pad}}`), { spans: true }) as { data: string }
    const placeholder = value.data
    expect(placeholder).not.toBe(b)
    // the next parse drops the spans of this one
    parseJsonBytes(Buffer.from(`{${pad}}`), { spans: true })
    expect(takeSpan(placeholder)).toBeUndefined()
    // a span is taken once
    const again = parseJsonBytes(Buffer.from(`{"data": "${b}", ${pad}}`), { spans: true }) as { data: string }
    expect(takeSpan(again.data)).toEqual(new Uint8Array(Buffer.from(b, 'base64')))
    expect(takeSpan(again.data)).toBeUndefined()
    // without spans, the string itself
    expect(parseJsonBytes(Buffer.from(`{"data": "${b}", ${pad}}`))).toEqual({ data: b, pad: 'p'.repeat(SCAN_MIN_BYTES) })
  })

  it('any text cut from a body with spans', () => {
    const b = Buffer.alloc(long + 1, 3).toString('base64')
    const body = `{"a": {"shape": [2], "data": "${b}", "dtype": "float64"}, "rows": [${Array.from({ length: 20 }, (_, i) => i).join(',')}], "b": {"data": "${b}"}, ${pad}}`
    expect(expectSameWithSpans(body)).toBe(2)
    fc.assert(fc.property(fc.nat(body.length), (cut) => { expectSameWithSpans(body.slice(0, cut)) }), { numRuns: 300 })
  })
})
