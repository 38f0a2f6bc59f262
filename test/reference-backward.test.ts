/**
 * Replays the gradient fixtures of test/fixtures/backward (made by
 * test/fixtures/generate_backward.py with PyTorch autograd, cross-checked against closed forms and
 * finite differences) through the HTTP app: every case posts its body to /v1/<op>/backward and
 * compares the reply with the expected gradients (and result / weights when the body asks for
 * them), key for key, element by element within tolerance.
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { FORWARD } from '../src/operations/index.js'
import { expectTensor, NULL_LITERAL } from './helpers/compare.js'
import { type WireEncoding, type WireTensor } from './helpers/wire.js'

interface FixtureCase {
  name: string
  body: Record<string, unknown>
  expected: { grads: Record<string, WireTensor>, result?: WireTensor, weights?: WireTensor }
  rtol?: number
}

interface Fixture {
  op: string
  generator: string
  cases: FixtureCase[]
}

/** Every forward operation has its fixture file here, but einsum, whose own suite reads its fixtures (test/einsum.test.ts). */
const OPS = FORWARD.filter(op => op !== 'einsum')

function load (op: string): Fixture {
  return JSON.parse(readFileSync(new URL(`./fixtures/backward/${op}.json`, import.meta.url), 'utf8')) as Fixture
}

for (const op of OPS) {
  const fixture = load(op)

  describe(`gradient fixtures: ${op}/backward (${fixture.generator})`, () => {
    let app: Awaited<ReturnType<typeof buildApp>>

    beforeAll(async () => {
      app = await buildApp({ logLevel: 'silent', workers: 1 })
    })

    afterAll(async () => {
      await app?.close()
    })

    it(`${op}: fixture file is well formed`, () => {
      expect(fixture.op).toBe(op)
      expect(fixture.cases.length).toBeGreaterThan(0)
      expect(new Set(fixture.cases.map(c => c.name)).size).toBe(fixture.cases.length)
      for (const c of fixture.cases) {
        expect(c.body, c.name).toHaveProperty('gradOutput')
        expect(Object.keys(c.expected.grads).length, c.name).toBeGreaterThan(0)
        // result (and weights) exactly when the body asks for them
        expect(c.expected.result !== undefined, c.name).toBe(c.body.returnResult === true)
        expect(c.expected.weights !== undefined, c.name).toBe(c.body.returnResult === true && c.body.returnWeights === true)
      }
    })

    for (const c of fixture.cases) {
      it(`${op}: ${c.name}`, async () => {
        const res = await app.inject({ method: 'POST', url: `/v1/${op}/backward`, payload: c.body })
        expect(res.statusCode, res.body).toBe(200)
        expect(res.body, 'response contains null').not.toMatch(NULL_LITERAL)
        const out = res.json() as Record<string, unknown>
        const keys = ['grads']
        if (c.expected.result !== undefined) keys.push('result')
        if (c.expected.weights !== undefined) keys.push('weights')
        expect(Object.keys(out).sort(), 'reply keys').toEqual(keys.sort())
        const grads = out.grads as Record<string, unknown>
        expect(grads, 'grads').toBeTypeOf('object')
        expect(Object.keys(grads).sort(), 'gradient names').toEqual(Object.keys(c.expected.grads).sort())
        const encoding = (c.body.encoding ?? 'nested') as WireEncoding
        const tol = c.rtol === undefined ? undefined : { rtol: c.rtol }
        for (const [name, expected] of Object.entries(c.expected.grads)) {
          expectTensor(grads[name], expected, encoding, tol, `grads.${name}`)
        }
        if (c.expected.result !== undefined) expectTensor(out.result, c.expected.result, encoding, tol, 'result')
        if (c.expected.weights !== undefined) expectTensor(out.weights, c.expected.weights, encoding, tol, 'weights')
      })
    }
  })
}
