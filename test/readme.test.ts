import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'

/** Every curl example in the README, with the output printed under it. */
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
const examples = [...readme.matchAll(/```sh\ncurl -s localhost:3000(\/\S+) -H 'content-type: application\/json' \\\n {2}-d '([^']*)'\n```\n```json\n(.*)\n```/g)]
  .map(m => ({ url: m[1], body: m[2], output: m[3] }))

describe('README examples print what the README shows', () => {
  let app: FastifyInstance
  beforeAll(async () => { app = await buildApp({ logLevel: 'silent', workers: 1 }) })
  afterAll(async () => { await app.close() })

  it('finds the examples (one per operation at least)', () => {
    expect(examples.length).toBeGreaterThanOrEqual(5)
    for (const op of ['matmul', 'dot', 'linear', 'conv2d', 'attention']) {
      expect(examples.some(e => e.url === `/v1/${op}`)).toBe(true)
    }
  })

  for (const [i, e] of examples.entries()) {
    it(`example ${i + 1}: POST ${e.url}`, async () => {
      const res = await app.inject({ method: 'POST', url: e.url, payload: e.body, headers: { 'content-type': 'application/json' } })
      expect(res.body).toBe(e.output)
    })
  }
})
