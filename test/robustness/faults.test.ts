/**
 * Worker faults (test/support/faulty-worker.mjs): a kernel that throws, a worker thread that
 * exits, a worker that runs out of heap. Each gives a generic 500 with the request id and
 * nothing internal; the pool refills and the next request is computed correctly.
 */
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'

const FAULTY_WORKER = new URL('../support/faulty-worker.mjs', import.meta.url).href

describe('worker faults', () => {
  let app: FastifyInstance
  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1, workerHeapMb: 32, inlineMaxFlops: 0, workerFile: FAULTY_WORKER })
    await app.ready()
  })
  afterAll(async () => { await app.close() })

  const linearOk = async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/linear', payload: { input: [[1, 2]], weights: [[1], [1]], bias: [0.5] } })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toEqual({ result: { shape: [1, 1], dtype: 'float64', data: [[3.5]] } })
  }

  const faults: Array<[string, string, object]> = [
    ['a kernel that throws', '/v1/matmul', { a: [[1]], b: [[1]] }],
    ['a worker thread that exits', '/v1/dot', { a: [1], b: [1] }],
    ['a worker that runs out of heap', '/v1/conv2d', { input: [[[1]]], kernel: [[[[1]]]] }]
  ]
  for (const [title, url, payload] of faults) {
    it(`${title}: 500 with only the request id, then the next request is right`, async () => {
      const res = await app.inject({ method: 'POST', url, payload, headers: { 'x-request-id': 'fault-1' } })
      expect(res.statusCode).toBe(500)
      expect(res.json()).toEqual({
        statusCode: 500,
        code: 'INTERNAL',
        error: 'Internal Server Error',
        message: 'internal error (request id fault-1)'
      })
      expect(res.body).not.toContain('secret')
      expect(res.headers['x-request-id']).toBe('fault-1')
      await linearOk()
      expect(app.pool.threads.length).toBe(1)
    })
  }

  it('the failures are counted in /metrics', async () => {
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
    for (const op of ['matmul', 'dot', 'conv2d']) {
      expect(text).toMatch(new RegExp(`tensor_tasks_failed_total\\{op="${op}"\\} 1`))
    }
  })
})
