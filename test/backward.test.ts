/**
 * The backward routes over HTTP: what the body may hold (gradOutput, wrt, returnResult), the
 * errors the contract names, limits counted on the backward work before computing, replies in
 * every encoding, and work large enough to run in a worker.
 */
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { base64Tensor, expectError, post } from './helpers/bodies.js'

describe('POST /v1/<op>/backward', () => {
  let app: FastifyInstance
  let limited: FastifyInstance

  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    // room for a 40x40x40 matmul (128,000 flops) but not for its gradients (256,000)
    limited = await buildApp({ logLevel: 'silent', workers: 1, maxFlops: 200_000, maxElements: 5000 })
  })

  afterAll(async () => {
    await app?.close()
    await limited?.close()
  })

  const mm = { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]] }

  it('answers {grads} with one gradient per operand, of its shape, and the result when asked', async () => {
    const res = await post(app, '/v1/matmul/backward', { ...mm, gradOutput: [[1, 0], [0, 1]], returnResult: true })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toEqual({
      grads: {
        a: { shape: [2, 2], dtype: 'float64', data: [[5, 7], [6, 8]] },
        b: { shape: [2, 2], dtype: 'float64', data: [[1, 3], [2, 4]] }
      },
      result: { shape: [2, 2], dtype: 'float64', data: [[19, 22], [43, 50]] }
    })
  })

  it('gradOutput takes no part in promotion: float64 gradOutput with float32 operands gives float32 gradients', async () => {
    const f32 = (shape: number[], data: number[]) => ({ shape, dtype: 'float32', data })
    const res = await post(app, '/v1/dot/backward', { a: f32([2], [1, 2]), b: f32([2], [3, 4]), gradOutput: 0.1 })
    expect(res.statusCode, res.body).toBe(200)
    const { grads } = res.json()
    expect(grads.a.dtype).toBe('float32')
    // gradOutput cast to float32 first, then da = g·b in float32 (printed as the shortest float32 decimal)
    expect((grads.a.data as number[]).map(x => Math.fround(x))).toEqual([3, 4].map(b => Math.fround(Math.fround(0.1) * b)))
    expect(grads.b.dtype).toBe('float32')
  })

  it('encodes gradients in the requested encoding (base64 and flat)', async () => {
    const b64 = await post(app, '/v1/matmul/backward', { ...mm, gradOutput: [[1, 0], [0, 1]], encoding: 'base64', wrt: ['a'] })
    expect(b64.statusCode, b64.body).toBe(200)
    const data = Buffer.from(b64.json().grads.a.data as string, 'base64')
    expect(Array.from(new Float64Array(data.buffer, data.byteOffset, 4))).toEqual([5, 7, 6, 8])
    const flat = await post(app, '/v1/matmul/backward', { ...mm, gradOutput: [[1, 0], [0, 1]], encoding: 'flat', wrt: ['b'] })
    expect(flat.json()).toEqual({ grads: { b: { shape: [2, 2], dtype: 'float64', data: [1, 3, 2, 4] } } })
  })

  it('a gradOutput of another shape is SHAPE_MISMATCH naming both shapes', async () => {
    const msg = expectError(await post(app, '/v1/matmul/backward', { ...mm, gradOutput: [[1, 2, 3]] }), 400, 'SHAPE_MISMATCH').message
    expect(msg).toContain('[1,3]')
    expect(msg).toContain('[2,2]')
  })

  it('a missing gradOutput is refused by the schema', async () => {
    const msg = expectError(await post(app, '/v1/matmul/backward', mm), 400, 'FST_ERR_VALIDATION').message
    expect(msg).toContain('gradOutput')
  })

  it('wrt: empty, a mask, an operand the body lacks, an unknown name or a repeated one is INVALID_ARGUMENT', async () => {
    const g = [[1, 0], [0, 1]]
    expect(expectError(await post(app, '/v1/matmul/backward', { ...mm, gradOutput: g, wrt: [] }), 400, 'INVALID_ARGUMENT').message).toContain('empty')
    expect(expectError(await post(app, '/v1/matmul/backward', { ...mm, gradOutput: g, wrt: ['c'] }), 400, 'INVALID_ARGUMENT').message).toContain('"c"')
    expect(expectError(await post(app, '/v1/matmul/backward', { ...mm, gradOutput: g, wrt: ['a', 'a'] }), 400, 'INVALID_ARGUMENT').message).toContain('twice')
    const lin = { input: [[1, 2]], weights: [[1], [2]], gradOutput: [[1]] }
    expect(expectError(await post(app, '/v1/linear/backward', { ...lin, wrt: ['bias'] }), 400, 'INVALID_ARGUMENT').message).toContain('"bias"')
    const att = { query: [[1, 0]], key: [[1, 0]], value: [[1, 2]], mask: [[true]], gradOutput: [[1, 1]] }
    expect(expectError(await post(app, '/v1/attention/backward', { ...att, wrt: ['mask'] }), 400, 'INVALID_ARGUMENT').message).toContain('not differentiable')
    // loss: a target of class indices is not differentiable, a target of probabilities is
    const ce = { kind: 'cross_entropy', input: [[1, 0]], gradOutput: 1 }
    expect(expectError(await post(app, '/v1/loss/backward', { ...ce, target: [0], wrt: ['target'] }), 400, 'INVALID_ARGUMENT').message).toContain('not differentiable')
    const probs = await post(app, '/v1/loss/backward', { ...ce, target: [[0.5, 0.5]], wrt: ['target'] })
    expect(probs.statusCode, probs.body).toBe(200)
    expect(Object.keys(JSON.parse(probs.body).grads)).toEqual(['target'])
  })

  it('pool2d and loss refuse options that do not apply or do not fit, naming them', async () => {
    const x = [[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]
    const cases: Array<[string, object, number, string, string]> = [
      ['/v1/pool2d', { input: x, kind: 'max', kernelSize: 2, padding: 2 }, 400, 'INVALID_ARGUMENT', 'at most half'],
      ['/v1/pool2d', { input: x, kind: 'avg', kernelSize: 2, dilation: 2 }, 400, 'INVALID_ARGUMENT', 'max pooling only'],
      ['/v1/pool2d', { input: x, kind: 'max', kernelSize: 2, countIncludePad: false }, 400, 'INVALID_ARGUMENT', 'avg pooling only'],
      ['/v1/pool2d', { input: x, kind: 'max', kernelSize: 4 }, 400, 'SHAPE_MISMATCH', 'does not fit'],
      ['/v1/pool2d', { input: [1, 2, 3], kind: 'max', kernelSize: 1 }, 400, 'SHAPE_MISMATCH', 'rank 3 or 4'],
      ['/v1/pool2d', { input: x, kind: 'min', kernelSize: 2 }, 400, 'INVALID_ARGUMENT', 'kind'],
      ['/v1/loss', { kind: 'mse', input: [1, 2], target: [1, 2, 3] }, 400, 'SHAPE_MISMATCH', 'same shape'],
      ['/v1/loss', { kind: 'mse', input: [1], target: [1], delta: 2 }, 400, 'INVALID_ARGUMENT', 'huber loss only'],
      ['/v1/loss', { kind: 'huber', input: [1], target: [1], delta: 0 }, 400, 'INVALID_ARGUMENT', 'positive'],
      ['/v1/loss', { kind: 'l1', input: [1], target: [1], labelSmoothing: 0.1 }, 400, 'INVALID_ARGUMENT', 'cross_entropy only'],
      ['/v1/loss', { kind: 'cross_entropy', input: [[1, 0]], target: [0], labelSmoothing: 1.5 }, 400, 'INVALID_ARGUMENT', '[0, 1]'],
      ['/v1/loss', { kind: 'cross_entropy', input: [1, 0], target: [0] }, 400, 'SHAPE_MISMATCH', '[N,C]'],
      ['/v1/loss', { kind: 'cross_entropy', input: [[1, 0]], target: [[0], [1]] }, 400, 'SHAPE_MISMATCH', 'class indices of shape [1]'],
      ['/v1/loss', { kind: 'mse', input: [1], target: [1], reduction: 'avg' }, 400, 'INVALID_ARGUMENT', 'reduction']
    ]
    for (const [route, body, status, code, says] of cases) {
      expect(expectError(await post(app, route, body), status, code).message, JSON.stringify(body)).toContain(says)
    }
  })

  it('loss: a class index that is not an integer in [0, C) is INVALID_ARGUMENT naming it, before any work', async () => {
    for (const target of [[2], [-1], [0.5]]) {
      const body = { kind: 'cross_entropy', input: [[1, 0]], target }
      expect(expectError(await post(app, '/v1/loss', body), 400, 'INVALID_ARGUMENT').message).toContain(`target[0] = ${target[0]}`)
      expect(expectError(await post(app, '/v1/loss/backward', { ...body, gradOutput: 1 }), 400, 'INVALID_ARGUMENT').message).toContain('[0, 2)')
    }
  })

  it('a wrt that is not a list of strings is refused by the schema', async () => {
    expectError(await post(app, '/v1/matmul/backward', { ...mm, gradOutput: [[1, 0], [0, 1]], wrt: 'a' }), 400, 'FST_ERR_VALIDATION')
    expectError(await post(app, '/v1/matmul/backward', { ...mm, gradOutput: [[1, 0], [0, 1]], returnResult: 'yes' }), 400, 'FST_ERR_VALIDATION')
  })

  it('counts the backward work against MAX_FLOPS before computing: the forward fits, its gradients do not', async () => {
    const body = { a: base64Tensor([40, 40]), b: base64Tensor([40, 40]) }
    const fwd = await post(limited, '/v1/matmul', body)
    expect(fwd.statusCode, fwd.body).toBe(200)
    const msg = expectError(await post(limited, '/v1/matmul/backward', { ...body, gradOutput: base64Tensor([40, 40]) }), 413, 'TOO_LARGE').message
    expect(msg).toContain('MAX_FLOPS')
    // one gradient is the forward's work again: it fits
    const one = await post(limited, '/v1/matmul/backward', { ...body, gradOutput: base64Tensor([40, 40]), wrt: ['b'] })
    expect(one.statusCode, one.body).toBe(200)
  })

  it('counts attention\'s per-batch blocks against MAX_ELEMENTS: a query broadcast over many key batches', async () => {
    // query [1,2,20] broadcast to 300 batches: 12,000 query elements per batch before the sum
    const body = { query: base64Tensor([1, 2, 20]), key: base64Tensor([300, 1, 20]), value: base64Tensor([300, 1, 1]), gradOutput: base64Tensor([300, 2, 1]) }
    const msg = expectError(await post(limited, '/v1/attention/backward', body), 413, 'TOO_LARGE').message
    expect(msg).toContain('MAX_ELEMENTS')
  })

  it('every route computes work too large for the main thread in a worker, and agrees with the small-work path', async () => {
    // 48x48x48 products: past INLINE_MAX_FLOPS, so they run in the worker
    const a = base64Tensor([48, 48], 'float64', i => Math.sin(i))
    const b = base64Tensor([48, 48], 'float64', i => Math.cos(i))
    const g = base64Tensor([48, 48], 'float64', i => Math.sin(3 * i))
    const big = await post(app, '/v1/matmul/backward', { a, b, gradOutput: g, encoding: 'flat' })
    expect(big.statusCode, big.body).toBe(200)
    // da = g·bᵀ, element [0][0] computed here
    const av = new Float64Array(Buffer.from(b.data as string, 'base64').buffer.slice(0))
    const gv = new Float64Array(Buffer.from(g.data as string, 'base64').buffer.slice(0))
    let want = 0
    for (let j = 0; j < 48; j++) want += gv[j] * av[j]
    expect(big.json().grads.a.data[0]).toBeCloseTo(want, 10)
    for (const [route, body] of [
      ['linear/backward', { input: a, weights: b, bias: base64Tensor([48]), activation: 'gelu', gradOutput: g }],
      ['conv2d/backward', { input: base64Tensor([1, 3, 24, 24]), kernel: base64Tensor([8, 3, 3, 3]), padding: 'same', gradOutput: base64Tensor([1, 8, 24, 24]) }],
      ['attention/backward', { query: base64Tensor([4, 32, 16]), key: base64Tensor([4, 32, 16]), value: base64Tensor([4, 32, 16]), causal: true, gradOutput: base64Tensor([4, 32, 16]) }],
      ['dot/backward', { a: base64Tensor([300000]), b: base64Tensor([300000]), gradOutput: 2 }]
    ] as const) {
      const res = await post(app, `/v1/${route}`, body)
      expect(res.statusCode, `${route}: ${res.body.slice(0, 300)}`).toBe(200)
      expect(Object.keys(res.json().grads).length).toBeGreaterThan(0)
    }
  })
})
