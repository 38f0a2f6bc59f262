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
import { type Args, BINARY_MIN_BYTES, GraphBuilder, NODE_ROUTES, fromHalf, methodName, OPERATION_ROUTES, type OperationRoute, type Tensor, TENSOR_FIELDS, TENSOR_MAPS, TensorClient, TensorServiceError, toHalf } from '../client/src/index.js'
import { readSafetensors } from '../client/src/safetensors.js'
import { buildApp } from '../src/app.js'
import { OPERATIONS, TENSOR_MAPS as SERVER_TENSOR_MAPS } from '../src/operations/index.js'
import { fromBits16, toBits16 } from '../src/tensor/half.js'
import { listen, waitFor } from './helpers/bodies.js'

const SLOW_WORKER = new URL('./support/slow-worker.mjs', import.meta.url).href

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

  it('the example of docs/clients.md runs as printed and prints what its comment says', async () => {
    const page = readFileSync(new URL('../docs/clients.md', import.meta.url), 'utf8')
    const section = page.slice(page.indexOf('## TypeScript\n'))
    const printed = /```ts\n([\s\S]*?)```/.exec(section)?.[1] ?? ''
    // run from the repository, it imports the client's sources: here from a temporary directory
    expect(printed).toContain("from './client/src/index.ts'")
    const program = printed
      .replace("from './client/src/index.ts'", `from ${JSON.stringify(new URL('../client/src/index.ts', import.meta.url).href)}`)
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

/** Deterministic values in [-1, 1) (a linear congruential generator). */
function values (count: number, seed: number): number[] {
  let s = seed >>> 0
  return Array.from({ length: count }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 31 - 1
  })
}
const f32 = (shape: number[], seed: number): Tensor<Float32Array> => ({ shape, data: Float32Array.from(values(shape.reduce((p, d) => p * d, 1), seed)) })
const r64 = (shape: number[], seed: number): Tensor<Float64Array> => ({ shape, data: Float64Array.from(values(shape.reduce((p, d) => p * d, 1), seed)) })

describe('the client sends big tensors as safetensors files', () => {
  let app: FastifyInstance
  let baseUrl = ''
  /** The requests' content-type, accept and body, and the replies' content-type. */
  const sent: Array<{ type: string | null, accept: string | null, body: unknown, reply: string | null }> = []
  const recording: typeof fetch = async (input, init) => {
    const headers = new Headers(init?.headers)
    const res = await fetch(input, init)
    sent.push({ type: headers.get('content-type'), accept: headers.get('accept'), body: init?.body, reply: res.headers.get('content-type') })
    return res
  }
  let json: TensorClient
  let files: TensorClient

  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    baseUrl = await listen(app)
    json = new TensorClient({ baseUrl, fetch: recording, binaryMinBytes: Infinity })
    files = new TensorClient({ baseUrl, fetch: recording, binaryMinBytes: 0 })
  })
  afterAll(async () => { await app.close() })

  it('from 64 KiB of tensors in a request (binaryMinBytes) a file is sent and asked for; below it base64 JSON', async () => {
    expect(BINARY_MIN_BYTES).toBe(65536)
    const client = new TensorClient({ baseUrl, fetch: recording })
    sent.length = 0
    const big = await client.matmul({ a: r64([64, 64], 1), b: r64([64, 64], 2) }) // 2 × 32 KiB
    const small = await client.matmul({ a: r64([64, 64], 1), b: r64([64, 63], 2) }) // 32 KiB + 31.5 KiB
    expect(sent.map(s => [s.type, s.accept, s.reply?.split(';')[0]])).toEqual([
      ['application/octet-stream', 'application/octet-stream', 'application/octet-stream'],
      ['application/json', 'application/json', 'application/json']
    ])
    expect(sent[0].body).toBeInstanceOf(Uint8Array)
    expect(big.result.shape).toEqual([64, 64])
    expect(big.result.dtype).toBe('float64')
    expect(big.result.data).toBeInstanceOf(Float64Array)
    expect(small.result.shape).toEqual([64, 63])
    const expected = (await app.inject({ method: 'POST', url: '/v1/matmul', payload: { a: { shape: [64, 64], data: [...r64([64, 64], 1).data] }, b: { shape: [64, 64], data: [...r64([64, 64], 2).data] }, encoding: 'flat' } })).json()
    expect([...big.result.data]).toEqual(expected.result.data)
  })

  // every kind of operation: forward, backward, einsum, einsum backward, attention with weights
  const cases: Array<[OperationRoute, Record<string, unknown>]> = [
    ['/v1/matmul', { a: f32([2, 3, 4], 1), b: f32([4, 5], 2) }],
    ['/v1/dot', { a: r64([7], 3), b: r64([7], 4) }],
    ['/v1/linear', { input: f32([3, 4], 5), weights: f32([4, 2], 6), bias: f32([2], 7), activation: 'gelu' }],
    ['/v1/conv2d', { input: r64([1, 2, 5, 5], 8), kernel: r64([3, 2, 2, 2], 9), bias: r64([3], 10), stride: [2, 1], padding: 1 }],
    ['/v1/attention', { query: f32([2, 3, 4], 11), key: f32([2, 5, 4], 12), value: f32([2, 5, 3], 13), mask: f32([3, 5], 14), causal: true, scale: 0.5, returnWeights: true }],
    ['/v1/einsum', { equation: 'bij,bjk->bik', operands: [r64([2, 3, 4], 15), r64([2, 4, 2], 16)] }],
    ['/v1/matmul/backward', { a: f32([3, 4], 17), b: f32([4, 2], 18), gradOutput: f32([3, 2], 19), wrt: ['b'], returnResult: true }],
    ['/v1/dot/backward', { a: r64([5], 20), b: r64([5], 21), gradOutput: r64([], 22) }],
    ['/v1/linear/backward', { input: r64([3, 4], 23), weights: r64([4, 2], 24), bias: r64([2], 25), activation: 'tanh', gradOutput: r64([3, 2], 26) }],
    ['/v1/conv2d/backward', { input: f32([1, 2, 4, 4], 27), kernel: f32([2, 2, 3, 3], 28), padding: 'same', gradOutput: f32([1, 2, 4, 4], 29) }],
    ['/v1/attention/backward', { query: r64([3, 4], 30), key: r64([5, 4], 31), value: r64([5, 2], 32), gradOutput: r64([3, 2], 33), returnResult: true, returnWeights: true }],
    ['/v1/einsum/backward', { equation: 'ij,jk->ik', operands: [r64([2, 3], 34), r64([3, 2], 35)], gradOutput: r64([2, 2], 36), wrt: [1] }],
    ['/v1/einsum/backward', { equation: 'i,i,i->', operands: [f32([3], 37), f32([3], 38), f32([3], 39)], gradOutput: f32([], 40) }]
  ]
  for (const [route, args] of cases) {
    it(`${route}: a file gives the JSON path's typed reply`, async () => {
      sent.length = 0
      const viaJson = await json.call(route, args as never)
      const viaFile = await files.call(route, args as never)
      expect(sent.map(s => s.type)).toEqual(['application/json', 'application/octet-stream'])
      expect(sent[1].reply?.split(';')[0]).toBe('application/octet-stream')
      expect(Object.keys(tensorsOf(viaJson)).length).toBeGreaterThan(0)
      expect(viaFile).toEqual(viaJson)
    })
  }

  it('einsum gradients not asked for are null in the typed reply, as in JSON', async () => {
    const { grads } = await files.einsumBackward({ equation: 'ij,jk->ik', operands: [r64([2, 3], 1), r64([3, 2], 2)], gradOutput: r64([2, 2], 3), wrt: [1] })
    expect(grads.operands).toHaveLength(2)
    expect(grads.operands[0]).toBeNull()
    expect(grads.operands[1]?.shape).toEqual([3, 2])
  })

  it('the file has the tensors by field name and every other field in __metadata__, as the contract says', async () => {
    const fileOf = async (call: () => Promise<unknown>): Promise<ReturnType<typeof readSafetensors>> => {
      sent.length = 0
      await call()
      return readSafetensors(sent[0].body as Uint8Array)
    }
    const lin = await fileOf(async () => await files.linear({ input: r64([1, 2], 1), weights: f32([2, 2], 2), activation: 'gelu', dtype: 'float32' }))
    expect([...lin.tensors.keys()].sort()).toEqual(['input', 'weights'])
    expect(lin.tensors.get('input')).toMatchObject({ dtype: 'F64', shape: [1, 2] })
    expect(lin.tensors.get('weights')).toMatchObject({ dtype: 'F32', shape: [2, 2] })
    expect(lin.metadata).toEqual({ activation: 'gelu', dtype: 'float32' })
    const conv = await fileOf(async () => await files.conv2d({ input: r64([1, 3, 3], 1), kernel: r64([1, 1, 2, 2], 2), stride: [2, 1], padding: 'valid', groups: 1 }))
    expect(conv.metadata).toEqual({ stride: '[2,1]', padding: 'valid', groups: '1' })
    const att = await fileOf(async () => await files.attention({ query: r64([1, 2], 1), key: r64([2, 2], 2), value: r64([2, 1], 3), causal: true, returnWeights: false }))
    expect(att.metadata).toEqual({ causal: 'true', returnWeights: 'false' })
    const ein = await fileOf(async () => await files.einsumBackward({ equation: 'i,i->', operands: [r64([2], 1), r64([2], 2)], gradOutput: r64([], 3), wrt: [1] }))
    expect([...ein.tensors.keys()].sort()).toEqual(['gradOutput', 'operands.0', 'operands.1'])
    expect(ein.metadata).toEqual({ equation: 'i,i->', wrt: '[1]' })
  })

  it('a string that would read as JSON is sent as JSON, so that it stays a string', async () => {
    sent.length = 0
    const err = await files.einsum({ equation: '1', operands: [r64([2], 1)] }).catch(e => e)
    expect(readSafetensors(sent[0].body as Uint8Array).metadata).toEqual({ equation: '"1"' })
    expect(err).toMatchObject({ status: 400, code: 'INVALID_ARGUMENT' })
  })

  it('a request with a tensor field in a wire form (nested arrays) goes as JSON', async () => {
    sent.length = 0
    const att = await files.attention({ query: r64([1, 2], 1), key: r64([2, 2], 2), value: r64([2, 1], 3), mask: [[true, false]], returnWeights: true })
    expect(sent.map(s => s.type)).toEqual(['application/json'])
    expect([...(att.weights?.data ?? [])]).toEqual([1, 0])
  })

  it('errors of a file request are TensorServiceErrors with status, code, message and request id', async () => {
    sent.length = 0
    const err = await files.matmul({ a: r64([1, 3], 1), b: r64([2, 2], 2) }, { requestId: 'client-file-1' }).catch(e => e)
    expect(sent[0].type).toBe('application/octet-stream')
    expect(err).toBeInstanceOf(TensorServiceError)
    expect(err).toMatchObject({ status: 400, code: 'SHAPE_MISMATCH', requestId: 'client-file-1' })
    expect(err.message).toContain('a [1,3] and b [2,2]')
    const einsum = await files.einsum({ equation: 'ij,jk->ikk', operands: [r64([2, 2], 1), r64([2, 2], 2)] }).catch(e => e)
    expect(einsum).toBeInstanceOf(TensorServiceError)
    expect(einsum).toMatchObject({ status: 400, code: 'INVALID_ARGUMENT' })
    const wrt = await files.matmulBackward({ a: r64([2, 2], 1), b: r64([2, 2], 2), gradOutput: r64([2, 2], 3), wrt: ['c'] }).catch(e => e)
    expect(wrt).toMatchObject({ status: 400, code: 'INVALID_ARGUMENT' })
  })

  it('the optimizer: typed tensors by names holding dots, three adam steps from each reply\'s state, JSON and files alike', async () => {
    type Step = Awaited<ReturnType<TensorClient['optimizerStep']>>
    const run = async (client: TensorClient): Promise<Step[]> => {
      let params: Args<'/v1/optimizer/step'>['params'] = { 'layer1.weight': r64([3, 2], 5), 'layer1.bias': r64([2], 6) }
      let state: Args<'/v1/optimizer/step'>['state']
      const steps: Step[] = []
      for (let k = 0; k < 3; k++) {
        const grads = { 'layer1.weight': r64([3, 2], 10 + k), 'layer1.bias': r64([2], 20 + k) }
        const reply = await client.optimizerStep({ optimizer: 'adam', lr: 0.01, params, grads, ...(state === undefined ? {} : { state }) })
        steps.push(reply)
        params = reply.params
        state = reply.state
      }
      return steps
    }
    sent.length = 0
    const viaJson = await run(json)
    const viaFiles = await run(files)
    expect(sent.map(s => s.type)).toEqual([...Array(3).fill('application/json'), ...Array(3).fill('application/octet-stream')])
    expect(viaFiles).toEqual(viaJson)
    expect(viaJson.map(s => s.state.step)).toEqual([1, 2, 3])
    expect(Object.keys(viaJson[2].params).sort()).toEqual(['layer1.bias', 'layer1.weight'])
    expect(viaJson[2].params['layer1.weight'].data).toBeInstanceOf(Float64Array)
    // the same three steps posted as the service's own JSON, without the client
    let body: Record<string, unknown> = { optimizer: 'adam', lr: 0.01, params: { 'layer1.weight': r64([3, 2], 5), 'layer1.bias': r64([2], 6) } }
    const wire = (t: Tensor): object => ({ shape: t.shape, dtype: 'float64', data: [...t.data] })
    body.params = Object.fromEntries(Object.entries(body.params as Record<string, Tensor>).map(([n, t]) => [n, wire(t)]))
    for (let k = 0; k < 3; k++) {
      const grads = { 'layer1.weight': wire(r64([3, 2], 10 + k)), 'layer1.bias': wire(r64([2], 20 + k)) }
      const reply = (await app.inject({ method: 'POST', url: '/v1/optimizer/step', payload: { ...body, grads, encoding: 'flat' } })).json()
      for (const n of ['layer1.weight', 'layer1.bias']) expect([...viaJson[k].params[n].data]).toEqual(reply.params[n].data)
      body = { optimizer: 'adam', lr: 0.01, params: reply.params, state: reply.state }
    }
  })

  it('a graph built with GraphBuilder: typed inputs, one method per forward route, the reply typed; JSON and files alike', async () => {
    const fixture = JSON.parse(readFileSync(new URL('./fixtures/graph.json', import.meta.url), 'utf8')) as { cases: Array<{ body: { inputs: Record<string, { shape: number[], data: Array<number | string> }> } }> }
    const mlp = fixture.cases[0].body
    const typed = (name: string): Tensor<Float64Array> => ({ shape: mlp.inputs[name].shape, data: Float64Array.from(mlp.inputs[name].data.map(Number)) })
    const build = (): GraphBuilder => new GraphBuilder()
    const g = build()
    const [x, W1, b1, W2, b2, y] = ['x', 'W1', 'b1', 'W2', 'b2', 'y'].map(n => g.input(n, typed(n)))
    const h = g.linear({ input: x, weights: W1, bias: b1, activation: 'relu' }, 'h')
    const z = g.linear({ input: h, weights: W2, bias: b2 }, 'z')
    const loss = g.loss({ kind: 'cross_entropy', input: z, target: y }, 'loss')
    expect(() => g.unary({ op: 'neg', input: z }, 'h')).toThrow(/already has a value named "h"/)
    expect(NODE_ROUTES).toContain('/v1/layer_norm')
    expect(NODE_ROUTES).not.toContain('/v1/graph')
    const body = g.body({ outputs: [loss, z], gradients: { of: loss, wrt: [W1, b1, W2, b2] }, update: { optimizer: 'adam', lr: 0.01 } })
    expect(body.nodes.map(n => n.name)).toEqual(['h', 'z', 'loss'])
    const want = (await app.inject({ method: 'POST', url: '/v1/graph', payload: { ...fixture.cases[0].body, encoding: 'flat' } })).json()
    for (const client of [json, files]) {
      sent.length = 0
      const reply = await client.graph(body)
      expect(sent[0].type).toBe(client === json ? 'application/json' : 'application/octet-stream')
      expect(reply.outputs.loss.data).toBeInstanceOf(Float64Array)
      expect([...reply.outputs.loss.data]).toEqual([want.outputs.loss.data].flat())
      for (const n of ['W1', 'b1', 'W2', 'b2']) {
        expect([...(reply.grads?.[n].data ?? [])]).toEqual(want.grads[n].data)
        expect([...(reply.params?.[n].data ?? [])]).toEqual(want.params[n].data)
      }
      expect(reply.state?.step).toBe(1)
    }
    // auto names after the operation; a value's name in any tensor field
    const g2 = build()
    const a = g2.input('a', [1, 2])
    const s = g2.reduce({ op: 'sum', input: g2.binary({ op: 'mul', a, b: 'a' }) })
    expect(g2.body({ outputs: [s] }).nodes.map(n => n.name)).toEqual(['binary0', 'reduce1'])
    expect((await json.graph(g2.body({ outputs: [s] }))).outputs.reduce1.data).toEqual(Float64Array.of(5))
  })

  it('asks for replies as they are (Accept-Encoding: identity) unless compressReplies; compressed ones decode the same', async () => {
    const seen: Array<{ asked: string | null, got: string | null }> = []
    const watching: typeof fetch = async (input, init) => {
      const res = await fetch(input, init)
      seen.push({ asked: new Headers(init?.headers).get('accept-encoding'), got: res.headers.get('content-encoding') })
      return res
    }
    const plain = await new TensorClient({ baseUrl, fetch: watching, binaryMinBytes: 0 }).matmul({ a: r64([64, 64], 1), b: r64([64, 64], 2) })
    const packed = await new TensorClient({ baseUrl, fetch: watching, binaryMinBytes: 0, compressReplies: true }).matmul({ a: r64([64, 64], 1), b: r64([64, 64], 2) })
    expect(seen[0]).toEqual({ asked: 'identity', got: null })
    expect(seen[1].asked).toBeNull() // (fetch's own: gzip, deflate, br)
    expect(['br', 'gzip', 'deflate']).toContain(seen[1].got)
    expect(packed.result.data).toEqual(plain.result.data)
  })

  it('TENSOR_MAPS is the service\'s list of the fields that are objects of named tensors', () => {
    expect([...TENSOR_MAPS]).toEqual([...SERVER_TENSOR_MAPS])
  })

  it('TENSOR_FIELDS names every tensor field of the operation bodies, and nothing else', async () => {
    const doc = (await import('../openapi/openapi.json', { with: { type: 'json' } })).default as unknown as { components: { schemas: Record<string, { properties?: Record<string, { $ref?: string, items?: { $ref?: string } }> }> } }
    const fields = new Set<string>()
    for (const [name, schema] of Object.entries(doc.components.schemas)) {
      if (!name.endsWith('Body')) continue
      for (const [field, p] of Object.entries(schema.properties ?? {})) {
        const ref = p.$ref ?? p.items?.$ref
        if (ref === '#/components/schemas/Tensor' || ref === '#/components/schemas/Mask') fields.add(field)
      }
    }
    expect([...fields].sort()).toEqual([...TENSOR_FIELDS].sort())
  })
})

describe('float16 and bfloat16 in the client: Uint16Array bits with a dtype', () => {
  let app: FastifyInstance
  let json: TensorClient
  let files: TensorClient

  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    const baseUrl = await listen(app)
    json = new TensorClient({ baseUrl, binaryMinBytes: Infinity })
    files = new TensorClient({ baseUrl, binaryMinBytes: 0 })
  })
  afterAll(async () => { await app.close() })

  it('toHalf and fromHalf round as the service does (to nearest, ties to even)', () => {
    const xs = [0, -0, 1, -1, 0.1, 1 / 3, 65504, 65519.99, 65520, 1e6, -1e6, 5.96e-8, 2.98e-8, 2.99e-8, 1e-40, 3.0e38, 3.4e38, NaN, Infinity, -Infinity, 1 + 2 ** -11, 1 + 3 * 2 ** -11, ...values(200, 7).map(v => v * 1000)]
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const bits = toHalf(xs, dtype)
      expect([...bits], dtype).toEqual(xs.map(x => toBits16(x, dtype)))
      expect([...fromHalf(bits, dtype)], dtype).toEqual([...bits].map(h => fromBits16(h, dtype)))
    }
    const every = Uint16Array.from({ length: 65536 }, (_, i) => i)
    for (const dtype of ['float16', 'bfloat16'] as const) {
      expect([...fromHalf(every, dtype)]).toEqual([...every].map(h => fromBits16(h, dtype)))
    }
  })

  it('16-bit tensors go and come back as bits, in base64 JSON and in files alike', async () => {
    const a = { shape: [2, 3], dtype: 'float16' as const, data: toHalf([1, 2, 3, 4, 5, 6.5], 'float16') }
    const b = { shape: [3, 2], dtype: 'float16' as const, data: toHalf([0.5, -1, 0.25, 2, 1e-3, 3], 'float16') }
    const expected = (await app.inject({ method: 'POST', url: '/v1/matmul', payload: { a: { shape: [2, 3], dtype: 'float16', data: [1, 2, 3, 4, 5, 6.5] }, b: { shape: [3, 2], dtype: 'float16', data: [0.5, -1, 0.25, 2, 1e-3, 3] }, encoding: 'flat' } })).json()
    for (const client of [json, files]) {
      const { result } = await client.matmul({ a, b })
      expect(result.dtype).toBe('float16')
      expect(result.shape).toEqual([2, 2])
      expect(result.data).toBeInstanceOf(Uint16Array)
      expect([...result.data]).toEqual([...toHalf(expected.result.data, 'float16')])
      expect([...fromHalf(result.data as Uint16Array, 'float16')].map(x => Math.round(x))).toEqual([1, 12, 3, 26])
      // a 16-bit result posts back as it is
      const back = await client.dot({ a: result, b: result })
      expect(back.result.dtype).toBe('float16')
    }
  })

  it('bfloat16 and float16 promote to float32; a bfloat16 backward gives bfloat16 gradients', async () => {
    const a = { shape: [4], dtype: 'bfloat16' as const, data: toHalf([1, 2, 3, 4], 'bfloat16') }
    const b = { shape: [4], dtype: 'float16' as const, data: toHalf([0.5, 0.5, 0.5, 0.5], 'float16') }
    for (const client of [json, files]) {
      const { result } = await client.dot({ a, b })
      expect(result).toEqual({ shape: [], dtype: 'float32', data: Float32Array.of(5) })
      const { grads } = await client.dotBackward({ a, b: a, gradOutput: { shape: [], dtype: 'bfloat16', data: toHalf([2], 'bfloat16') } })
      expect(grads.a?.dtype).toBe('bfloat16')
      expect([...fromHalf(grads.a?.data as Uint16Array, 'bfloat16')]).toEqual([2, 4, 6, 8])
    }
    const viaJson = await json.matmulBackward({ a: { shape: [2, 2], dtype: 'bfloat16', data: toHalf([1, 2, 3, 4], 'bfloat16') }, b: f32([2, 2], 1), gradOutput: f32([2, 2], 2), returnResult: true })
    const viaFile = await files.matmulBackward({ a: { shape: [2, 2], dtype: 'bfloat16', data: toHalf([1, 2, 3, 4], 'bfloat16') }, b: f32([2, 2], 1), gradOutput: f32([2, 2], 2), returnResult: true })
    expect(viaFile).toEqual(viaJson)
    expect(viaJson.result?.dtype).toBe('float32')
  })

  it('a Uint16Array without a 16-bit dtype, or an array of another dtype than it says, is refused before sending', async () => {
    await expect(json.dot({ a: { shape: [1], data: Uint16Array.of(1) }, b: [1] })).rejects.toThrow(TypeError)
    await expect(files.dot({ a: { shape: [1], data: Uint16Array.of(1), dtype: 'float32' }, b: f64([1], 1) })).rejects.toThrow('Uint16Array data needs dtype "float16" or "bfloat16"')
    await expect(files.dot({ a: { shape: [1], data: Float32Array.of(1), dtype: 'float64' }, b: f64([1], 1) })).rejects.toThrow('Float32Array data has dtype float32, not "float64"')
  })
})
