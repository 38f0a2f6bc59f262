/**
 * The TypeScript client (client/) against the live app on an ephemeral port: every operation
 * route has its method; typed arrays go in and come back with their shape and dtype; an error is a
 * TensorServiceError with status, code, message and request id; a 503 is retried after its
 * Retry-After a bounded number of times; an AbortSignal stops a call.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { methodName, OPERATION_ROUTES, type Tensor, TensorClient, TensorServiceError } from '../client/src/index.js'
import { buildApp } from '../src/app.js'
import { OPERATIONS } from '../src/operations/index.js'
import { waitFor } from './helpers/bodies.js'

const SLOW_WORKER = new URL('./support/slow-worker.mjs', import.meta.url).href

async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return `http://127.0.0.1:${address.port}`
}

/** The tensors of a reply by their path (`result`, `grads.a`). */
function tensorsOf (value: unknown, path = ''): Record<string, { shape: unknown, dtype: unknown, data: unknown }> {
  if (typeof value !== 'object' || value === null) return {}
  if ('shape' in value && 'dtype' in value && 'data' in value) return { [path]: value }
  return Object.assign({}, ...Object.entries(value).map(([k, v]) => tensorsOf(v, path === '' ? k : `${path}.${k}`)))
}

const f64 = (shape: number[], ...values: number[]): Tensor<Float64Array> => ({ shape, data: Float64Array.from(values) })

describe('the TypeScript client against the live app', () => {
  let app: FastifyInstance
  let client: TensorClient
  let baseUrl = ''

  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    baseUrl = await listen(app)
    client = new TensorClient({ baseUrl })
  })
  afterAll(async () => { await app.close() })

  it('has one method per operation route of the document, and every operation has a route', () => {
    expect([...OPERATION_ROUTES].sort()).toEqual(Object.values(OPERATIONS).map(s => `/v1/${s.path ?? s.name}`).sort())
    for (const route of OPERATION_ROUTES) expect(typeof (client as unknown as Record<string, unknown>)[methodName(route)], route).toBe('function')
    expect(methodName('/v1/matmul/backward')).toBe('matmulBackward')
  })

  it('matmul [2,2]·[2,2] float64: a Float64Array with its shape', async () => {
    const { result } = await client.matmul({ a: f64([2, 2], 1, 2, 3, 4), b: f64([2, 2], 5, 6, 7, 8) })
    expect(result.shape).toEqual([2, 2])
    expect(result.dtype).toBe('float64')
    expect(result.data).toBeInstanceOf(Float64Array)
    expect([...result.data]).toEqual([19, 22, 43, 50])
  })

  it('matmul [2]·[2] float32: a rank-0 Float32Array; NaN and infinities travel', async () => {
    const { result } = await client.matmul({ a: { shape: [2], data: Float32Array.of(1, 2) }, b: { shape: [2], data: Float32Array.of(3, 4) } })
    expect(result).toEqual({ shape: [], dtype: 'float32', data: Float32Array.of(11) })
    const nan = await client.dot({ a: f64([2], NaN, 1), b: f64([2], 1, Infinity) })
    expect(Number.isNaN(nan.result.data[0])).toBe(true)
    const inf = await client.dot({ a: f64([1], Infinity), b: f64([1], 2) })
    expect(inf.result.data[0]).toBe(Infinity)
  })

  it('a slice of a bigger buffer is sent as its own elements', async () => {
    const buffer = Float64Array.of(99, 1, 2, 3, 99)
    const { result } = await client.dot({ a: { shape: [3], data: buffer.subarray(1, 4) }, b: f64([3], 1, 1, 1) })
    expect([...result.data]).toEqual([6])
  })

  it('linear, conv2d and attention with typed tensors and options', async () => {
    const lin = await client.linear({ input: f64([1, 3], 1, 2, 3), weights: f64([3, 2], 0.1, 0.2, 0.3, 0.4, 0.5, 0.6), bias: f64([2], 0.5, -0.5), activation: 'relu' })
    expect(lin.result.shape).toEqual([1, 2])
    expect([...lin.result.data]).toEqual([2.7, 2.3])
    const conv = await client.conv2d({ input: f64([1, 3, 3], 1, 2, 3, 4, 5, 6, 7, 8, 9), kernel: f64([1, 1, 2, 2], 1, 0, 0, -1), bias: f64([1], 0.5), stride: 1 })
    expect(conv.result.shape).toEqual([1, 2, 2])
    expect([...conv.result.data]).toEqual([-3.5, -3.5, -3.5, -3.5])
    // wire forms are accepted as well: a boolean mask as nested arrays
    const att = await client.attention({ query: f64([1, 2], 1, 0), key: f64([2, 2], 1, 0, 0, 1), value: f64([2, 1], 1, 2), mask: [[true, false]], returnWeights: true })
    expect(att.result.shape).toEqual([1, 1])
    expect([...att.result.data]).toEqual([1])
    expect(att.weights?.shape).toEqual([1, 2])
    expect([...(att.weights?.data ?? [])]).toEqual([1, 0])
  })

  it('every operation route answers its example through the client as the service does', async () => {
    for (const route of OPERATION_ROUTES) {
      const spec = Object.values(OPERATIONS).find(s => `/v1/${s.path ?? s.name}` === route)
      if (spec === undefined) throw new Error(`no operation for ${route}`)
      const reply = await client.call(route, spec.example as never)
      const expected = (await app.inject({ method: 'POST', url: route, payload: { ...spec.example, encoding: 'flat' } })).json()
      const got = tensorsOf(reply)
      const want = tensorsOf(expected)
      expect(Object.keys(got), route).toEqual(Object.keys(want))
      for (const [field, tensor] of Object.entries(want)) {
        expect(got[field].shape, `${route} ${field}`).toEqual(tensor.shape)
        expect(got[field].dtype).toBe(tensor.dtype)
        expect(Array.from(got[field].data as ArrayLike<number>)).toEqual(typeof tensor.data === 'number' ? [tensor.data] : tensor.data)
      }
    }
  })

  it('einsum with typed operands; its backward route gives typed gradients, null where not asked for', async () => {
    const { result } = await client.einsum({ equation: 'ij,jk->ik', operands: [f64([2, 2], 1, 2, 3, 4), f64([2, 2], 5, 6, 7, 8)] })
    expect([...result.data]).toEqual([19, 22, 43, 50])
    const { grads } = await client.einsumBackward({ equation: 'i,i->', operands: [f64([2], 1, 2), f64([2], 3, 4)], gradOutput: 1, wrt: [1] })
    expect(grads.operands[0]).toBeNull()
    expect(grads.operands[1]?.data).toEqual(Float64Array.of(1, 2))
  })

  it('an error reply is a TensorServiceError with status, code, message and the request id', async () => {
    const err = await client.matmul({ a: f64([1, 3], 1, 2, 3), b: f64([2, 2], 1, 2, 3, 4) }, { requestId: 'client-test-1' }).catch(e => e)
    expect(err).toBeInstanceOf(TensorServiceError)
    expect(err).toMatchObject({ status: 400, code: 'SHAPE_MISMATCH', requestId: 'client-test-1' })
    expect(err.message).toContain('a [1,3] and b [2,2]')
    // without one of its own, the service's id
    const other = await client.dot({ a: f64([2], 1, 2), b: f64([3], 1, 2, 3) }).catch(e => e)
    expect(other).toMatchObject({ status: 400, code: 'SHAPE_MISMATCH' })
    expect(other.requestId).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('the README\'s example runs as printed and prints what its comment says', async () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
    const section = readme.slice(readme.indexOf('### TypeScript\n'))
    const program = (/```ts\n([\s\S]*?)```/.exec(section)?.[1] ?? '')
      .replace("from '@tensor-service/client'", `from ${JSON.stringify(new URL('../client/src/index.ts', import.meta.url).href)}`)
      .replace('http://localhost:3000', baseUrl)
    expect(program).toContain('client.matmul(')
    const dir = mkdtempSync(join(tmpdir(), 'client-'))
    try {
      writeFileSync(join(dir, 'example.mts'), program)
      const { stdout } = await promisify(execFile)(new URL('../node_modules/.bin/tsx', import.meta.url).pathname, [join(dir, 'example.mts')], { timeout: 60_000 })
      const [first, second] = stdout.split('\n')
      expect(first).toBe('[ 2, 2 ] float64 Float64Array(4) [ 19, 22, 43, 50 ]')
      expect(second).toMatch(/^400 SHAPE_MISMATCH dot needs a and b of the same shape: .* [0-9a-f-]{36}$/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 70_000)

  it('an API key is sent as a bearer token', async () => {
    const secured = await buildApp({ logLevel: 'silent', workers: 1, apiKeys: ['k-client-0123456789abcdef'] })
    try {
      const baseUrl = await listen(secured)
      const denied = await new TensorClient({ baseUrl }).dot({ a: f64([1], 2), b: f64([1], 3) }).catch(e => e)
      expect(denied).toMatchObject({ status: 401, code: 'UNAUTHORIZED' })
      const { result } = await new TensorClient({ baseUrl, apiKey: 'k-client-0123456789abcdef' }).dot({ a: f64([1], 2), b: f64([1], 3) })
      expect([...result.data]).toEqual([6])
    } finally {
      await secured.close()
    }
  })
})

describe('the client under load: 503 retried after Retry-After, a bounded number of times; AbortSignal', () => {
  let busy: FastifyInstance
  let baseUrl = ''
  const statuses: number[] = []
  const recording: typeof fetch = async (input, init) => {
    const res = await fetch(input, init)
    statuses.push(res.status)
    return res
  }
  const slowMatmul = { a: f64([1, 1], 2), b: f64([1, 1], 3) } // 1 s in the slow worker

  beforeAll(async () => {
    busy = await buildApp({ logLevel: 'silent', workers: 1, maxQueue: 0, inlineMaxFlops: 0, workerFile: SLOW_WORKER })
    baseUrl = await listen(busy)
  })
  afterAll(async () => { await busy.close() })

  /** Starts a request that keeps the one worker busy for 1 s; returns it (in an object: not awaited). */
  async function occupied (): Promise<{ first: Promise<unknown> }> {
    const first = new TensorClient({ baseUrl }).matmul(slowMatmul)
    await waitFor(() => busy.pool.idleThreads === 0, 5000, 'the first request to reach the worker')
    return { first }
  }

  it('with retries left, a 503 is retried after Retry-After and the call succeeds', async () => {
    const { first } = await occupied()
    statuses.length = 0
    const { result } = await new TensorClient({ baseUrl, fetch: recording, maxRetries: 5 }).matmul(slowMatmul)
    expect([...result.data]).toEqual([6])
    expect(statuses[0]).toBe(503)
    expect(statuses.at(-1)).toBe(200)
    expect(statuses.length).toBeLessThanOrEqual(6)
    await first
  })

  it('without retries left, the 503 is thrown as OVERLOADED', async () => {
    const { first } = await occupied()
    statuses.length = 0
    const err = await new TensorClient({ baseUrl, fetch: recording, maxRetries: 0 }).matmul(slowMatmul).catch(e => e)
    expect(err).toBeInstanceOf(TensorServiceError)
    expect(err).toMatchObject({ status: 503, code: 'OVERLOADED' })
    expect(statuses).toEqual([503])
    await first
  })

  it('an aborted signal stops the call, also while it waits to retry', async () => {
    const { first } = await occupied()
    const controller = new AbortController()
    const call = new TensorClient({ baseUrl, maxRetries: 5 }).matmul(slowMatmul, { signal: controller.signal })
    controller.abort(new Error('stopped by the caller'))
    await expect(call).rejects.toThrow('stopped by the caller')
    await first
  })
})
