/**
 * The pool's three paths give the same answers: tiny work inline on the main thread, work in one
 * worker, and one large matmul computed on the threads of every idle worker (the native engine's
 * intra-op threads).
 */
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { expectClose, TOL } from './helpers/compare.js'
import { decodeWireTensor } from './helpers/wire.js'

describe('inline, one worker and split computations agree', () => {
  let inline: FastifyInstance
  let single: FastifyInstance
  let split: FastifyInstance
  beforeAll(async () => {
    inline = await buildApp({ logLevel: 'silent', workers: 1, inlineMaxFlops: 1e12 })
    single = await buildApp({ logLevel: 'silent', workers: 1, inlineMaxFlops: 0, splitMinFlops: 0 })
    split = await buildApp({ logLevel: 'silent', workers: 2, inlineMaxFlops: 0, splitMinFlops: 1 })
    await Promise.all([inline.ready(), single.ready(), split.ready()])
  })
  afterAll(async () => { await Promise.all([inline.close(), single.close(), split.close()]) })

  const post = async (app: FastifyInstance, payload: object) => {
    const res = await app.inject({ method: 'POST', url: '/v1/matmul', payload })
    expect(res.statusCode, res.body).toBe(200)
    return res.json().result
  }

  it('on random (batched, broadcast, 1-D) matmuls in float32 and float64', async () => {
    const dim = fc.integer({ min: 1, max: 9 })
    await fc.assert(fc.asyncProperty(
      dim, dim, dim, fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }), fc.boolean(), fc.boolean(),
      fc.constantFrom('float32', 'float64'), fc.integer({ min: 1, max: 1000 }),
      async (m, k, n, batch, vecA, vecB, dtype, seed) => {
        const aShape = vecA ? [k] : [...batch, m, k]
        const bShape = vecB ? [k] : [k, n]
        const fill = (len: number, s: number) => Array.from({ length: len }, (_, i) => Math.sin(i * 12.9898 + s) * 4)
        const size = (sh: number[]) => sh.reduce((p, d) => p * d, 1)
        const body = {
          a: { shape: aShape, data: fill(size(aShape), seed), dtype },
          b: { shape: bShape, data: fill(size(bShape), seed + 1), dtype },
          encoding: 'flat'
        }
        const [x, y, z] = await Promise.all([post(inline, body), post(single, body), post(split, body)])
        expect(y.shape).toEqual(x.shape)
        expect(z.shape).toEqual(x.shape)
        const tol = TOL[dtype as 'float32' | 'float64']
        expectClose(decodeWireTensor(y), decodeWireTensor(x), tol)
        expectClose(decodeWireTensor(z), decodeWireTensor(x), tol)
      }
    ), { numRuns: 60 })
  })

  it('a matmul on two threads writes every row: [300,200]·[200,100] in base64 float32', async () => {
    const a = Float32Array.from({ length: 300 * 200 }, (_, i) => (i % 7) - 3)
    const b = Float32Array.from({ length: 200 * 100 }, (_, i) => (i % 5) - 2)
    const b64 = (x: Float32Array) => Buffer.from(x.buffer).toString('base64')
    const body = {
      a: { shape: [300, 200], dtype: 'float32', data: b64(a) },
      b: { shape: [200, 100], dtype: 'float32', data: b64(b) },
      encoding: 'base64'
    }
    const [x, z] = await Promise.all([post(single, body), post(split, body)])
    expect(z.shape).toEqual([300, 100])
    expect(z.data).toBe(x.data) // integers: exact in any order of summation
  })
})
