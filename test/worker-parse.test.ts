/**
 * Large bodies are parsed, validated and decoded in a worker (WORKER_PARSE_MIN_BYTES). That path
 * must answer exactly as the main thread does: the same status and the same body for every valid
 * and every hostile request. Two apps are compared: one that parses every body on the main thread,
 * one that hands every non-empty body to a worker.
 */
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { SCAN_MIN_BYTES, SPAN_MIN_CHARS } from '../src/tensor/json.js'
import { base64Tensor, nested } from './helpers/bodies.js'
import { hostileBody } from './helpers/hostile.js'

const RUNS = 1500
const LIMITS = { maxElements: 100000, maxFlops: 1e9, maxQueue: 1000, workers: 2 }

let onMain: FastifyInstance
let inWorker: FastifyInstance

beforeAll(async () => {
  // both compute on their pools with the same thresholds, so that the kernels (the native engine
  // in the workers) give the same bits whichever thread parsed the body
  onMain = await buildApp({ logLevel: 'silent', ...LIMITS, workerParseMinBytes: 0, splitMinFlops: 1e5 })
  inWorker = await buildApp({ logLevel: 'silent', ...LIMITS, workerParseMinBytes: 1, splitMinFlops: 1e5 })
  await Promise.all([onMain.ready(), inWorker.ready()])
})
afterAll(async () => { await Promise.all([onMain.close(), inWorker.close()]) })

/** Records the tasks the app's pool runs: `request`, or the operation a `run` task names. */
function spyOnPool (app: FastifyInstance): string[] {
  const names: string[] = []
  const run = app.pool.run.bind(app.pool)
  app.pool.run = async (task, options) => {
    // a matmul given the idle workers' threads too is recorded as matmul×threads
    const { threads, operation } = (task ?? {}) as { threads?: number, operation?: string }
    const name = options?.name === 'run' ? operation ?? 'run' : options?.name ?? 'default'
    names.push(name + (threads === undefined ? '' : `×${threads}`))
    return await run(task, options)
  }
  return names
}

async function both (route: string, text: string, contentType = 'application/json'): Promise<Array<{ status: number, body: string }>> {
  const opts = { method: 'POST' as const, url: `/v1/${route}`, payload: text, headers: { 'content-type': contentType, 'x-request-id': 'same-id' } }
  const [a, b] = await Promise.all([onMain.inject(opts), inWorker.inject(opts)])
  return [{ status: a.statusCode, body: a.body }, { status: b.statusCode, body: b.body }]
}

/** Answers identically; returns the status. */
async function same (route: string, text: string, contentType?: string): Promise<number> {
  const [main, worker] = await both(route, text, contentType)
  expect(worker, `${route} ${text.slice(0, 200)}`).toEqual(main)
  return main.status
}

describe('a body parsed in a worker answers as one parsed on the main thread', () => {
  it('valid bodies of every operation and encoding, including a split matmul', async () => {
    const ran = spyOnPool(inWorker)
    const cases: Array<[string, object]> = [
      ['matmul', { a: nested([3, 4], i => i / 3), b: nested([4, 5], i => (i % 7) - 3) }],
      ['matmul', { a: nested([2, 64, 32], i => Math.sin(i)), b: nested([32, 48], i => Math.cos(i)), encoding: 'flat' }],
      ['matmul', { a: base64Tensor([40, 30], 'float32'), b: base64Tensor([30, 20], 'float32'), encoding: 'base64' }],
      ['matmul', { a: [[1, 'NaN'], ['Infinity', 2]], b: [[1, 0], [0, '-Infinity']] }],
      ['dot', { a: [1, 2, 3], b: [4, 5, 6] }],
      ['linear', { input: nested([4, 6], i => i / 7), weights: nested([6, 3], i => 1 - i / 9), bias: [0.5, 0, -0.5], activation: 'gelu', dtype: 'float32' }],
      ['conv2d', { input: nested([1, 2, 6, 6], i => i % 5), kernel: nested([3, 2, 3, 3], i => (i % 3) - 1), padding: 'same', stride: 1 }],
      ['attention', { query: nested([2, 4, 8], i => Math.sin(i)), key: nested([2, 5, 8], i => Math.cos(i)), value: nested([2, 5, 3], i => i / 10), causal: true, returnWeights: true }],
      ['attention', { query: [[1, 0]], key: [[1, 0], [0, 1]], value: [[1, 2], [3, 4]], mask: [[true, false]] }]
    ]
    for (const [route, body] of cases) expect(await same(route, JSON.stringify(body))).toBe(200)
    // every one went through the worker path, the base64 one too, and the largest matmul came
    // back to be computed on both workers' threads
    expect(ran.filter(n => n === 'request')).toHaveLength(cases.length)
    expect(ran).toContain('matmul×2')
  })

  it('invalid JSON, prototype keys, schema failures, malformed tensors, mismatched shapes, limits', async () => {
    // (a leading byte-order mark is accepted by both)
    expect(await same('matmul', '\uFEFF{"a": [[1]], "b": [[2]]}')).toBe(200)
    const cases: Array<[string, string]> = [
      ['matmul', '{"a": [[1,2]], "b": '],
      ['matmul', '{"a": [[NaN, 1]], "b": [[1], [2]]}'],
      ['matmul', '{"a": [["NaN", 1]], "b": [[1], [-Infinity]]}'],
      ['dot', '{"a": "Infinity", "b": Infinity}'],
      ['matmul', '{"a": [[1]], "b": [[2]], "__proto__": {"polluted": 1}}'],
      ['matmul', '{"a": [[1]], "b": [[2]], "constructor": {"prototype": {"polluted": 1}}}'],
      ['matmul', '{"a": [[1]], "b": [[2]], "extra": 1}'],
      ['matmul', '{"a": "3", "b": [[2]]}'],
      ['matmul', '{"a": null, "b": [[2]]}'],
      ['matmul', '{"a": [[1, 2], [3]], "b": [[2]]}'],
      ['matmul', '{"a": [[1, 2]], "b": [[1, 2]]}'],
      ['matmul', '{"a": {"shape": [1000, 1000], "data": "AAAA"}, "b": [[1]]}'],
      ['matmul', '{"a": {"shape": [2], "dtype": "float32", "data": "AAAAAAAAAA=="}, "b": [1, 2]}'],
      ['conv2d', '{"input": [[[1]]], "kernel": [[[[1]]]], "stride": 0}'],
      ['linear', '{"input": [[1]], "weights": [[1]], "activation": "swish"}'],
      ['attention', '{"query": [[1]], "key": [[1]], "value": [[1]], "mask": [[1, true]]}'],
      ['dot', '[]'],
      ['dot', '"a string"']
    ]
    for (const [route, text] of cases) expect(await same(route, text)).toBeGreaterThanOrEqual(400)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it(`${RUNS} hostile bodies: the same answers`, async () => {
    await fc.assert(fc.asyncProperty(hostileBody, async ({ route, text }) => {
      await same(route, text)
    }), { numRuns: RUNS })
  }, 120_000)

  it('large base64 operands (decoded from the body\'s bytes in the worker), valid and malformed, in every dtype', async () => {
    const n = 48 // 48² float32 operands: 12,288 characters of base64
    const tensor = (dtype: string, bytes: number, fill = 3): { shape: number[], dtype: string, data: string } => {
      const raw = Buffer.alloc(n * n * bytes)
      for (let i = 0; i < raw.length; i++) raw[i] = (i * fill) % 251 === 0 ? 0 : ((i * 37) % 61) + (i % bytes === bytes - 1 ? 0x3c : 0)
      return { shape: [n, n], dtype, data: raw.toString('base64') }
    }
    const a = tensor('float32', 4)
    const b = tensor('float32', 4, 5)
    expect(a.data.length).toBeGreaterThan(SPAN_MIN_CHARS)
    const mutate = (data: string): string[] => [
      data.slice(0, 99) + '-' + data.slice(100), // URL-safe alphabet
      data.slice(0, 99) + ' ' + data.slice(100), // whitespace
      data.slice(0, 99) + '\\/' + data.slice(100), // an escape (the JSON text \/)
      data.slice(0, -4), // three bytes short
      data + 'AAAA', // three bytes over
      data.slice(0, -2) + 'B=', // bits past the last byte
      data.slice(0, -1) // not a multiple of 4
    ]
    const bodies: object[] = [
      { a, b, encoding: 'base64' },
      { a: tensor('float64', 8), b: tensor('float64', 8, 7), encoding: 'base64' },
      { a: tensor('float16', 2), b: tensor('bfloat16', 2), encoding: 'base64' },
      { a: { ...a, shape: [n, n + 1] }, b },
      { a: { ...a, dtype: 'int8' }, b },
      { a: { data: a.data, dtype: 'float32' }, b },
      ...mutate(a.data).map(data => ({ a: { ...a, data }, b }))
    ]
    const statuses: number[] = []
    for (const body of bodies) statuses.push(await same('matmul', JSON.stringify(body).replace('\\\\/', '\\/')))
    // (the escaped '/' is base64 once JSON has read it)
    expect(statuses).toEqual([200, 200, 200, 400, 400, 400, 400, 400, 200, 400, 400, 400, 400])
    // base64 in other places than a tensor's data: refused alike
    expect(await same('einsum', JSON.stringify({ equation: a.data, operands: [b] }))).toBe(400)
    expect(await same('matmul', JSON.stringify({ a, b, dtype: a.data }))).toBe(400)
    expect(await same('matmul', JSON.stringify({ a, b, data: a.data }))).toBe(400)
  })

  it('a body of exactly the threshold goes to a worker, one byte less is parsed on the main thread', async () => {
    const text = '{"a": [[1, 2]], "b": [[3], [4]]}'
    const app = await buildApp({ logLevel: 'silent', workers: 1, inlineMaxFlops: 1e12, workerParseMinBytes: text.length })
    try {
      await app.ready()
      const ran = spyOnPool(app)
      const below = await app.inject({ method: 'POST', url: '/v1/matmul', payload: text.replace(' ', ''), headers: { 'content-type': 'application/json' } })
      expect(below.statusCode).toBe(200)
      expect(ran).toEqual([])
      const at = await app.inject({ method: 'POST', url: '/v1/matmul', payload: text, headers: { 'content-type': 'application/json' } })
      expect(at.json()).toEqual({ result: { shape: [1, 1], dtype: 'float64', data: [[11]] } })
      expect(ran).toEqual(['request'])
    } finally {
      await app.close()
    }
  })
})

describe('a numeric body of SCAN_MIN_BYTES or more parsed on the main thread (the WebAssembly row scanner)', () => {
  it('gives the value and the errors of Fastify\'s own parser', async () => {
    const a = nested([48, 48], i => ((i * 7) % 9) / 8 - 0.5)
    const eye = nested([48, 48], i => (i % 49 === 0 ? 1 : 0))
    const text = JSON.stringify({ a, b: eye })
    expect(text.length).toBeGreaterThan(SCAN_MIN_BYTES)
    const post = async (payload: string): Promise<{ statusCode: number, json: () => any }> =>
      await onMain.inject({ method: 'POST', url: '/v1/matmul', payload, headers: { 'content-type': 'application/json' } })
    const ok = await post(text)
    expect(ok.statusCode).toBe(200)
    expect(ok.json().result.data).toEqual(a)
    // the same refusals as for a small body
    const small = (await post('{"a": [[1]], "b": ')).json()
    expect(small.code).toBe('FST_ERR_CTP_INVALID_JSON_BODY')
    for (const broken of [text.slice(0, -1), text.replace('[[', '[[01,'), `${text.slice(0, -1)}, "__proto__": {"x": 1}}`]) {
      expect((await post(broken)).json()).toEqual(small)
    }
  })
})
