/**
 * Stopping a task that is inside the native engine. ONNX Runtime's binding aborts the whole
 * process when its worker thread is terminated during a session run, so the pool first closes the
 * task's gate (src/worker/gate.ts), waits for the run to end, and only then terminates the worker.
 * Each case below stops engine runs in the middle, again and again: without the gate the process
 * running this file dies.
 */
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { afterAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { closeGate, CLOSED, enterGate, INSIDE, leaveGate, newGate, OPEN } from '../../src/worker/gate.js'

const N = 768
const ONES = Buffer.from(new Float32Array(N * N).fill(1).buffer).toString('base64')
/** A float32 matmul of ~0.9 GFLOP: tens of milliseconds in one engine run. */
const BIG = { a: { shape: [N, N], dtype: 'float32', data: ONES }, b: { shape: [N, N], dtype: 'float32', data: ONES }, encoding: 'base64' }
const SMALL = { a: { shape: [64, 64], data: new Array(64 * 64).fill(1) }, b: { shape: [64, 64], data: new Array(64 * 64).fill(2) }, encoding: 'flat' }

const apps: FastifyInstance[] = []
afterAll(async () => { await Promise.all(apps.map(async (a) => await a.close())) })

async function expectServing (app: FastifyInstance): Promise<void> {
  const res = await app.inject({ method: 'POST', url: '/v1/matmul', payload: SMALL })
  expect(res.statusCode, res.body).toBe(200)
  expect(res.json().result.data).toEqual(new Array(64 * 64).fill(128))
}

describe('the gate', () => {
  it('closes at once when open, waits while the worker is inside, and then keeps it out', async () => {
    const gate = newGate()
    expect(enterGate(gate)).toBe(true)
    expect(gate[0]).toBe(INSIDE)
    let closed = false
    const closing = closeGate(gate).then(() => { closed = true })
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(closed).toBe(false)
    leaveGate(gate)
    await closing
    expect(gate[0]).toBe(CLOSED)
    expect(enterGate(gate)).toBe(false)
    const open = newGate()
    await closeGate(open)
    expect(open[0]).toBe(CLOSED)
    expect(OPEN).toBe(0)
  })
})

describe('stopping engine runs midway does not take the process down', () => {
  it('deadlines that fall inside engine runs: 504, and the service keeps computing', async () => {
    const app = await buildApp({ logLevel: 'silent', workers: 2, taskTimeoutMs: 8 })
    apps.push(app)
    await app.ready()
    for (let i = 0; i < 8; i++) {
      const res = await app.inject({ method: 'POST', url: '/v1/matmul', payload: BIG })
      expect(res.statusCode, res.body).toBe(504)
      expect(res.json().code).toBe('TIMEOUT')
    }
    // alive (a fresh worker's first engine run, which builds its session, may itself pass 8 ms)
    const res = await app.inject({ method: 'POST', url: '/v1/matmul', payload: { a: [[1, 2]], b: [[3], [4]] } })
    expect(res.json().result.data).toEqual([[11]])
  }, 60_000)

  it('clients that go away while their product is computed: the service keeps computing', async () => {
    const app = await buildApp({ logLevel: 'silent', workers: 2 })
    apps.push(app)
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address() as AddressInfo
    const body = JSON.stringify(BIG)
    // the time to parse and start computing varies: stop after 5 ms to 100 ms, four clients at once
    for (let i = 0; i < 20; i++) {
      await Promise.all([0, 1, 2, 3].map(async (j) => {
        const req = request({ port, host: '127.0.0.1', method: 'POST', path: '/v1/matmul', headers: { 'content-type': 'application/json' } })
        req.on('error', () => {})
        req.end(body)
        await new Promise(resolve => setTimeout(resolve, 5 + ((i * 4 + j) * 7) % 95))
        req.destroy()
      }))
    }
    await new Promise(resolve => setTimeout(resolve, 500))
    await expectServing(app)
    const res = await app.inject({ method: 'POST', url: '/v1/matmul', payload: BIG })
    expect(res.statusCode).toBe(200)
    expect(Buffer.from(res.json().result.data, 'base64').equals(Buffer.from(new Float32Array(N * N).fill(N).buffer))).toBe(true)
  }, 60_000)
})
