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
        expect(Object.keys(json)).toContain(route.endsWith('/backward') ? 'grads' : 'result')
        expect(res.body).not.toContain('null')
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
})
