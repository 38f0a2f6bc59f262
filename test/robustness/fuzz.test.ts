/**
 * Fuzzing: thousands of generated malformed or hostile bodies across every route (wrong types,
 * ragged and deep arrays, huge declared shapes, bad base64, prototype keys, extreme options,
 * broken JSON). Not one may get a 5xx; every refusal matches the error schema; nothing
 * reaches Object.prototype; and the service still computes correctly afterwards.
 */
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { hostileBody as body } from '../helpers/hostile.js'

const RUNS = 5000

describe('fuzzing every route', () => {
  let app: FastifyInstance
  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 2, maxElements: 100000, maxFlops: 1e9, maxQueue: 1000 })
    await app.ready()
  })
  afterAll(async () => { await app.close() })

  it(`${RUNS} hostile bodies: no 5xx, every error matches the schema, Object.prototype untouched`, async () => {
    const protoKeys = Object.getOwnPropertyNames(Object.prototype).sort()
    const seen = new Map<number, number>()
    await fc.assert(fc.asyncProperty(body, async ({ route, text }) => {
      const res = await app.inject({ method: 'POST', url: `/v1/${route}`, payload: text, headers: { 'content-type': 'application/json' } })
      seen.set(res.statusCode, (seen.get(res.statusCode) ?? 0) + 1)
      expect(res.statusCode, `${route} ${text.slice(0, 300)} → ${res.body.slice(0, 300)}`).toBeLessThan(500)
      const json = JSON.parse(res.body)
      if (res.statusCode === 200) {
        expect(Object.keys(json)).toContain(route.endsWith('/backward') ? 'grads' : route === 'optimizer/step' ? 'params' : route === 'graph' ? 'outputs' : 'result')
        // null only where the contract puts it: einsum's gradients of operands not in wrt
        const operands = route === 'einsum/backward' ? json.grads.operands as unknown[] : undefined
        if (operands !== undefined) expect(operands.some(t => t !== null)).toBe(true)
        const rest = operands === undefined ? json : { ...json, grads: { operands: operands.filter(t => t !== null) } }
        expect(JSON.stringify(rest)).not.toContain('null')
      } else {
        expect(Object.keys(json).sort()).toEqual(['code', 'error', 'message', 'statusCode'])
        expect(json.statusCode).toBe(res.statusCode)
        expect(typeof json.code).toBe('string')
        expect(typeof json.message).toBe('string')
        expect(res.body).not.toMatch(/\n\s+at |\/src\//)
      }
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    }), { numRuns: RUNS })
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(protoKeys)
    // the generator reached both the validator and the decoder, and some bodies were computed
    expect(seen.get(400) ?? 0).toBeGreaterThan(RUNS / 10)
    expect(seen.get(200) ?? 0).toBeGreaterThan(0)

    const res = await app.inject({ method: 'POST', url: '/v1/matmul', payload: { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]] } })
    expect(res.json()).toEqual({ result: { shape: [2, 2], dtype: 'float64', data: [[19, 22], [43, 50]] } })
  }, 120_000)

  /** A refusal as the contract writes it: JSON with the four fields, no stack trace. */
  function expectError (res: { statusCode: number, body: string }, label: string): { code: string, message: string } {
    expect(res.statusCode, `${label} → ${res.body.slice(0, 300)}`).toBeGreaterThanOrEqual(400)
    expect(res.statusCode, `${label} → ${res.body.slice(0, 300)}`).toBeLessThan(500)
    const json = JSON.parse(res.body)
    expect(Object.keys(json).sort()).toEqual(['code', 'error', 'message', 'statusCode'])
    expect(res.body).not.toMatch(/\n\s+at |\/src\//)
    return json
  }

  it('hostile einsum equations: each a clear 4xx naming the problem, never a 5xx or a hang', async () => {
    const vec = (n: number) => ({ shape: [n], data: Array(n).fill(1) })
    const cases: Array<[string, object, number, string, RegExp]> = [
      ['very long', { equation: 'ab,bc->ac'.repeat(20000), operands: [[[1]], [[1]]] }, 400, 'FST_ERR_VALIDATION', /equation/],
      ['512 letters', { equation: 'a'.repeat(512), operands: [[1]] }, 400, 'SHAPE_MISMATCH', /name 512 dimensions/],
      ['unicode letters', { equation: 'αβ,βγ->αγ', operands: [[[1]], [[1]]] }, 400, 'INVALID_ARGUMENT', /position 0: "α" is not a subscript/],
      ['an emoji (two UTF-16 units)', { equation: 'i😀', operands: [[1]] }, 400, 'INVALID_ARGUMENT', /position 1: "😀" is not a subscript/],
      ['a lone surrogate', { equation: 'i\ud800', operands: [[1]] }, 400, 'INVALID_ARGUMENT', /position 1/],
      ['NUL, newline, tab', { equation: 'i\u0000\n\t', operands: [[1]] }, 400, 'INVALID_ARGUMENT', /position 1: "\\u0000" is not a subscript/],
      ['60 operands', { equation: Array(60).fill('i').join(','), operands: Array(60).fill([1]) }, 400, 'FST_ERR_VALIDATION', /operands/],
      ['60 terms for 2 operands', { equation: Array(60).fill('i').join(','), operands: [[1], [1]] }, 400, 'INVALID_ARGUMENT', /subscripts for 60 operands, but 2 operands were given/],
      ['-> twice', { equation: 'i->i->i', operands: [[1]] }, 400, 'INVALID_ARGUMENT', /position 4: '->' appears a second time/],
      ['-> then ->', { equation: 'i->->', operands: [[1]] }, 400, 'INVALID_ARGUMENT', /position 3: '->' appears a second time/],
      ['a lone -', { equation: 'i-', operands: [[1]] }, 400, 'INVALID_ARGUMENT', /position 1: a '-' that does not begin '->'/],
      ['a lone >', { equation: '>i', operands: [[1]] }, 400, 'INVALID_ARGUMENT', /position 0: a '>' without/],
      ['a dangling ellipsis ..', { equation: 'i..', operands: [[1]] }, 400, 'INVALID_ARGUMENT', /position 1: a '\.' that is not part of an ellipsis/],
      ['a dangling ellipsis at the end ....', { equation: '....', operands: [[1]] }, 400, 'INVALID_ARGUMENT', /position 3/],
      ['two ellipses', { equation: '......', operands: [[1]] }, 400, 'INVALID_ARGUMENT', /position 3: a second ellipsis/],
      ['an ellipsis in the output only when the operands have one', { equation: '...i->i', operands: [[[1]]] }, 400, 'INVALID_ARGUMENT', /no '\.\.\.'/],
      ['a 1e6-element implicit output (over this app\'s MAX_ELEMENTS)', { equation: 'a,b,c,d,e,f', operands: Array(6).fill(vec(10)) }, 413, 'TOO_LARGE', /the result of shape \[10,10,10,10,10,10\]/],
      ['a 1e16-element implicit output', { equation: 'a,b,c,d,e,f,g,h', operands: Array(8).fill(vec(100)) }, 413, 'TOO_LARGE', /the result/],
      ['an output subscript nowhere else', { equation: 'i->j', operands: [[1]] }, 400, 'INVALID_ARGUMENT', /position 3: subscript 'j' of the output appears in no operand/],
      ['__proto__ as an equation', { equation: '__proto__', operands: [[1]] }, 400, 'INVALID_ARGUMENT', /position 0/]
    ]
    for (const [label, payload, status, code, message] of cases) {
      const res = await app.inject({ method: 'POST', url: '/v1/einsum', payload })
      expect(res.statusCode, `${label} → ${res.body.slice(0, 300)}`).toBe(status)
      const json = expectError(res, label)
      expect(json.code, label).toBe(code)
      expect(json.message, label).toMatch(message)
    }
    // the same 1e6-element implicit output under the default limits is simply computed
    const roomy = await buildApp({ logLevel: 'silent', workers: 1 })
    try {
      const res = await roomy.inject({ method: 'POST', url: '/v1/einsum', payload: { equation: 'a,b,c,d,e,f', operands: Array(6).fill(vec(10)), encoding: 'base64' } })
      expect(res.statusCode).toBe(200)
      expect(res.json().result.shape).toEqual([10, 10, 10, 10, 10, 10])
    } finally {
      await roomy.close()
    }
  }, 60_000)

  it('1000 random einsum equations over a hostile alphabet, with random small operands: no 5xx, every error well formed', async () => {
    const alphabet = fc.constantFrom('a', 'b', 'i', 'j', 'Z', ',', ',', '-', '>', '->', '.', '...', ' ', 'é', 'α', '😀', '\u0000', '1')
    const operand = fc.oneof(
      fc.constant(1),
      fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 4 }).map(shape => ({ shape, data: Array(shape.reduce((x, y) => x * y, 1)).fill(0.5) }))
    )
    const seen = new Map<number, number>()
    await fc.assert(fc.asyncProperty(fc.array(alphabet, { maxLength: 24 }), fc.array(operand, { minLength: 1, maxLength: 4 }), fc.boolean(), async (parts, operands, backward) => {
      const equation = parts.join('')
      const payload: Record<string, unknown> = { equation, operands }
      if (backward) payload.gradOutput = 1
      const res = await app.inject({ method: 'POST', url: backward ? '/v1/einsum/backward' : '/v1/einsum', payload })
      seen.set(res.statusCode, (seen.get(res.statusCode) ?? 0) + 1)
      if (res.statusCode !== 200) expectError(res, `${JSON.stringify(payload).slice(0, 200)}`)
      else expect(res.body).not.toMatch(/"result":null/)
    }), { numRuns: 1000 })
    expect(seen.get(400) ?? 0).toBeGreaterThan(100)
    expect(seen.get(200) ?? 0).toBeGreaterThan(0)
  }, 120_000)
})
