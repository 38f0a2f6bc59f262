/**
 * Stopping a task that is inside the native engine. ONNX Runtime's binding aborts the whole
 * process when its worker thread is terminated during a session run (seen under load, when
 * clients went away mid-request), so the pool first closes the task's gate (src/worker/gate.ts),
 * waits for the run to end, and only then terminates the worker. The cases below stop float64
 * products of 1536x1536 (7 GFLOP: some 100 ms in one engine run here) 30 ms after they reach their
 * worker, by a deadline and by the client going away: without the gate, the process running this
 * file aborts.
 */
import { EventEmitter } from 'node:events'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { matmulInfo } from '../../src/kernels/matmul.js'
import type { TaskBase } from '../../src/operations/spec.js'
import { closeGate, CLOSED, enterGate, INSIDE, leaveGate, newGate, OPEN } from '../../src/worker/gate.js'

const N = 1536
const INFO = matmulInfo([N, N], [N, N], { maxElements: 1 << 24, maxFlops: 1e11 })

/** A fresh float64 product task and its transfer list. */
function bigTask (): { task: TaskBase & { a: Float64Array, b: Float64Array }, transfer: ArrayBuffer[] } {
  const a = new Float64Array(N * N).fill(1)
  const b = new Float64Array(N * N).fill(2)
  return { task: { dtype: 'float64', a, b, info: INFO }, transfer: [a.buffer, b.buffer] }
}

/** A stand-in for Fastify's reply: only its raw response's 'close' event matters to the pool. */
function fakeReply (): { reply: FastifyReply, goAway: () => void } {
  const raw = Object.assign(new EventEmitter(), { writableFinished: false })
  return { reply: { raw } as unknown as FastifyReply, goAway: () => { raw.emit('close') } }
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
  let app: FastifyInstance
  let timed: FastifyInstance
  beforeAll(async () => {
    // one thread per product (no whole-pool threads), every product on a worker
    app = await buildApp({ logLevel: 'silent', workers: 2, splitMinFlops: 0, inlineMaxFlops: 0 })
    timed = await buildApp({ logLevel: 'silent', workers: 1, splitMinFlops: 0, inlineMaxFlops: 0, taskTimeoutMs: 30 })
    await Promise.all([app.ready(), timed.ready()])
  })
  afterAll(async () => { await Promise.all([app.close(), timed.close()]) })

  /**
   * The service answers a small product correctly. With `attempts` > 1, a 504 TIMEOUT is asked
   * again: a worker that replaced a stopped one loads its modules and engine sessions on its first
   * task, which on a busy machine can pass the 30 ms deadline of `timed`. (A CI run once read a
   * reply without a result here; not reproduced, so a failure now prints the status and body.)
   */
  async function expectServing (target: FastifyInstance, attempts = 1): Promise<void> {
    for (let i = 1; ; i++) {
      const res = await target.inject({ method: 'POST', url: '/v1/matmul', payload: { a: [[1, 2]], b: [[3], [4]] } })
      if (i < attempts && res.statusCode === 504 && res.json().code === 'TIMEOUT') continue
      expect(res.json().result?.data, `${res.statusCode} ${res.body}`).toEqual([[11]])
      return
    }
  }

  it('clients that go away during the run: CANCELLED, and the service keeps computing', async () => {
    for (let i = 0; i < 3; i++) {
      const { task, transfer } = bigTask()
      const { reply, goAway } = fakeReply()
      const running = app.compute('matmul', task, transfer, reply)
      setTimeout(goAway, 30 + i * 10)
      await expect(running).rejects.toMatchObject({ code: 'CANCELLED' })
    }
    await expectServing(app)
    const { task, transfer } = bigTask()
    const result = await app.compute('matmul', task, transfer, fakeReply().reply) as Float64Array
    expect(result.length).toBe(N * N)
    expect(result[0]).toBe(2 * N)
    expect(result[N * N - 1]).toBe(2 * N)
  }, 60_000)

  it('deadlines that fall inside the run: TIMEOUT, and the service keeps computing', async () => {
    for (let i = 0; i < 3; i++) {
      const { task, transfer } = bigTask()
      await expect(timed.compute('matmul', task, transfer, fakeReply().reply)).rejects.toMatchObject({ code: 'TIMEOUT' })
    }
    await expectServing(timed, 5)
  }, 60_000)
})
