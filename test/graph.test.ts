/**
 * POST /v1/graph against PyTorch (test/fixtures/graph.json, made by generate_graph.py): an MLP
 * training step, a small CNN, a transformer block, a value used by several nodes, each compared
 * output by output, gradient by gradient, with the parameters and state after the step; then every
 * error a graph can make, named by its node, and the limits, refused before anything runs.
 */
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { OPERATIONS } from '../src/operations/index.js'
import { lastGraphPeakBytes } from '../src/operations/graph.js'
import { decoderFor } from '../src/operations/spec.js'
import { expectError, type Reply } from './helpers/bodies.js'
import { expectTensor, NULL_LITERAL } from './helpers/compare.js'
import { checkFile, type FileTensorSpec, writeFile } from './helpers/safetensors.js'
import type { WireTensor } from './helpers/wire.js'

type Named = Record<string, WireTensor>
interface Expected { outputs: Named, grads?: Named, params?: Named, state?: { step?: number, momentumBuffer?: Named, expAvg?: Named, expAvgSq?: Named } }
interface Case { name: string, body: Record<string, unknown>, expected: Expected, rtol: number }
const fixture = JSON.parse(readFileSync(new URL('./fixtures/graph.json', import.meta.url), 'utf8')) as { op: string, generator: string, cases: Case[] }

let app: FastifyInstance
let inWorker: FastifyInstance
beforeAll(async () => {
  app = await buildApp({ logLevel: 'silent', workers: 1 })
  inWorker = await buildApp({ logLevel: 'silent', workers: 1, workerParseMinBytes: 1 })
})
afterAll(async () => { await Promise.all([app?.close(), inWorker?.close()]) })

async function post (body: object, on = app): Promise<Reply> {
  return await on.inject({ method: 'POST', url: '/v1/graph', payload: body }) as unknown as Reply
}

function expectNamed (got: Named | undefined, want: Named, rtol: number, label: string): void {
  expect(Object.keys(got ?? {}).sort(), label).toEqual(Object.keys(want).sort())
  for (const [name, t] of Object.entries(want)) expectTensor(got?.[name], t, 'nested', { rtol }, `${label}.${name}`)
}

describe(`graphs against PyTorch (${fixture.generator})`, () => {
  it('the fixture file is well formed', () => {
    expect(fixture.op).toBe('graph')
    expect(fixture.cases.length).toBeGreaterThanOrEqual(5)
  })

  for (const c of fixture.cases) {
    it(c.name, async () => {
      for (const on of [app, inWorker]) {
        const res = await post(c.body, on)
        expect(res.statusCode, res.body.slice(0, 400)).toBe(200)
        expect(res.body).not.toMatch(NULL_LITERAL)
        const reply = JSON.parse(res.body) as Expected
        expect(Object.keys(reply).sort()).toEqual(Object.keys(c.expected).sort())
        expectNamed(reply.outputs, c.expected.outputs, c.rtol, 'outputs')
        if (c.expected.grads !== undefined) expectNamed(reply.grads, c.expected.grads, c.rtol, 'grads')
        if (c.expected.params !== undefined) expectNamed(reply.params, c.expected.params, c.rtol, 'params')
        const state = c.expected.state
        if (state !== undefined) {
          expect(Object.keys(reply.state ?? {}).sort()).toEqual(Object.keys(state).sort())
          expect(reply.state?.step).toBe(state.step)
          for (const key of ['momentumBuffer', 'expAvg', 'expAvgSq'] as const) {
            if (state[key] !== undefined) expectNamed(reply.state?.[key], state[key], c.rtol, `state.${key}`)
          }
        }
      }
    })
  }

  it('the step\'s reply posts back: a second step from the first one\'s params and state', async () => {
    const mlp = fixture.cases[0]
    const first = JSON.parse((await post(mlp.body)).body) as Expected
    const body = mlp.body as { inputs: Record<string, unknown>, update: Record<string, unknown> }
    const second = await post({ ...body, inputs: { ...body.inputs, ...first.params }, update: { ...body.update, state: first.state } })
    expect(second.statusCode, second.body.slice(0, 300)).toBe(200)
    const reply = JSON.parse(second.body) as Expected
    expect(reply.state?.step).toBe(2)
    // the loss went down after one Adam step
    expect((reply.outputs.loss.data as number)).toBeLessThan(first.outputs.loss.data as number)
  })
})

describe('intermediates go back to the pool as soon as nothing later needs them', () => {
  it('a chain of 40 nodes holds at most two values at once; the fixtures\' peaks are printed', () => {
    const n = 100_000
    const limits = { maxElements: 1e7, maxFlops: 1e12 }
    const decoder = decoderFor(limits, {})
    const chain = Array.from({ length: 40 }, (_, i) => ({ name: `n${i}`, operation: 'unary', op: i % 2 === 0 ? 'neg' : 'abs', input: i === 0 ? 'x' : `n${i - 1}` }))
    const body = { inputs: { x: { shape: [n], dtype: 'float64', data: Buffer.from(new Float64Array(n).fill(-1).buffer).toString('base64') } }, nodes: chain }
    const prepared = OPERATIONS.graph.prepare(body as never, decoder)
    const out = OPERATIONS.graph.run(prepared.task)
    expect(out[0]).toBe(1)
    // two values of 800 kB (a node's operand and its result, each in a pooled buffer up to a quarter larger), never the forty
    expect(lastGraphPeakBytes()).toBeGreaterThanOrEqual(2 * 8 * n)
    expect(lastGraphPeakBytes()).toBeLessThanOrEqual(2 * 1.25 * 8 * n)
    for (const c of fixture.cases) {
      const p = OPERATIONS.graph.prepare(structuredClone(c.body), decoderFor(limits, {}))
      OPERATIONS.graph.run(p.task)
      console.log(`peak of node values: ${lastGraphPeakBytes()} bytes, ${c.name}`)
    }
  })
})

describe('safetensors bodies and replies', () => {
  it('inputs as inputs.<name>, the rest in __metadata__; the reply outputs.<name>, grads.<name>, params.<name>, the step in __metadata__', async () => {
    const f64 = (shape: number[], values: number[]): FileTensorSpec => ({ dtype: 'F64', shape, values })
    const file = writeFile({ 'inputs.x': f64([1, 2], [1, 2]), 'inputs.w': f64([2, 1], [0.5, -1]), 'inputs.t': f64([1, 1], [1]) }, {
      nodes: JSON.stringify([{ name: 'y', operation: 'matmul', a: 'x', b: 'w' }, { name: 'l', operation: 'loss', kind: 'mse', input: 'y', target: 't' }]),
      outputs: '["l"]',
      gradients: '{"of": "l", "wrt": ["w"]}',
      'update.optimizer': 'adam',
      'update.lr': '0.1'
    })
    for (const on of [app, inWorker]) {
      const res = await on.inject({ method: 'POST', url: '/v1/graph', payload: file, headers: { 'content-type': 'application/octet-stream' } })
      expect(res.statusCode, res.body.slice(0, 300)).toBe(200)
      const read = checkFile(res.rawPayload)
      expect(read.metadata).toEqual({ 'state.step': '1' })
      expect(Object.keys(read.tensors).sort()).toEqual(['grads.w', 'outputs.l', 'params.w', 'state.expAvg.w', 'state.expAvgSq.w'])
      expect(read.tensors['outputs.l'].values).toEqual([6.25])
      expect(read.tensors['grads.w'].values).toEqual([-5, -10])
      expect(read.tensors['params.w'].values.map(v => Number(v.toFixed(6)))).toEqual([0.6, -0.9])
    }
  })
})

describe('safetensors bodies: the rest of the body in __metadata__, tensors included', () => {
  it('gradients.gradOutput and the update\'s state as JSON in __metadata__, or the state as tensors of the file', async () => {
    const f64 = (shape: number[], values: number[]): FileTensorSpec => ({ dtype: 'F64', shape, values })
    const nodes = JSON.stringify([{ name: 'y', operation: 'binary', op: 'mul', a: 'x', b: 'w' }])
    const json = { inputs: { x: [1, 2], w: [3, 4] }, nodes: JSON.parse(nodes), gradients: { of: 'y', wrt: ['w'], gradOutput: [1, -1] }, update: { optimizer: 'sgd', lr: 0.5, momentum: 0.9, state: { momentumBuffer: { w: [1, 1] } } } }
    const want = JSON.parse((await post(json)).body)
    expect(want.grads.w.data).toEqual([1, -2])
    const files = [
      writeFile({ 'inputs.x': f64([2], [1, 2]), 'inputs.w': f64([2], [3, 4]) }, {
        nodes, gradients: JSON.stringify(json.gradients), update: JSON.stringify(json.update)
      }),
      writeFile({ 'inputs.x': f64([2], [1, 2]), 'inputs.w': f64([2], [3, 4]), 'update.state.momentumBuffer.w': f64([2], [1, 1]) }, {
        nodes, gradients: JSON.stringify(json.gradients), 'update.optimizer': 'sgd', 'update.lr': '0.5', 'update.momentum': '0.9'
      })
    ]
    for (const file of files) {
      for (const on of [app, inWorker]) {
        const res = await on.inject({ method: 'POST', url: '/v1/graph', payload: file, headers: { 'content-type': 'application/octet-stream', accept: 'application/json' } })
        expect(res.statusCode, res.body.slice(0, 300)).toBe(200)
        expect(JSON.parse(res.body)).toEqual(want)
      }
    }
  })
})

describe('errors, named by node', () => {
  const x = [[1, 2], [3, 4]]
  const cases: Array<[string, object, number, string, RegExp]> = [
    ['a reference to an unknown name', { inputs: { x }, nodes: [{ name: 'a', operation: 'unary', op: 'neg', input: 'q' }] }, 400, 'INVALID_ARGUMENT', /nodes\[0\] \("a"\): input names "q", which is neither an input nor an earlier node/],
    ['a cycle by name (a reference to a later node)', { inputs: { x }, nodes: [{ name: 'a', operation: 'unary', op: 'neg', input: 'b' }, { name: 'b', operation: 'unary', op: 'neg', input: 'a' }] }, 400, 'INVALID_ARGUMENT', /nodes\[0\] \("a"\): input names "b", a later node \(nodes\[1\]\)/],
    ['a node naming itself', { inputs: { x }, nodes: [{ name: 'a', operation: 'unary', op: 'neg', input: 'a' }] }, 400, 'INVALID_ARGUMENT', /nodes\[0\] \("a"\): input names "a"/],
    ['a duplicate name', { inputs: { x }, nodes: [{ name: 'a', operation: 'unary', op: 'neg', input: 'x' }, { name: 'a', operation: 'unary', op: 'abs', input: 'x' }] }, 400, 'INVALID_ARGUMENT', /nodes\[1\] \("a"\): the name is already nodes\[0\]/],
    ['a node named as an input', { inputs: { x }, nodes: [{ name: 'x', operation: 'unary', op: 'neg', input: 'x' }] }, 400, 'INVALID_ARGUMENT', /the name is already an input/],
    ['an unknown operation', { inputs: { x }, nodes: [{ name: 'a', operation: 'graph', input: 'x' }] }, 400, 'INVALID_ARGUMENT', /nodes\[0\] \("a"\): operation must be one of matmul, .*loss; got "graph"/],
    ['a backward route as an operation', { inputs: { x }, nodes: [{ name: 'a', operation: 'matmul/backward', a: 'x', b: 'x' }] }, 400, 'INVALID_ARGUMENT', /operation must be one of/],
    ['a bad field', { inputs: { x }, nodes: [{ name: 'a', operation: 'matmul', a: 'x', b: 'x', activation: 'relu' }] }, 400, 'INVALID_ARGUMENT', /nodes\[0\] \("a"\) has an unknown property "activation"/],
    ['a tensor inline instead of a name', { inputs: { x }, nodes: [{ name: 'a', operation: 'matmul', a: 'x', b: [[1]] }] }, 400, 'INVALID_ARGUMENT', /nodes\[0\] \("a"\)\/b must be string/],
    ['an option out of range', { inputs: { x }, nodes: [{ name: 'a', operation: 'softmax', input: 'x', axis: 5 }] }, 400, 'INVALID_ARGUMENT', /nodes\[0\] \("a"\): axis/],
    ['shapes that do not go together', { inputs: { x, y: [1, 2, 3] }, nodes: [{ name: 'a', operation: 'matmul', a: 'x', b: 'y' }] }, 400, 'SHAPE_MISMATCH', /nodes\[0\] \("a"\): a \[2,2\] and b \[3\]/],
    ['a name reaching the prototype', { inputs: { x }, nodes: [{ name: 'constructor', operation: 'unary', op: 'neg', input: 'x' }] }, 400, 'INVALID_ARGUMENT', /"constructor" may not be a name/],
    ['an input named prototype', { inputs: { prototype: x }, nodes: [{ name: 'a', operation: 'unary', op: 'neg', input: 'prototype' }] }, 400, 'INVALID_ARGUMENT', /"prototype" may not be a name/],
    ['a name with a dot', { inputs: { x }, nodes: [{ name: 'a.b', operation: 'unary', op: 'neg', input: 'x' }] }, 400, 'FST_ERR_VALIDATION', /name/],
    ['an unknown output', { inputs: { x }, nodes: [{ name: 'a', operation: 'unary', op: 'neg', input: 'x' }], outputs: ['b'] }, 400, 'INVALID_ARGUMENT', /outputs names "b"/],
    ['gradients of an input', { inputs: { x }, nodes: [{ name: 'a', operation: 'unary', op: 'neg', input: 'x' }], gradients: { of: 'x', wrt: ['x'] } }, 400, 'INVALID_ARGUMENT', /gradients.of names "x", which is not a node/],
    ['gradients with respect to a node', { inputs: { x }, nodes: [{ name: 'a', operation: 'unary', op: 'neg', input: 'x' }], gradients: { of: 'a', wrt: ['a'], gradOutput: x } }, 400, 'INVALID_ARGUMENT', /gradients.wrt names "a", which is not an input/],
    ['no gradOutput for a node of rank 2', { inputs: { x }, nodes: [{ name: 'a', operation: 'unary', op: 'neg', input: 'x' }], gradients: { of: 'a', wrt: ['x'] } }, 400, 'INVALID_ARGUMENT', /gradOutput is needed: node "a" has shape \[2,2\]/],
    ['a gradOutput of another shape', { inputs: { x }, nodes: [{ name: 'a', operation: 'unary', op: 'neg', input: 'x' }], gradients: { of: 'a', wrt: ['x'], gradOutput: [1, 2] } }, 400, 'SHAPE_MISMATCH', /gradients.gradOutput \[2\] must have the shape of node "a", \[2,2\]/],
    ['an update without gradients', { inputs: { x }, nodes: [{ name: 'a', operation: 'unary', op: 'neg', input: 'x' }], update: { optimizer: 'sgd', lr: 1 } }, 400, 'INVALID_ARGUMENT', /update needs gradients/],
    ['an update with a bad option', { inputs: { x }, nodes: [{ name: 's', operation: 'reduce', op: 'sum', input: 'x' }], gradients: { of: 's', wrt: ['x'] }, update: { optimizer: 'sgd', lr: -1 } }, 400, 'INVALID_ARGUMENT', /update: lr must be at least 0/],
    ['a class index out of range from an input', { inputs: { z: [[1, 2]], y: [5] }, nodes: [{ name: 'l', operation: 'loss', kind: 'cross_entropy', input: 'z', target: 'y' }] }, 400, 'INVALID_ARGUMENT', /nodes\[0\] \("l"\)/],
    ['a boolean mask as an output', { inputs: { q: [[1, 0], [0, 1]], m: [[true, false], [true, true]] }, nodes: [{ name: 'a', operation: 'attention', query: 'q', key: 'q', value: 'q', mask: 'm' }], outputs: ['a', 'm'] }, 400, 'INVALID_ARGUMENT', /outputs names "m", a boolean mask/],
    ['a gradient with respect to a boolean mask', { inputs: { q: [[1, 0], [0, 1]], m: [[true, false], [true, true]] }, nodes: [{ name: 'a', operation: 'attention', query: 'q', key: 'q', value: 'q', mask: 'm' }], gradients: { of: 'a', wrt: ['m'], gradOutput: [[1, 1], [1, 1]] } }, 400, 'INVALID_ARGUMENT', /gradients.wrt names "m", a boolean mask/],
    ['a boolean mask as a tensor', { inputs: { q: [[1, 0], [0, 1]], m: [[true, false], [true, true]] }, nodes: [{ name: 'a', operation: 'attention', query: 'q', key: 'q', value: 'q', mask: 'm' }, { name: 'b', operation: 'unary', op: 'neg', input: 'm' }] }, 400, 'INVALID_ARGUMENT', /nodes\[1\] \("b"\): a boolean tensor may only be an attention mask/],
    ['a gradient through a mask', { inputs: { q: [[1, 0], [0, 1]], m: [[0, 1], [0, 0]] }, nodes: [{ name: 'a', operation: 'attention', query: 'q', key: 'q', value: 'q', mask: 'm' }, { name: 's', operation: 'reduce', op: 'sum', input: 'a' }], gradients: { of: 's', wrt: ['m'] } }, 400, 'INVALID_ARGUMENT', /nodes\[0\] \("a"\): wrt names "mask"/]
  ]
  for (const [what, body, status, code, message] of cases) {
    it(`${what}: ${status} ${code}`, async () => {
      for (const on of [app, inWorker]) expect(expectError(await post(body, on), status, code).message).toMatch(message)
    })
  }

  it('__proto__ as a name is refused by the JSON parser, and nothing is polluted', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/graph', headers: { 'content-type': 'application/json' }, payload: '{"inputs":{"__proto__":[1]},"nodes":[{"name":"a","operation":"unary","op":"neg","input":"__proto__"}]}' })
    expectError(res as unknown as Reply, 400, ['FST_ERR_CTP_INVALID_JSON_BODY', 'INVALID_ARGUMENT', 'FST_ERR_VALIDATION'])
    expect(({} as Record<string, unknown>).a).toBeUndefined()
  })
})

describe('limits, refused before anything runs', () => {
  it('more nodes than MAX_GRAPH_NODES is 413; 10,000 nodes too; a deep chain within it runs', async () => {
    const chain = (n: number): object[] => Array.from({ length: n }, (_, i) => ({ name: `n${i}`, operation: 'unary', op: 'neg', input: i === 0 ? 'x' : `n${i - 1}` }))
    expect(expectError(await post({ inputs: { x: [1] }, nodes: chain(65) }), 413, 'TOO_LARGE').message).toMatch(/65 nodes, more than 64 \(MAX_GRAPH_NODES\)/)
    expect(expectError(await post({ inputs: { x: [1] }, nodes: chain(10000) }), 413, 'TOO_LARGE').message).toMatch(/10000 nodes/)
    const deep = await post({ inputs: { x: [1, -2] }, nodes: chain(64), gradients: { of: 'n63', wrt: ['x'], gradOutput: [1, 1] } })
    expect(deep.statusCode, deep.body).toBe(200)
    expect(JSON.parse(deep.body)).toEqual({
      outputs: { n63: { shape: [2], dtype: 'float64', data: [1, -2] } },
      grads: { x: { shape: [2], dtype: 'float64', data: [1, 1] } }
    })
  })

  it('a huge broadcast intermediate is 413 naming its node, before anything is computed', async () => {
    const small = await buildApp({ logLevel: 'silent', workers: 1, maxElements: 1_000_000 })
    try {
      const res = await small.inject({
        method: 'POST',
        url: '/v1/graph',
        payload: { inputs: { a: { shape: [2000, 1], dtype: 'float32', data: Buffer.alloc(8000).toString('base64') }, b: { shape: [1, 2000], dtype: 'float32', data: Buffer.alloc(8000).toString('base64') } }, nodes: [{ name: 'big', operation: 'binary', op: 'add', a: 'a', b: 'b' }] }
      })
      expect(expectError(res as unknown as Reply, 413, 'TOO_LARGE').message).toMatch(/nodes\[0\] \("big"\): the result of shape \[2000,2000\]/)
    } finally {
      await small.close()
    }
  })

  it('the whole work (forward, backward, update) counts against MAX_FLOPS', async () => {
    const small = await buildApp({ logLevel: 'silent', workers: 1, maxFlops: 150 })
    try {
      const v = Array.from({ length: 10 }, (_, i) => i)
      const body = { inputs: { x: v }, nodes: [{ name: 'a', operation: 'binary', op: 'mul', a: 'x', b: 'x' }, { name: 's', operation: 'reduce', op: 'sum', input: 'a' }] }
      expect((await small.inject({ method: 'POST', url: '/v1/graph', payload: body })).statusCode).toBe(200)
      const res = await small.inject({ method: 'POST', url: '/v1/graph', payload: { ...body, gradients: { of: 's', wrt: ['x'] }, update: { optimizer: 'adam', lr: 1 } } })
      expect(expectError(res as unknown as Reply, 413, 'TOO_LARGE').message).toMatch(/this graph \(forward, gradients and update\)/)
    } finally {
      await small.close()
    }
  })
})
