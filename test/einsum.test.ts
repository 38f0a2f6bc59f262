/**
 * POST /v1/einsum and /v1/einsum/backward through the app: the reference fixtures
 * test/fixtures/einsum.json and backward/einsum.json (numpy.einsum and torch.autograd, made by
 * generate_einsum.py), the
 * equations that are another route's work answered bit for bit as that route answers them, and
 * the errors.
 */
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { expectClose, expectTensor, NULL_LITERAL, TOL } from './helpers/compare.js'
import { rng } from './helpers/einsum.js'
import { type WireEncoding, type WireTensor } from './helpers/wire.js'

interface FixtureCase {
  name: string
  body: Record<string, unknown>
  expected: { result?: WireTensor, grads?: Record<string, WireTensor> }
  rtol?: number
}

function load (name: string): { op: string, generator: string, cases: FixtureCase[] } {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}.json`, import.meta.url), 'utf8'))
}

let app: FastifyInstance
beforeAll(async () => {
  // one worker: bodies over INLINE_MAX_FLOPS run there, on the engine
  app = await buildApp({ logLevel: 'silent', workers: 1 })
})
afterAll(async () => { await app?.close() })

async function post (url: string, payload: object): Promise<{ status: number, json: any, body: string }> {
  const res = await app.inject({ method: 'POST', url, payload })
  return { status: res.statusCode, json: res.json(), body: res.body }
}

const forward = load('einsum')
describe(`einsum reference fixtures (${forward.generator})`, () => {
  it('the file is well formed', () => {
    expect(forward.op).toBe('einsum')
    expect(new Set(forward.cases.map(c => c.name)).size).toBe(forward.cases.length)
  })
  for (const c of forward.cases) {
    it(c.name, async () => {
      const { status, json, body } = await post('/v1/einsum', c.body)
      expect(status, body).toBe(200)
      expect(body).not.toMatch(NULL_LITERAL)
      expect(Object.keys(json)).toEqual(['result'])
      expectTensor(json.result, c.expected.result as WireTensor, (c.body.encoding ?? 'nested') as WireEncoding, c.rtol === undefined ? undefined : { rtol: c.rtol }, 'result')
    })
  }
})

const backward = load('backward/einsum')
describe(`einsum backward reference fixtures (${backward.generator})`, () => {
  it('the file is well formed', () => {
    expect(backward.op).toBe('einsum')
    expect(new Set(backward.cases.map(c => c.name)).size).toBe(backward.cases.length)
  })
  for (const c of backward.cases) {
    it(c.name, async () => {
      const { status, json, body } = await post('/v1/einsum/backward', c.body)
      expect(status, body).toBe(200)
      const n = (c.body.operands as unknown[]).length
      expect(Object.keys(json).sort()).toEqual(c.expected.result === undefined ? ['grads'] : ['grads', 'result'])
      expect(Object.keys(json.grads)).toEqual(['operands'])
      expect(json.grads.operands).toHaveLength(n)
      const encoding = (c.body.encoding ?? 'nested') as WireEncoding
      for (let i = 0; i < n; i++) {
        const want = c.expected.grads?.[String(i)]
        if (want === undefined) expect(json.grads.operands[i], `operand ${i} was not asked for`).toBeNull()
        else expectTensor(json.grads.operands[i], want, encoding, c.rtol === undefined ? undefined : { rtol: c.rtol }, `grads.operands.${i}`)
      }
      if (c.expected.result !== undefined) expectTensor(json.result, c.expected.result, encoding, c.rtol === undefined ? undefined : { rtol: c.rtol }, 'result')
    })
  }
})

/** Values of a dtype as the base64 wire form, and back. */
function tensor (shape: number[], dtype: 'float32' | 'float64', seed: number) {
  const r = rng(seed)
  const n = shape.reduce((x, y) => x * y, 1)
  const a = dtype === 'float32' ? new Float32Array(n) : new Float64Array(n)
  for (let i = 0; i < n; i++) a[i] = r() * 2 - 1
  return { shape, dtype, data: Buffer.from(a.buffer).toString('base64') }
}

describe('einsum answers as the route that does the same work, bit for bit', () => {
  const sizes = { small: [3, 4, 5], large: [64, 96, 80] } as const // (the large ones run in a worker, on the engine)
  for (const dtype of ['float64', 'float32'] as const) {
    for (const [label, [m, k, n]] of Object.entries(sizes)) {
      it(`${label} ${dtype}: ij,jk->ik, bij,bjk->bik, ij,j->i, j,jk->k, i,j->ij (matmul); i,i-> and ij,ij-> (dot)`, async () => {
        const same = async (equation: string, operands: object[], route: string, payload: object) => {
          const e = await post('/v1/einsum', { equation, operands, encoding: 'base64' })
          const r = await post(`/v1/${route}`, { ...payload, encoding: 'base64' })
          expect(e.status, e.body).toBe(200)
          expect(r.status, r.body).toBe(200)
          expect(e.json.result.data, equation).toBe(r.json.result.data)
          return e.json.result
        }
        const A = tensor([m, k], dtype, 1)
        const B = tensor([k, n], dtype, 2)
        await same('ij,jk->ik', [A, B], 'matmul', { a: A, b: B })
        const A3 = tensor([2, m, k], dtype, 3)
        const B3 = tensor([2, k, n], dtype, 4)
        await same('bij,bjk->bik', [A3, B3], 'matmul', { a: A3, b: B3 })
        const x = tensor([k], dtype, 5)
        await same('ij,j->i', [A, x], 'matmul', { a: A, b: x })
        await same('j,jk->k', [x, B], 'matmul', { a: x, b: B })
        const u = tensor([m], dtype, 6)
        const v = tensor([n], dtype, 7)
        const outer = await same('i,j->ij', [u, v], 'matmul', { a: { ...u, shape: [m, 1] }, b: { ...v, shape: [1, n] } })
        expect(outer.shape).toEqual([m, n])
        const y = tensor([k], dtype, 8)
        await same('i,i->', [x, y], 'dot', { a: x, b: y })
        const A2 = tensor([m, k], dtype, 9)
        await same('ij,ij->', [A, A2], 'dot', { a: A, b: A2 })
      })
    }
  }

  it('ij->ji, ii->i, and ...->... copy the values exactly; ii sums the diagonal', async () => {
    const a = [[1.5, -2.25, 3], [4, 5e-300, -6e300]]
    expect((await post('/v1/einsum', { equation: 'ij->ji', operands: [a] })).json.result.data).toEqual([[1.5, 4], [-2.25, 5e-300], [3, -6e300]])
    const sq = [[0.1, 2, 3], [4, 0.2, 6], [7, 8, 0.3]]
    expect((await post('/v1/einsum', { equation: 'ii->i', operands: [sq] })).json.result.data).toEqual([0.1, 0.2, 0.3])
    expect((await post('/v1/einsum', { equation: 'ii', operands: [sq] })).json.result.data).toBe(0.1 + 0.2 + 0.3)
    expect((await post('/v1/einsum', { equation: '...->...', operands: [a] })).json.result.data).toEqual(a)
  })

  it('bhqd,bhkd->bhqk [2,4,64,32] agrees with matmul(q, kᵀ) within float32 rounding', async () => {
    const q = tensor([2, 4, 64, 32], 'float32', 10)
    const kk = tensor([2, 4, 64, 32], 'float32', 11)
    const kv = new Float32Array(Buffer.from(kk.data, 'base64').buffer.slice(0))
    const kt = new Float32Array(kv.length)
    for (let b = 0; b < 8; b++) for (let i = 0; i < 64; i++) for (let d = 0; d < 32; d++) kt[b * 2048 + d * 64 + i] = kv[b * 2048 + i * 32 + d]
    const e = await post('/v1/einsum', { equation: 'bhqd,bhkd->bhqk', operands: [q, kk], encoding: 'flat' })
    const r = await post('/v1/matmul', { a: q, b: { shape: [2, 4, 32, 64], dtype: 'float32', data: Buffer.from(kt.buffer).toString('base64') }, encoding: 'flat' })
    expect(e.json.result.shape).toEqual([2, 4, 64, 64])
    expectClose(e.json.result.data, r.json.result.data, TOL.float32, 'scores')
  })
})

describe('einsum bodies parsed in a worker', () => {
  it('a large numeric body (over WORKER_PARSE_MIN_BYTES) answers as the same body in base64, forward and backward', async () => {
    const q = tensor([2, 48, 40], 'float64', 20)
    const k = tensor([2, 48, 40], 'float64', 21)
    const flat = (t: { shape: number[], data: string }) => ({ shape: t.shape, data: Array.from(new Float64Array(Buffer.from(t.data, 'base64').buffer.slice(0))) })
    const g = tensor([2, 48, 48], 'float64', 22)
    for (const [url, extra] of [['/v1/einsum', {}], ['/v1/einsum/backward', { gradOutput: flat(g), wrt: [1], returnResult: true }]] as const) {
      const body = { equation: 'bqd,bkd->bqk', operands: [flat(q), flat(k)], ...extra }
      expect(JSON.stringify(body).length).toBeGreaterThan(32768)
      const numeric = await post(url, body)
      const base64 = await post(url, { ...body, operands: [q, k], ...('gradOutput' in extra ? { gradOutput: g } : {}) })
      expect(numeric.status, numeric.body).toBe(200)
      expect(numeric.body).toBe(base64.body)
    }
  })
})

describe('einsum errors through HTTP', () => {
  it('a malformed equation is INVALID_ARGUMENT saying where; sizes at odds SHAPE_MISMATCH naming both operands', async () => {
    const bad = await post('/v1/einsum', { equation: 'ij,jk->ikk', operands: [[[1]], [[1]]] })
    expect(bad.status).toBe(400)
    expect(bad.json).toEqual({ statusCode: 400, code: 'INVALID_ARGUMENT', error: 'Bad Request', message: 'equation "ij,jk->ikk", position 9: subscript \'k\' is repeated in the output' })
    const odd = await post('/v1/einsum', { equation: 'ij,jk', operands: [[[1, 2, 3]], [[1], [2]]] })
    expect(odd.status).toBe(400)
    expect(odd.json.code).toBe('SHAPE_MISMATCH')
    expect(odd.json.message).toBe('equation "ij,jk": subscript \'j\' has size 3 in operand 0 [1,3] and size 2 in operand 1 [2,1]; sizes must agree or be 1')
    const count = await post('/v1/einsum', { equation: 'ij,jk', operands: [[[1]]] })
    expect(count.json.code).toBe('INVALID_ARGUMENT')
    expect(count.json.message).toMatch(/subscripts for 2 operands, but 1 operand was given/)
  })

  it('no operands, more than 8, an equation that is not a string or too long: the schema refuses them', async () => {
    for (const body of [
      { equation: '', operands: [] },
      { equation: Array(9).fill('i').join(','), operands: Array(9).fill([1]) },
      { equation: 5, operands: [[1]] },
      { equation: 'i'.repeat(513), operands: [[1]] },
      { equation: 'i', operands: [[1]], extra: true }
    ]) {
      const r = await post('/v1/einsum', body)
      expect(r.status, JSON.stringify(body).slice(0, 80)).toBe(400)
      expect(r.json.code).toBe('FST_ERR_VALIDATION')
    }
  })

  it('a result or the work of the whole plan over the limits is 413 TOO_LARGE before computing', async () => {
    const small = await buildApp({ logLevel: 'silent', workers: 1, maxElements: 1000, maxFlops: 1e5 })
    try {
      const res = await small.inject({ method: 'POST', url: '/v1/einsum', payload: { equation: 'i,j->ij', operands: [{ shape: [100], data: Array(100).fill(1) }, { shape: [100], data: Array(100).fill(1) }] } })
      expect(res.statusCode).toBe(413)
      expect(res.json().code).toBe('TOO_LARGE')
      expect(res.json().message).toMatch(/the result of shape \[100,100\]/)
      const ones = { shape: [30, 30], data: Array(900).fill(1) }
      // 2·30³ = 54000 flops, then 2·2·30³
      const one = await small.inject({ method: 'POST', url: '/v1/einsum', payload: { equation: 'ab,bc->ac', operands: [ones, ones] } })
      expect(one.statusCode).toBe(200)
      const slow = await small.inject({ method: 'POST', url: '/v1/einsum', payload: { equation: 'ab,bc,cd->ad', operands: [ones, ones, ones] } })
      expect(slow.statusCode).toBe(413)
      expect(slow.json().message).toMatch(/MAX_FLOPS/)
    } finally {
      await small.close()
    }
  })

  it('backward: gradOutput of another shape is SHAPE_MISMATCH; wrt empty, out of range or repeated is INVALID_ARGUMENT', async () => {
    const body = { equation: 'ij,jk->ik', operands: [[[1, 2]], [[3], [4]]] }
    const shape = await post('/v1/einsum/backward', { ...body, gradOutput: [1] })
    expect(shape.status).toBe(400)
    expect(shape.json.code).toBe('SHAPE_MISMATCH')
    expect(shape.json.message).toBe('gradOutput [1] must have the shape of the forward result, [1,1]')
    for (const [wrt, message] of [[[], /wrt is empty/], [[2], /operand 2, but the operands are 0 to 1/], [[-1], /operand -1/], [[1, 1], /operand 1 twice/]] as const) {
      const r = await post('/v1/einsum/backward', { ...body, gradOutput: [[1]], wrt })
      expect(r.status).toBe(400)
      expect(r.json.code).toBe('INVALID_ARGUMENT')
      expect(r.json.message).toMatch(message)
    }
    const names = await post('/v1/einsum/backward', { ...body, gradOutput: [[1]], wrt: ['a'] })
    expect(names.json.code).toBe('FST_ERR_VALIDATION')
  })

  it('backward: the reply lists every operand, null where not asked for, and the result after the gradients', async () => {
    // a·b·c = 1·3·5 + 2·4·6 = 63; d/db = 2·a·c = [10, 24]
    const r = await post('/v1/einsum/backward', { equation: 'i,i,i->', operands: [[1, 2], [3, 4], [5, 6]], gradOutput: 2, wrt: [1], returnResult: true })
    expect(r.status, r.body).toBe(200)
    expect(r.body).toBe('{"grads":{"operands":[null,{"shape":[2],"dtype":"float64","data":[10,24]},null]},"result":{"shape":[],"dtype":"float64","data":63}}')
  })
})
