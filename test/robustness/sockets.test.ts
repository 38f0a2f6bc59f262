/**
 * Behaviour over real sockets on 127.0.0.1: load shedding, deadlines, the body limit and the
 * drain on SIGTERM. Long tasks come from test/support/slow-worker.mjs (every task busy for 1 s,
 * then the real kernel), so the timings do not depend on the kernels' speed.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import type { FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import type { Config } from '../../src/config.js'

const SLOW_WORKER = new URL('../support/slow-worker.mjs', import.meta.url).href
const MATMUL = JSON.stringify({ a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]] })
const EXPECTED = { result: { shape: [2, 2], dtype: 'float64', data: [[19, 22], [43, 50]] } }

let app: FastifyInstance | undefined
afterEach(async () => {
  await app?.close()
  app = undefined
})

async function listen (overrides: Partial<Config>): Promise<string> {
  app = await buildApp({ logLevel: 'silent', ...overrides })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  return `http://127.0.0.1:${port}`
}

async function post (base: string, path: string, body: string) {
  const t0 = performance.now()
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  const text = await res.text()
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: text, ms: performance.now() - t0 }
}

describe('over real sockets', () => {
  it('WORKERS=2 MAX_QUEUE=2, 10 concurrent long tasks: exactly 4 succeed, 6 get 503 with Retry-After at once', async () => {
    const base = await listen({ workers: 2, maxQueue: 2, inlineMaxFlops: 0, workerFile: SLOW_WORKER })
    const results = await Promise.all(Array.from({ length: 10 }, async () => await post(base, '/v1/matmul', MATMUL)))
    const ok = results.filter(r => r.status === 200)
    const shed = results.filter(r => r.status === 503)
    expect(ok).toHaveLength(4)
    expect(shed).toHaveLength(6)
    for (const r of ok) expect(JSON.parse(r.body)).toEqual(EXPECTED)
    for (const r of shed) {
      expect(r.retryAfter).toBe('1')
      expect(JSON.parse(r.body)).toMatchObject({ statusCode: 503, code: 'OVERLOADED' })
      expect(r.ms).toBeLessThan(1000) // refused without waiting for a worker (the tasks take 1 s)
    }
  })

  it('a long task against a 300 ms deadline gets 504 near 300 ms, and the next request succeeds', async () => {
    const base = await listen({ workers: 1, taskTimeoutMs: 300, inlineMaxFlops: 0, workerFile: SLOW_WORKER })
    await post(base, '/health', '') // warm the connection path
    const r = await post(base, '/v1/matmul', MATMUL)
    expect(r.status).toBe(504)
    expect(JSON.parse(r.body)).toMatchObject({ statusCode: 504, code: 'TIMEOUT' })
    expect(r.ms).toBeGreaterThanOrEqual(300 - 5)
    expect(r.ms).toBeLessThanOrEqual(300 + 150)
    await app!.close()
    // a pool with a real worker and the same deadline computes the next request
    const base2 = await listen({ workers: 1, taskTimeoutMs: 300 })
    const next = await post(base2, '/v1/matmul', MATMUL)
    expect(next.status).toBe(200)
    expect(JSON.parse(next.body)).toEqual(EXPECTED)
  })

  it('after a timeout the same pool replaces its worker and computes correctly', async () => {
    process.env.SLOW_WORKER_MS = '1000'
    const base = await listen({ workers: 1, taskTimeoutMs: 2000, inlineMaxFlops: 0, workerFile: SLOW_WORKER })
    const first = await post(base, '/v1/matmul', MATMUL) // 1 s of work, within 2 s
    expect(first.status).toBe(200)
    await app!.close()
    const base2 = await listen({ workers: 1, taskTimeoutMs: 200, inlineMaxFlops: 0, workerFile: SLOW_WORKER })
    expect((await post(base2, '/v1/matmul', MATMUL)).status).toBe(504)
    expect((await post(base2, '/v1/matmul', MATMUL)).status).toBe(504) // the replacement worker answers (too late again)
    expect(app!.pool.threads.length).toBe(1)
  })

  it('a body 1 byte under the limit gets 200, 1 byte over gets 413', async () => {
    const limit = 2000
    const base = await listen({ workers: 1, bodyLimitBytes: limit })
    const pad = (n: number) => JSON.stringify({ a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]] }).replace('{', '{' + ' '.repeat(n))
    const base0 = pad(0).length
    const under = pad(limit - 1 - base0)
    const over = pad(limit + 1 - base0)
    expect(Buffer.byteLength(under)).toBe(limit - 1)
    expect(Buffer.byteLength(over)).toBe(limit + 1)
    const r1 = await post(base, '/v1/matmul', under)
    expect(r1.status).toBe(200)
    expect(JSON.parse(r1.body)).toEqual(EXPECTED)
    const r2 = await post(base, '/v1/matmul', over)
    expect(r2.status).toBe(413)
    expect(JSON.parse(r2.body)).toMatchObject({ statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' })
  })

  it('RSS over MAX_RSS_BYTES sheds operations with 503 OVERLOADED, while /health still answers', async () => {
    const base = await listen({ workers: 1, maxRssBytes: 1 })
    await new Promise(resolve => setTimeout(resolve, 1200)) // under-pressure samples memory every second
    const r = await post(base, '/v1/matmul', MATMUL)
    expect(r.status).toBe(503)
    expect(r.retryAfter).toBe('1')
    expect(JSON.parse(r.body)).toMatchObject({ code: 'OVERLOADED' })
    expect((await fetch(base + '/health')).status).toBe(200)
  })

  /** Posts a matmul, disconnects 150 ms into its task; returns the pool's metrics before and 100 ms after. */
  async function disconnectMidTask (base: string): Promise<{ before: string, after: string }> {
    const controller = new AbortController()
    const pending = fetch(base + '/v1/matmul', { method: 'POST', headers: { 'content-type': 'application/json' }, body: MATMUL, signal: controller.signal })
      .catch(() => 'aborted')
    await new Promise(resolve => setTimeout(resolve, 150))
    const before = await (await fetch(base + '/metrics')).text()
    controller.abort()
    expect(await pending).toBe('aborted')
    await new Promise(resolve => setTimeout(resolve, 100))
    return { before, after: await (await fetch(base + '/metrics')).text() }
  }
  const metric = (text: string, name: string): string | undefined => new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1]

  it('a client that disconnects has its running task stopped: a task that does not end on its own has its worker replaced', async () => {
    process.env.SLOW_WORKER_MS = '1000'
    const base = await listen({ workers: 1, inlineMaxFlops: 0, workerFile: SLOW_WORKER })
    const { before, after } = await disconnectMidTask(base)
    expect(metric(before, 'tensor_pool_busy_workers')).toBe('1')
    expect(metric(before, 'tensor_workers_started_total')).toBe('1')
    expect(metric(after, 'tensor_pool_busy_workers')).toBe('0') // 850 ms before the task would have ended
    // terminated STOP_GRACE_MS after the stop, and replaced (the new thread takes a moment to start)
    await expect.poll(async () => metric(await (await fetch(base + '/metrics')).text(), 'tensor_workers_started_total'), { timeout: 10_000 }).toBe('2')
    const next = await post(base, '/v1/matmul', MATMUL)
    expect(next.status).toBe(200)
    expect(JSON.parse(next.body)).toEqual(EXPECTED)
  })

  it('a client that disconnects during a task of engine calls: the task ends at its next call and keeps its worker', async () => {
    process.env.SLOW_WORKER_MS = '1000'
    process.env.SLOW_WORKER_GATE = '1'
    try {
      const base = await listen({ workers: 1, inlineMaxFlops: 0, workerFile: SLOW_WORKER })
      const { before, after } = await disconnectMidTask(base)
      expect(metric(before, 'tensor_pool_busy_workers')).toBe('1')
      expect(metric(after, 'tensor_pool_busy_workers')).toBe('0')
      expect(after).not.toMatch(/^tensor_tasks_failed_total\{/m) // a stop, not a failure
      const next = await post(base, '/v1/matmul', MATMUL)
      expect(next.status).toBe(200)
      expect(JSON.parse(next.body)).toEqual(EXPECTED)
      // the next task ran on the same worker: a replacement would have been counted before it ran
      expect(metric(await (await fetch(base + '/metrics')).text(), 'tensor_workers_started_total')).toBe('1')
    } finally {
      delete process.env.SLOW_WORKER_GATE
    }
  })
})

describe('drain on SIGTERM (the real server process)', () => {
  let child: ChildProcess | undefined
  afterEach(() => { child?.kill('SIGKILL') })

  async function startServer (env: Record<string, string>): Promise<{ base: string, exited: Promise<number | null>, output: () => string }> {
    child = spawn(process.execPath, ['--import', 'tsx', 'test/support/serve.ts'], {
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn', WORKERS: '1', ...env },
      stdio: ['ignore', 'pipe', 'inherit']
    })
    let out = ''
    // (the exit code once stdout has ended too, so that the output is complete)
    const closed = new Promise<void>(resolve => child!.stdout!.once('end', resolve))
    const exit = new Promise<number | null>(resolve => child!.once('exit', code => resolve(code)))
    const exited = Promise.all([exit, closed]).then(([code]) => code)
    const port = await new Promise<number>((resolve, reject) => {
      child!.stdout!.on('data', (d: Buffer) => {
        out += d.toString()
        const m = /listening (\d+)/.exec(out)
        if (m !== null) resolve(Number(m[1]))
      })
      child!.once('exit', () => reject(new Error(`server exited early: ${out}`)))
    })
    return { base: `http://127.0.0.1:${port}`, exited, output: () => out }
  }

  /** The output's log lines (JSON), without the line the test server prints when it listens. */
  function logLines (output: string): Array<Record<string, unknown>> {
    return output.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Record<string, unknown>)
  }

  it('SIGTERM right after a request: its log line and the drain\'s lines are written before the process exits', async () => {
    const { base, exited, output } = await startServer({ LOG_LEVEL: 'info', SLOW_WORKER_MS: '0', SHUTDOWN_GRACE_MS: '10000' })
    const res = await fetch(base + '/v1/matmul', { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'last-lines-1' }, body: MATMUL })
    expect(res.status).toBe(200)
    await res.text()
    child!.kill('SIGTERM')
    expect(await exited).toBe(0)
    const lines = logLines(output())
    const request = lines.findIndex(l => l.reqId === 'last-lines-1')
    expect(request, output()).toBeGreaterThanOrEqual(0)
    expect(lines[request]).toMatchObject({ level: 30, msg: 'request', method: 'POST', route: '/v1/matmul', status: 200, shapes: { a: [2, 2], b: [2, 2] } })
    expect(typeof lines[request].ms).toBe('number')
    const messages = lines.slice(request + 1).map(l => l.msg)
    expect(messages).toEqual(['draining', 'drained'])
    expect(output()).not.toContain('[[1,2]') // never tensor data
  })

  it('SIGTERM during a long request: that request gets 200, /ready turns 503 or refuses, the process exits 0', async () => {
    const { base, exited } = await startServer({ SLOW_WORKER_MS: '1500', SHUTDOWN_GRACE_MS: '10000' })
    expect((await fetch(base + '/ready')).status).toBe(200)
    const inflight = post(base, '/v1/matmul', MATMUL)
    await new Promise(resolve => setTimeout(resolve, 300))
    child!.kill('SIGTERM')
    await new Promise(resolve => setTimeout(resolve, 200))
    // draining: new connections are refused (or, on a kept-alive one, answered 503)
    const ready = await fetch(base + '/ready').then(r => r.status, () => 'refused')
    expect([503, 'refused']).toContain(ready)
    const r = await inflight
    expect(r.status).toBe(200)
    expect(JSON.parse(r.body)).toEqual(EXPECTED)
    expect(await exited).toBe(0)
  })

  it('a second signal exits at once', async () => {
    const { base, exited, output } = await startServer({ SLOW_WORKER_MS: '5000', SHUTDOWN_GRACE_MS: '20000' })
    const inflight = post(base, '/v1/matmul', MATMUL).catch(() => 'cut')
    await new Promise(resolve => setTimeout(resolve, 300))
    const t0 = performance.now()
    child!.kill('SIGTERM')
    await new Promise(resolve => setTimeout(resolve, 200))
    child!.kill('SIGTERM')
    expect(await exited).toBe(1)
    expect(performance.now() - t0).toBeLessThan(2000)
    await inflight
    expect(logLines(output()).map(l => l.msg)).toEqual(['second signal: exiting now'])
  })

  it('a drain past SHUTDOWN_GRACE_MS exits with 1, and its last line is written', async () => {
    const { base, exited, output } = await startServer({ SLOW_WORKER_MS: '5000', SHUTDOWN_GRACE_MS: '300' })
    const inflight = post(base, '/v1/matmul', MATMUL).catch(() => 'cut')
    await new Promise(resolve => setTimeout(resolve, 300))
    child!.kill('SIGTERM')
    expect(await exited).toBe(1)
    await inflight
    expect(logLines(output()).map(l => l.msg)).toEqual(['drain took longer than SHUTDOWN_GRACE_MS: exiting now'])
  })
})
