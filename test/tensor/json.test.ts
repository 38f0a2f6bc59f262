/**
 * parseJsonBytes (src/tensor/json.ts) gives exactly the value of Fastify's JSON parser (JSON.parse with
 * secure-json-parse's prototype checks), and throws where it throws:
 * for rows of numbers in every JSON number form (all converted by the WebAssembly scanner, which
 * must round as JSON.parse does), rows inside strings, after escapes, in keys' places, ragged,
 * too long for the scanner's fast path, in invalid JSON.
 */
import fc from 'fast-check'
import sjson from 'secure-json-parse'
import { describe, expect, it } from 'vitest'
import { parseJsonBytes, SCAN_MIN_BYTES } from '../../src/tensor/json.js'

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
