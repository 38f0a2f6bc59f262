import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clientTypes } from '../scripts/client-types.js'
import { buildApp } from '../src/app.js'
import { errorExamples, errorRequests, openapiText } from '../src/openapi.js'
import { OPERATIONS } from '../src/operations/index.js'
import { componentName, type Operation } from '../src/operations/spec.js'

const committedText = readFileSync(new URL('../openapi/openapi.json', import.meta.url), 'utf8')
const doc = JSON.parse(committedText)
const specs = Object.values(OPERATIONS) as Operation[]

interface Media { schema: { $ref?: string }, example?: unknown }
interface Op { requestBody?: { content: Record<string, Media> }, responses: Record<string, { content?: Record<string, Media> }> }
const routeOf = (spec: Operation): string => `/v1/${spec.path ?? spec.name}`
const operationOf = (spec: Operation): Op => doc.paths[routeOf(spec)].post

describe('openapi/openapi.json', () => {
  let app: FastifyInstance
  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    await app.ready()
  })
  afterAll(async () => { await app.close() })

  it('is what the app generates (run `npm run openapi` after changing a route or schema)', () => {
    expect(openapiText(app.swagger())).toBe(committedText)
  })

  it('is what GET /openapi.json serves', async () => {
    const res = await app.inject({ method: 'GET', url: '/openapi.json' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual(doc)
  })

  it('client/src/openapi.ts is what openapi-typescript generates from it (run `npm run openapi`)', async () => {
    expect(await clientTypes(doc)).toBe(readFileSync(new URL('../client/src/openapi.ts', import.meta.url), 'utf8'))
  })

  it('passes redocly lint with the recommended rules: no error, no warning', () => {
    const out = execFileSync(new URL('../node_modules/.bin/redocly', import.meta.url).pathname,
      ['lint', 'openapi/openapi.json', '--extends=recommended', '--format=json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    const report = JSON.parse(out)
    expect(report.problems).toEqual([])
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 })
  })

  it('names its components: Tensor and its forms, ResultTensor, Error, each operation\'s body and reply', () => {
    const names = Object.keys(doc.components.schemas)
    expect(names).toEqual(expect.arrayContaining(['Tensor', 'TensorObject', 'TensorBase64', 'NestedArrays', 'Mask', 'ResultTensor', 'Error', 'DType', 'Encoding', 'NonFinite']))
    for (const spec of specs) {
      const op = operationOf(spec)
      const name = componentName(spec.path ?? spec.name)
      expect(op.requestBody?.content['application/json'].schema).toEqual({ $ref: `#/components/schemas/${name}Body` })
      expect(op.responses['200'].content?.['application/json'].schema).toEqual({ $ref: `#/components/schemas/${name}Reply` })
      for (const [status, reply] of Object.entries(op.responses)) {
        if (status !== '200') expect(reply.content?.['application/json'].schema, `${spec.name} ${status}`).toEqual({ $ref: '#/components/schemas/Error' })
      }
    }
    // the tensor schema is stated once, not inlined in every operation
    expect(committedText.match(/"Base64 \(RFC 4648/g)).toHaveLength(1)
  })

  it('is as strict as the server: options >= 1, boolean data only in masks, a shape with base64 data, typed enums', () => {
    const s = doc.components.schemas
    const conv = s.Conv2dBody.properties
    for (const name of ['stride', 'dilation']) {
      expect(conv[name].anyOf[0].minimum, name).toBe(1)
      expect(conv[name].anyOf[1].items.minimum, name).toBe(1)
    }
    expect(conv.groups.minimum).toBe(1)
    expect(conv.padding.anyOf[1].minimum).toBe(0)
    expect(JSON.stringify(s.Tensor)).not.toContain('boolean')
    expect(JSON.stringify(s.TensorObject)).not.toContain('boolean')
    expect(JSON.stringify(s.Mask)).toContain('boolean')
    expect(s.TensorBase64.required).toContain('shape')
    expect(s.TensorBase64.properties.data.type).toBe('string')
    const untyped: string[] = []
    const visit = (node: unknown, path: string): void => {
      if (typeof node !== 'object' || node === null) return
      if ('enum' in node && !('type' in node)) untyped.push(path)
      for (const [k, v] of Object.entries(node)) if (k !== 'example') visit(v, `${path}/${k}`)
    }
    visit(doc, '#')
    expect(untyped).toEqual([])
  })

  it('states a license, no global security requirement, and a 4XX reply for every route', () => {
    expect(doc.info.license.name).toBe('MIT')
    expect(doc.security).toEqual([])
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, Op>>)) {
      for (const op of Object.values(item)) expect(Object.keys(op.responses).some(s => s.startsWith('4')), path).toBe(true)
    }
  })
})

describe('the examples are the service\'s real replies', () => {
  let app: FastifyInstance
  beforeAll(async () => { app = await buildApp({ logLevel: 'silent', workers: 1 }) })
  afterAll(async () => { await app.close() })

  const post = async (target: FastifyInstance, url: string, payload: unknown, contentType = 'application/json'): Promise<{ status: number, body: unknown }> => {
    const res = await target.inject({ method: 'POST', url, payload: payload as string, headers: { 'content-type': contentType } })
    return { status: res.statusCode, body: res.json() }
  }

  for (const spec of specs) {
    it(`${spec.name}: the 200 example is the reply to the request example, byte for byte`, async () => {
      const op = operationOf(spec)
      const request = op.requestBody?.content['application/json'].example
      expect(request).toEqual(spec.example)
      const res = await app.inject({ method: 'POST', url: routeOf(spec), payload: request as object })
      expect(res.statusCode).toBe(200)
      expect(res.body).toBe(JSON.stringify(op.responses['200'].content?.['application/json'].example))
    })

    it(`${spec.name}: the 400, 401, 406, 413 and 415 examples are the replies to their requests`, async () => {
      const examples = errorExamples(spec)
      const op = operationOf(spec)
      for (const [status, example] of Object.entries(examples)) {
        expect(op.responses[status].content?.['application/json'].example, status).toEqual(example)
      }
      const url = routeOf(spec)
      const { ragged, huge } = errorRequests(spec)
      expect(await post(app, url, ragged)).toEqual({ status: 400, body: examples[400] })
      expect(await post(app, url, huge)).toEqual({ status: 413, body: examples[413] })
      expect(await post(app, url, 'a text', 'text/plain')).toEqual({ status: 415, body: examples[415] })
      const html = await app.inject({ method: 'POST', url, payload: spec.example as object, headers: { accept: 'text/html' } })
      expect({ status: html.statusCode, body: html.json() }).toEqual({ status: 406, body: examples[406] })
      const secured = await buildApp({ logLevel: 'silent', workers: 1, apiKeys: ['k-openapi-0123456789abcdef'] })
      try {
        expect(await post(secured, url, spec.example)).toEqual({ status: 401, body: examples[401] })
      } finally {
        await secured.close()
      }
    })
  }

  it('the 429 example is the reply past RATE_LIMIT_MAX=100', async () => {
    const limited = await buildApp({ logLevel: 'silent', workers: 1, rateLimitMax: 100 })
    try {
      const dot = OPERATIONS.dot
      for (let i = 0; i < 100; i++) expect((await post(limited, '/v1/dot', dot.example)).status).toBe(200)
      expect(await post(limited, '/v1/dot', dot.example)).toEqual({ status: 429, body: errorExamples(dot as Operation)[429] })
    } finally {
      await limited.close()
    }
  })
})
