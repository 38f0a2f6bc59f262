/**
 * A client generated from the OpenAPI document by third-party tools, as a user would make one:
 * openapi-typescript's types (client/src/openapi.ts, checked against the document in
 * test/openapi.test.ts) with openapi-fetch, calling every operation of the live app. Results and
 * errors are read through the generated types without a cast (tsc checks this file in lint).
 */
import type { FastifyInstance } from 'fastify'
import createClient from 'openapi-fetch'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type components, OPERATION_ROUTES, type paths } from '../client/src/openapi.js'
import { buildApp } from '../src/app.js'
import { listen } from './helpers/bodies.js'

describe('a client generated with openapi-typescript and openapi-fetch', () => {
  let app: FastifyInstance
  let client: ReturnType<typeof createClient<paths, 'application/json'>>
  const called = new Set<string>()

  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    client = createClient<paths, 'application/json'>({ baseUrl: await listen(app) })
    client.use({ onRequest: ({ request }) => { called.add(new URL(request.url).pathname) } })
  })
  afterAll(async () => { await app.close() })

  it('matmul: nested data in, nested data out', async () => {
    const { data, error } = await client.POST('/v1/matmul', { body: { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]] } })
    expect(error).toBeUndefined()
    expect(data?.result.shape).toEqual([2, 2])
    expect(data?.result.dtype).toBe('float64')
    expect(data?.result.data).toEqual([[19, 22], [43, 50]])
  })

  it('dot: base64 in and out', async () => {
    const { data } = await client.POST('/v1/dot', {
      body: { a: { shape: [2], dtype: 'float32', data: 'AACAPwAAAEA=' }, b: { shape: [2], dtype: 'float32', data: 'AABAQAAAgEA=' }, encoding: 'base64' }
    })
    expect(data?.result).toEqual({ shape: [], dtype: 'float32', data: 'AAAwQQ==' })
  })

  it('linear: an activation from the typed enum, flat data out', async () => {
    const { data } = await client.POST('/v1/linear', {
      body: { input: { shape: [1, 3], data: [1, 2, 3] }, weights: [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], bias: [0.5, -0.5], activation: 'relu', encoding: 'flat' }
    })
    expect(data?.result.data).toEqual([2.7, 2.3])
  })

  it('conv2d: stride, padding and layout options', async () => {
    const { data } = await client.POST('/v1/conv2d', {
      body: { input: [[[1, 2, 3], [4, 5, 6], [7, 8, 9]]], kernel: [[[[1, 0], [0, -1]]]], bias: [0.5], stride: [1, 1], padding: 'valid', layout: 'NCHW' }
    })
    expect(data?.result.shape).toEqual([1, 2, 2])
  })

  it('attention: a boolean mask, the weights read from the reply', async () => {
    const { data } = await client.POST('/v1/attention', {
      body: { query: [[1, 0]], key: [[1, 0], [0, 1]], value: [[1, 2], [3, 4]], mask: [[true, false]], returnWeights: true }
    })
    expect(data?.result.data).toEqual([[1, 2]])
    expect(data?.weights?.shape).toEqual([1, 2])
    expect(data?.weights?.data).toEqual([[1, 0]])
  })

  it('the backward routes: gradients read from grads', async () => {
    const mm = await client.POST('/v1/matmul/backward', { body: { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]], gradOutput: [[1, 0], [0, 1]], returnResult: true } })
    expect(mm.data?.grads.a?.data).toEqual([[5, 7], [6, 8]])
    expect(mm.data?.grads.b?.shape).toEqual([2, 2])
    expect(mm.data?.result?.data).toEqual([[19, 22], [43, 50]])
    const dot = await client.POST('/v1/dot/backward', { body: { a: [1, 2, 3], b: [4, 5, 6], gradOutput: 2, wrt: ['a'] } })
    expect(dot.data?.grads.a?.data).toEqual([8, 10, 12])
    expect(dot.data?.grads.b).toBeUndefined()
    const lin = await client.POST('/v1/linear/backward', { body: { input: [[1, 2]], weights: [[1], [1]], bias: [0], activation: 'relu', gradOutput: [[1]] } })
    expect(lin.data?.grads.bias?.data).toEqual([1])
    const conv = await client.POST('/v1/conv2d/backward', { body: { input: [[[1, 2], [3, 4]]], kernel: [[[[1]]]], gradOutput: [[[1, 1], [1, 1]]], wrt: ['kernel'] } })
    expect(conv.data?.grads.kernel?.data).toEqual([[[[10]]]])
    const att = await client.POST('/v1/attention/backward', { body: { query: [[1, 0]], key: [[1, 0]], value: [[2, 3]], gradOutput: [[1, 1]], wrt: ['value'] } })
    expect(att.data?.grads.value?.data).toEqual([[1, 1]])
  })

  it('einsum and its backward route: gradients by operand index, null where not asked for', async () => {
    const { data } = await client.POST('/v1/einsum', { body: { equation: 'ij,jk->ik', operands: [[[1, 2], [3, 4]], [[5, 6], [7, 8]]] } })
    expect(data?.result.data).toEqual([[19, 22], [43, 50]])
    const back = await client.POST('/v1/einsum/backward', { body: { equation: 'i,i->', operands: [[1, 2], [3, 4]], gradOutput: 1, wrt: [1] } })
    expect(back.data?.grads.operands[0]).toBeNull()
    expect(back.data?.grads.operands[1]?.data).toEqual([1, 2])
  })

  it('the elementwise routes, softmax, reduce, layer_norm, pool2d and loss: op from the enum, broadcast shapes, axes, their gradients', async () => {
    const bin = await client.POST('/v1/binary', { body: { op: 'add', a: [[1, 2], [3, 4]], b: [10, 20] } })
    expect(bin.data?.result.data).toEqual([[11, 22], [13, 24]])
    const binBack = await client.POST('/v1/binary/backward', { body: { op: 'mul', a: [[1, 2], [3, 4]], b: [10, 20], gradOutput: [[1, 1], [1, 1]], wrt: ['b'] } })
    expect(binBack.data?.grads.b?.data).toEqual([4, 6])
    const un = await client.POST('/v1/unary', { body: { op: 'relu', input: [-1, 2] } })
    expect(un.data?.result.data).toEqual([0, 2])
    const unBack = await client.POST('/v1/unary/backward', { body: { op: 'square', input: [3], gradOutput: [1] } })
    expect(unBack.data?.grads.input?.data).toEqual([6])
    const sm = await client.POST('/v1/softmax', { body: { input: [[0, 1], [0, 1]], axis: 0, log: false } })
    expect(sm.data?.result.data).toEqual([[0.5, 0.5], [0.5, 0.5]])
    const smBack = await client.POST('/v1/softmax/backward', { body: { input: [0, 0], gradOutput: [1, 0] } })
    expect(smBack.data?.grads.input?.data).toEqual([0.25, -0.25])
    const red = await client.POST('/v1/reduce', { body: { op: 'mean', input: [[1, 2], [3, 4]], axis: [0, 1], keepdims: true } })
    expect(red.data?.result.data).toEqual([[2.5]])
    const redBack = await client.POST('/v1/reduce/backward', { body: { op: 'sum', input: [[1, 2], [3, 4]], axis: 1, gradOutput: [1, 2] } })
    expect(redBack.data?.grads.input?.data).toEqual([[1, 1], [2, 2]])
    const ln = await client.POST('/v1/layer_norm', { body: { input: [[1, 1]], normalizedShape: [2], bias: [0.5, -0.5] } })
    expect(ln.data?.result.data).toEqual([[0.5, -0.5]])
    const lnBack = await client.POST('/v1/layer_norm/backward', { body: { input: [[1, 3]], normalizedShape: [2], bias: [0, 0], gradOutput: [[1, 2]], wrt: ['bias'] } })
    expect(lnBack.data?.grads.bias?.data).toEqual([1, 2])
    const pool = await client.POST('/v1/pool2d', { body: { input: [[[1, 2, 3], [4, 5, 6]]], kind: 'avg', kernelSize: [1, 3], layout: 'NCHW' } })
    expect(pool.data?.result.data).toEqual([[[2], [5]]])
    const poolBack = await client.POST('/v1/pool2d/backward', { body: { input: [[[1, 5], [3, 2]]], kind: 'max', kernelSize: 2, gradOutput: [[[4]]] } })
    expect(poolBack.data?.grads.input?.data).toEqual([[[0, 4], [0, 0]]])
    const mse = await client.POST('/v1/loss', { body: { kind: 'mse', input: [1, 2], target: [0, 4], reduction: 'sum' } })
    expect(mse.data?.result.data).toEqual(5)
    const ceBack = await client.POST('/v1/loss/backward', { body: { kind: 'cross_entropy', input: [[0, 0]], target: [1], gradOutput: 1 } })
    expect(ceBack.data?.grads.input?.data).toEqual([[0.5, -0.5]])
    expect(ceBack.data?.grads.target).toBeUndefined() // class indices take no gradient
  })

  it('the optimizer: parameters and state by name, posted back as the reply gave them', async () => {
    const first = await client.POST('/v1/optimizer/step', { body: { optimizer: 'sgd', lr: 0.5, momentum: 0.5, params: { 'fc.w': [1, 2] }, grads: { 'fc.w': [2, 2] } } })
    expect(first.data?.params['fc.w'].data).toEqual([0, 1])
    expect(first.data?.state.momentumBuffer?.['fc.w'].data).toEqual([2, 2])
    // (a result tensor is a tensor of the wire, though the types of the two object forms differ)
    type Body = components['schemas']['OptimizerStepBody']
    const second = await client.POST('/v1/optimizer/step', { body: { optimizer: 'sgd', lr: 0.5, momentum: 0.5, params: first.data?.params as Body['params'], grads: { 'fc.w': [2, 0] }, state: first.data?.state as Body['state'] } })
    // buf = 0.5·[2,2] + [2,0] = [3,1]; w = [0,1] − 0.5·[3,1]
    expect(second.data?.state.momentumBuffer?.['fc.w'].data).toEqual([3, 1])
    expect(second.data?.params['fc.w'].data).toEqual([-1.5, 0.5])
  })

  it('a graph: nodes by name, its gradient and an optimizer step', async () => {
    const { data } = await client.POST('/v1/graph', {
      body: {
        inputs: { x: [1, 2, 3] },
        nodes: [{ name: 'sq', operation: 'binary', op: 'mul', a: 'x', b: 'x' }, { name: 'total', operation: 'reduce', op: 'sum', input: 'sq' }],
        gradients: { of: 'total', wrt: ['x'] },
        update: { optimizer: 'sgd', lr: 0.5 }
      }
    })
    expect(data?.outputs.total.data).toEqual(14)
    expect(data?.grads?.x.data).toEqual([2, 4, 6])
    expect(data?.params?.x.data).toEqual([0, 0, 0])
  })

  it('an error is read as the Error component', async () => {
    const { data, error, response } = await client.POST('/v1/matmul', { body: { a: [[1, 2, 3]], b: [[1, 2], [3, 4]] } })
    expect(data).toBeUndefined()
    expect(response.status).toBe(400)
    expect(error?.code).toBe('SHAPE_MISMATCH')
    expect(error?.statusCode).toBe(400)
    expect(error?.message).toContain('a [1,3] and b [2,2]')
  })

  it('the probes', async () => {
    expect((await client.GET('/health')).data?.status).toBe('ok')
    expect((await client.GET('/ready')).data?.status).toBe('ready')
  })

  it('called every operation route of the document', () => {
    expect([...called].filter(p => p.startsWith('/v1/')).sort()).toEqual([...OPERATION_ROUTES].sort())
  })
})
