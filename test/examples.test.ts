/** The service's founding examples, end to end through HTTP. */
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'

describe('founding examples', () => {
  let app: FastifyInstance
  beforeAll(async () => { app = await buildApp({ logLevel: 'silent', workers: 1 }) })
  afterAll(async () => { await app.close() })

  const post = async (op: string, payload: object) => {
    const res = await app.inject({ method: 'POST', url: `/v1/${op}`, payload })
    expect(res.statusCode, res.body).toBe(200)
    return res.json()
  }

  it('matmul [[1,2],[3,4]]·[[5,6],[7,8]] = [[19,22],[43,50]]', async () => {
    expect(await post('matmul', { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]] }))
      .toEqual({ result: { shape: [2, 2], dtype: 'float64', data: [[19, 22], [43, 50]] } })
  })

  it('matmul a batch (n,m,p)·(n,p,q) → (n,m,q): n=3, m=1, p=2, q=2', async () => {
    const a = [[[1, 2]], [[3, 4]], [[5, 6]]]
    const b = [[[1, 0], [0, 1]], [[2, 0], [0, 2]], [[0, 1], [1, 0]]]
    expect(await post('matmul', { a, b }))
      .toEqual({ result: { shape: [3, 1, 2], dtype: 'float64', data: [[[1, 2]], [[6, 8]], [[6, 5]]] } })
  })

  it('conv2d: a 2×2×3 RGB patch (NHWC) with a 2×2×3 kernel gives one feature, the Frobenius product', async () => {
    const patch = [[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 12]]]
    const weights = [[[0.5, 1, -1], [0, 2, 1]], [[1, 0, 0], [-1, 1, 0.5]]]
    // sum of products: 0.5+2-3 + 0+10+6 + 7+0+0 + -10+11+6 = 29.5
    const kernel = weights.map(row => row.map(px => px.map(v => [v]))) // [kh,kw,C,K=1]
    expect(await post('conv2d', { input: patch, kernel, layout: 'NHWC' }))
      .toEqual({ result: { shape: [1, 1, 1], dtype: 'float64', data: [[[29.5]]] } })
    expect(await post('dot', { a: patch, b: weights }))
      .toEqual({ result: { shape: [], dtype: 'float64', data: 29.5 } })
  })

  it('Q·Kᵀ is a matrix of scores (one row per query, one column per key), not a scalar', async () => {
    const q = [[1, 0, 1], [0, 1, 0]] // Lq=2, E=3
    const k = [[1, 1, 1], [0, 0, 1], [2, 0, 0], [0, 3, 0]] // Lk=4
    const kT = [0, 1, 2].map(j => k.map(row => row[j]))
    expect(await post('matmul', { a: q, b: kT }))
      .toEqual({ result: { shape: [2, 4], dtype: 'float64', data: [[2, 1, 2, 0], [1, 0, 0, 3]] } })
    const att = await post('attention', { query: q, key: k, value: [[1], [2], [3], [4]], scale: 1, returnWeights: true })
    expect(att.weights.shape).toEqual([2, 4])
    expect(att.result.shape).toEqual([2, 1])
    // row 0: scores [2,1,2,0] → softmax; the weights follow the scores' order
    const w0 = att.weights.data[0] as number[]
    const e = [2, 1, 2, 0].map(Math.exp)
    const s = e.reduce((x, y) => x + y)
    w0.forEach((w, i) => expect(w).toBeCloseTo(e[i] / s, 14))
  })

  it('einsum: the same scores as one equation, qd,kd->qk, without transposing K; and the Swagger UI example', async () => {
    const q = [[1, 0, 1], [0, 1, 0]]
    const k = [[1, 1, 1], [0, 0, 1], [2, 0, 0], [0, 3, 0]]
    expect(await post('einsum', { equation: 'qd,kd->qk', operands: [q, k] }))
      .toEqual({ result: { shape: [2, 4], dtype: 'float64', data: [[2, 1, 2, 0], [1, 0, 0, 3]] } })
    expect(await post('einsum', { equation: 'bqd,bkd->bqk', operands: [[[[1, 0], [0, 1]]], [[[1, 2], [3, 4], [5, 6]]]] }))
      .toEqual({ result: { shape: [1, 2, 3], dtype: 'float64', data: [[[1, 3, 5], [2, 4, 6]]] } })
  })
})
