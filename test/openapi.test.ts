import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { openapiText } from '../src/openapi.js'

describe('openapi/openapi.json', () => {
  let app: FastifyInstance
  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    await app.ready()
  })
  afterAll(async () => { await app.close() })

  it('is what the app generates (run `npm run openapi` after changing a route or schema)', () => {
    const committed = readFileSync(new URL('../openapi/openapi.json', import.meta.url), 'utf8')
    expect(openapiText(app.swagger())).toBe(committed)
  })

  it('is what GET /openapi.json serves', async () => {
    const committed = JSON.parse(readFileSync(new URL('../openapi/openapi.json', import.meta.url), 'utf8'))
    const res = await app.inject({ method: 'GET', url: '/openapi.json' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual(committed)
  })
})
