/**
 * The contract's service routes over HTTP: /health, /ready (also while draining), the OpenAPI
 * document and its examples (what Swagger UI's "Try it out" sends), /docs served with its own
 * assets, x-request-id, and one request through a real listening socket with supertest.
 */
import request from 'supertest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.js'
import { ROUTES } from '../src/operations/index.js'
import { expectError, post, waitFor } from './helpers/bodies.js'

const OPERATIONS = ROUTES
const SANE_ID = /^[A-Za-z0-9._:-]{1,128}$/

interface OpenApiOperation {
  tags?: string[]
  summary?: string
  description?: string
  requestBody?: { content?: Record<string, { example?: unknown, examples?: Record<string, { value?: unknown }>, schema?: { examples?: unknown[] } }> }
  responses?: Record<string, unknown>
}

interface OpenApiDocument {
  openapi: string
  paths: Record<string, Record<string, OpenApiOperation>>
}

/** The request-body example of an operation, wherever the document puts it. */
function exampleOf (op: OpenApiOperation): unknown {
  const media = op.requestBody?.content?.['application/json']
  if (media === undefined) return undefined
  if (media.example !== undefined) return media.example
  const named = Object.values(media.examples ?? {})
  if (named.length > 0) return named[0].value
  return media.schema?.examples?.[0]
}

let app: FastifyInstance

beforeAll(async () => {
  app = await buildApp({ logLevel: 'silent', workers: 1 })
  await app.ready()
})

afterAll(async () => {
  await app?.close()
})

describe('health and readiness', () => {
  it('GET /health answers 200 {"status":"ok"}', async () => {
    const res = await app.inject({ method: 'GET', url: '/health' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^application\/json/)
    expect(res.json()).toEqual({ status: 'ok' })
  })

  it('GET /ready answers 200 once the app is ready', async () => {
    expect(app.accepting).toBe(true)
    const res = await app.inject({ method: 'GET', url: '/ready' })
    expect(res.statusCode).toBe(200)
    expect(typeof res.json().status).toBe('string')
  })

  it('GET /ready answers 503 while the app does not accept work', async () => {
    app.accepting = false
    try {
      const res = await app.inject({ method: 'GET', url: '/ready' })
      expect(res.statusCode).toBe(503)
      expect(typeof res.json().status).toBe('string')
      expect(typeof res.headers['x-request-id']).toBe('string')
      // liveness is unaffected
      expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200)
    } finally {
      app.accepting = true
    }
    expect((await app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200)
  })

  it('while closing, the app stops accepting (readiness turns 503) and still finishes the request in flight', async () => {
    // Once close() begins, Fastify refuses inject() and the listener takes no new connections,
    // so /ready's 503 during a drain cannot be fetched here; what /ready reads (app.accepting)
    // is checked instead, with the request in flight completing normally.
    const draining = await buildApp({ logLevel: 'silent', workers: 1, inlineMaxFlops: 0, workerFile: new URL('./support/slow-worker.mjs', import.meta.url).href })
    await draining.ready()
    let closed = false
    try {
      const inFlight = post(draining, '/v1/matmul', { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]] }) // 1 s in the slow worker
      await waitFor(() => draining.pool.idleThreads === 0, 5000, 'the request to reach the worker')
      expect(draining.accepting).toBe(true)
      const closing = draining.close()
      await waitFor(() => !draining.accepting, 2000, 'accepting to turn false')
      const res = await inFlight
      expect(res.statusCode, res.body.slice(0, 300)).toBe(200)
      expect(res.json().result.data).toEqual([[19, 22], [43, 50]])
      await closing
      closed = true
      expect(draining.accepting).toBe(false)
    } finally {
      if (!closed) await draining.close()
    }
  })
})

describe('the OpenAPI document', () => {
  let doc: OpenApiDocument

  beforeAll(async () => {
    const res = await app.inject({ method: 'GET', url: '/openapi.json' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^application\/json/)
    doc = res.json() as OpenApiDocument
  })

  it('is OpenAPI 3.x', () => {
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/)
  })

  for (const name of OPERATIONS) {
    it(`documents POST /v1/${name} with tags, summary, description, an example body and 200/400/413 replies`, () => {
      const op = doc.paths[`/v1/${name}`]?.post
      expect(op, `no POST /v1/${name}`).toBeDefined()
      expect(Array.isArray(op.tags) && op.tags.length > 0).toBe(true)
      expect(typeof op.summary === 'string' && op.summary.length > 0).toBe(true)
      expect(typeof op.description === 'string' && op.description.length > 0).toBe(true)
      const example = exampleOf(op)
      expect(example, 'request-body example').toBeTypeOf('object')
      expect(example).not.toBeNull()
      for (const status of ['200', '400', '413']) expect(op.responses, `response ${status}`).toHaveProperty(status)
    })

    it(`POST /v1/${name} with its own OpenAPI example (Swagger UI's "Try it out") answers 200 with a result`, async () => {
      const example = exampleOf(doc.paths[`/v1/${name}`].post)
      const res = await post(app, `/v1/${name}`, example)
      expect(res.statusCode, res.body).toBe(200)
      const out = res.json()
      // (einsum's operands have no names: its gradients are a list)
      // (the optimizer's reply is the parameters by name)
      const tensors = name.endsWith('/backward') ? (out.grads.operands ?? Object.values(out.grads)) : out.params !== undefined ? Object.values(out.params) : [out.result]
      expect(tensors.length).toBeGreaterThan(0)
      for (const t of tensors) {
        expect(t).toBeTypeOf('object')
        expect(Object.keys(t as object).sort()).toEqual(['data', 'dtype', 'shape'])
      }
    })
  }

  it('the example bodies compute the documented values (matmul and dot)', async () => {
    const mm = await post(app, '/v1/matmul', exampleOf(doc.paths['/v1/matmul'].post))
    expect(mm.json().result).toEqual({ shape: [2, 2], dtype: 'float64', data: [[19, 22], [43, 50]] })
    const dot = await post(app, '/v1/dot', exampleOf(doc.paths['/v1/dot'].post))
    expect(dot.json().result).toEqual({ shape: [], dtype: 'float64', data: 32 })
  })

  it('Swagger UI loads the same document', async () => {
    const res = await app.inject({ method: 'GET', url: '/docs/json' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual(doc)
  })
})

describe('GET /docs', () => {
  /** GETs a path, following redirects on the same host. */
  async function getFollowing (url: string): Promise<{ url: string, res: Awaited<ReturnType<FastifyInstance['inject']>> }> {
    let current = url
    for (let hop = 0; hop < 5; hop++) {
      const res = await app.inject({ method: 'GET', url: current })
      if (res.statusCode < 300 || res.statusCode >= 400) return { url: current, res }
      const location = String(res.headers.location)
      const next = new URL(location, `http://localhost${current}`)
      expect(next.host).toBe('localhost')
      current = next.pathname + next.search
    }
    throw new Error(`too many redirects from ${url}`)
  }

  it('serves the Swagger UI page and every asset it references, locally, with no other host', async () => {
    const { url, res } = await getFollowing('/docs')
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^text\/html/)
    const html = res.body
    expect(html).toMatch(/swagger/i)

    // no absolute URL to another host anywhere in the page
    for (const m of html.matchAll(/(?:https?:)?\/\/[A-Za-z0-9.-]+(?::\d+)?/g)) {
      expect(new URL(m[0], 'http://localhost').host, `external reference ${m[0]}`).toBe('localhost')
    }

    const refs = [...html.matchAll(/(?:src|href)\s*=\s*["']([^"']+)["']/g)].map(m => m[1])
    const scripts = refs.filter(r => /\.js(?:\?|$)/.test(r))
    const styles = refs.filter(r => /\.css(?:\?|$)/.test(r))
    expect(scripts.length).toBeGreaterThan(0)
    expect(styles.length).toBeGreaterThan(0)
    for (const ref of refs) {
      const target = new URL(ref, `http://localhost${url}`)
      expect(target.host, `asset ${ref}`).toBe('localhost')
      const asset = await app.inject({ method: 'GET', url: target.pathname + target.search })
      expect(asset.statusCode, `GET ${target.pathname} (from ${ref})`).toBe(200)
      expect(asset.rawPayload.length, `GET ${target.pathname} is empty`).toBeGreaterThan(0)
      if (/\.js$/.test(target.pathname)) expect(asset.headers['content-type']).toMatch(/javascript/)
      if (/\.css$/.test(target.pathname)) expect(asset.headers['content-type']).toMatch(/^text\/css/)
    }
  })

  it('the page also works at /docs/', async () => {
    const res = await app.inject({ method: 'GET', url: '/docs/' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^text\/html/)
  })
})

describe('x-request-id', () => {
  it('is generated when the client sends none, and differs between requests', async () => {
    const a = await app.inject({ method: 'GET', url: '/health' })
    const b = await app.inject({ method: 'GET', url: '/health' })
    const idA = a.headers['x-request-id']
    const idB = b.headers['x-request-id']
    expect(typeof idA).toBe('string')
    expect((idA as string).length).toBeGreaterThan(0)
    expect(idA).toMatch(SANE_ID)
    expect(idB).not.toBe(idA)
  })

  it('echoes a sane client id, on success and on errors', async () => {
    const ok = await post(app, '/v1/dot', { a: [1, 2, 3], b: [4, 5, 6] }, { 'x-request-id': 'abc-123' })
    expect(ok.statusCode).toBe(200)
    expect(ok.headers['x-request-id']).toBe('abc-123')
    const bad = await post(app, '/v1/dot', { a: [1, 2], b: [1] }, { 'x-request-id': 'req.42:retry-1' })
    expectError(bad, 400, 'SHAPE_MISMATCH')
    expect(bad.headers['x-request-id']).toBe('req.42:retry-1')
    const missing = await app.inject({ method: 'GET', url: '/nowhere', headers: { 'x-request-id': 'abc-124' } })
    expectError(missing, 404, 'NOT_FOUND')
    expect(missing.headers['x-request-id']).toBe('abc-124')
  })

  it('replaces a hostile id (500 characters, spaces, a newline, markup) with a generated one', async () => {
    for (const hostile of ['x'.repeat(500), 'a b', 'a\nb', '<script>alert(1)</script>', 'id;drop']) {
      const res = await app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': hostile } })
      expect(res.statusCode).toBe(200)
      const id = res.headers['x-request-id']
      expect(typeof id).toBe('string')
      expect(id).not.toBe(hostile)
      expect(id).toMatch(SANE_ID)
    }
  })
})

describe('a real listening socket', () => {
  it('POST /v1/dot through supertest answers 200 with result 32', async () => {
    const server = await buildApp({ logLevel: 'silent', workers: 1 })
    try {
      await server.listen({ port: 0, host: '127.0.0.1' })
      const res = await request(server.server)
        .post('/v1/dot')
        .set('content-type', 'application/json')
        .set('x-request-id', 'sock-1')
        .send({ a: [1, 2, 3], b: [4, 5, 6] })
      expect(res.status).toBe(200)
      expect(res.headers['content-type']).toMatch(/^application\/json/)
      expect(res.headers['x-request-id']).toBe('sock-1')
      expect(res.body).toEqual({ result: { shape: [], dtype: 'float64', data: 32 } })
      const health = await request(server.server).get('/health')
      expect(health.status).toBe(200)
      expect(health.body).toEqual({ status: 'ok' })
      const notJson = await request(server.server).post('/v1/dot').set('content-type', 'text/plain').send('1,2,3')
      expect(notJson.status).toBe(415)
      expect(notJson.body.code).toBe('FST_ERR_CTP_INVALID_MEDIA_TYPE')
    } finally {
      await server.close()
    }
  })
})

describe('log lines', () => {
  it('one line per request: id first, route, status, duration, shapes, error code, client address; never tensor data; probes at debug', async () => {
    const lines: string[] = []
    const logged = await buildApp({ logLevel: 'info', workers: 1 }, { logStream: { write: (line: string) => { lines.push(line) } } })
    try {
      await logged.ready()
      lines.length = 0
      const ok = await logged.inject({ method: 'POST', url: '/v1/matmul', headers: { 'x-request-id': 'log-1' }, payload: { a: [[1.2345678, 2], [3, 4]], b: [[5, 6], [7, 8]] } })
      expect(ok.statusCode).toBe(200)
      const bad = await logged.inject({ method: 'POST', url: '/v1/matmul', headers: { 'x-request-id': 'log-2' }, payload: { a: [[1.2345678, 2, 3]], b: [[5, 6], [7, 8]] } })
      expect(bad.statusCode).toBe(400)
      expect((await logged.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200)
      expect(lines).toHaveLength(2)
      const [first, second] = lines.map(l => JSON.parse(l) as Record<string, unknown>)
      expect(Object.keys(first)).toEqual(['level', 'time', 'pid', 'hostname', 'reqId', 'method', 'route', 'status', 'ms', 'shapes', 'client', 'msg'])
      expect(first).toMatchObject({ level: 30, reqId: 'log-1', method: 'POST', route: '/v1/matmul', status: 200, shapes: { a: [2, 2], b: [2, 2] }, client: '127.0.0.1', msg: 'request' })
      expect(typeof first.ms).toBe('number')
      expect(second).toMatchObject({ reqId: 'log-2', status: 400, code: 'SHAPE_MISMATCH', shapes: { a: [1, 3], b: [2, 2] } })
      expect(lines.join('')).not.toContain('1.2345678')
      // other lines keep the redaction of bodies and tensor data
      logged.log.info({ payload: { a: [[1.2345678]] }, t: { data: [1.2345678] } }, 'other')
      expect(lines[2]).not.toContain('1.2345678')
    } finally {
      await logged.close()
    }
  })
})
