/**
 * Replays the reference fixtures of test/fixtures (made by test/fixtures/generate.py with
 * NumPy and PyTorch) through the HTTP app: every case posts its body and compares the response
 * with the expected tensor(s), element by element within tolerance.
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
  expected: { result: WireTensor, weights?: WireTensor }
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
  return JSON.parse(readFileSync(new URL(`./fixtures/${op}.json`, import.meta.url), 'utf8')) as Fixture
}

for (const op of OPS) {
  const fixture = load(op)

  describe(`reference fixtures: ${op} (${fixture.generator})`, () => {
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
    })

    for (const c of fixture.cases) {
      it(`${op}: ${c.name}`, async () => {
        const res = await app.inject({ method: 'POST', url: `/v1/${op}`, payload: c.body })
        expect(res.statusCode, res.body).toBe(200)
        expect(res.body, 'response contains null').not.toMatch(NULL_LITERAL)
        const out = res.json() as Record<string, unknown>
        const encoding = (c.body.encoding ?? 'nested') as WireEncoding
        const tol = c.rtol === undefined ? undefined : { rtol: c.rtol }
        expectTensor(out.result, c.expected.result, encoding, tol, 'result')
        if (c.expected.weights !== undefined) {
          expectTensor(out.weights, c.expected.weights, encoding, tol, 'weights')
        }
      })
    }
  })
}
