/**
 * POST /v1/optimizer/step against torch.optim: each fixture case (test/fixtures/optimizer.json, made
 * by generate_optimizer.py) is ten steps, each posted with the parameters and state of the
 * service's own previous reply and compared, every parameter and state tensor, with torch's after
 * the same step. Then the same chain in safetensors bodies and replies (names holding dots, the step
 * count in __metadata__), and every error the contract names.
 */
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { expectError, type Reply } from './helpers/bodies.js'
import { expectTensor, NULL_LITERAL } from './helpers/compare.js'
import { checkFile, type FileTensorSpec, writeFile } from './helpers/safetensors.js'
import type { WireTensor } from './helpers/wire.js'

type Named = Record<string, WireTensor>
interface Step { params: Named, state: { step?: number, momentumBuffer?: Named, expAvg?: Named, expAvgSq?: Named } }
interface Case { name: string, body: Record<string, unknown> & { params: Named }, grads: Named[], expected: Step[], rtol: number }
const fixture = JSON.parse(readFileSync(new URL('./fixtures/optimizer.json', import.meta.url), 'utf8')) as { op: string, generator: string, cases: Case[] }

let app: FastifyInstance
let inWorker: FastifyInstance
beforeAll(async () => {
  app = await buildApp({ logLevel: 'silent', workers: 1 })
  inWorker = await buildApp({ logLevel: 'silent', workers: 1, workerParseMinBytes: 1 })
})
afterAll(async () => { await Promise.all([app?.close(), inWorker?.close()]) })

async function step (body: object, on = app): Promise<Reply> {
  return await on.inject({ method: 'POST', url: '/v1/optimizer/step', payload: body }) as unknown as Reply
}

function expectStep (got: Step, want: Step, rtol: number, label: string, encoding: 'nested' | 'flat' = 'nested'): void {
  expect(Object.keys(got.params).sort(), `${label} params`).toEqual(Object.keys(want.params).sort())
  for (const [name, t] of Object.entries(want.params)) expectTensor(got.params[name], t, encoding, { rtol }, `${label} params[${name}]`)
  expect(Object.keys(got.state).sort(), `${label} state`).toEqual(Object.keys(want.state).sort())
  expect(got.state.step, `${label} state.step`).toBe(want.state.step)
  for (const key of ['momentumBuffer', 'expAvg', 'expAvgSq'] as const) {
    const w = want.state[key]
    if (w === undefined) continue
    expect(Object.keys(got.state[key] ?? {}).sort(), `${label} state.${key}`).toEqual(Object.keys(w).sort())
    for (const [name, t] of Object.entries(w)) expectTensor(got.state[key]?.[name], t, encoding, { rtol }, `${label} state.${key}[${name}]`)
  }
}

describe(`ten steps against torch.optim (${fixture.generator})`, () => {
  it('the fixture file is well formed', () => {
    expect(fixture.op).toBe('optimizer/step')
    expect(fixture.cases.length).toBeGreaterThan(10)
    for (const c of fixture.cases) {
      expect(c.grads).toHaveLength(10)
      expect(c.expected).toHaveLength(10)
    }
  })

  for (const c of fixture.cases) {
    it(c.name, async () => {
      const { params: first, ...options } = c.body
      let params: Named = first
      let state: Step['state'] | undefined
      for (let k = 0; k < 10; k++) {
        const body = { ...options, params, grads: c.grads[k], ...(state === undefined ? {} : { state }) }
        const res = await step(body, k % 2 === 0 ? app : inWorker)
        expect(res.statusCode, res.body.slice(0, 300)).toBe(200)
        expect(res.body, 'reply contains null').not.toMatch(NULL_LITERAL)
        const reply = JSON.parse(res.body) as Step
        expect(Object.keys(reply).sort()).toEqual(['params', 'state'])
        expectStep(reply, c.expected[k], c.rtol, `step ${k + 1}`)
        params = reply.params
        state = reply.state
      }
    })
  }
})

describe('safetensors bodies and replies', () => {
  const names = ['layer1.weight', 'layer1.bias', 'scale']
  const adam = fixture.cases.find(c => c.name === 'adam, defaults') as Case

  /** A fixture tensor (float64, flat data) as a file tensor. */
  const fileTensor = (t: WireTensor): FileTensorSpec => ({ dtype: 'F64', shape: t.shape, values: (t.data as Array<number | string>).map(Number) })

  it('ten adam steps: params.<name> with dots, the step count in __metadata__ both ways, the same values as torch', async () => {
    let params: Record<string, FileTensorSpec> = Object.fromEntries(names.map(n => [n, fileTensor(adam.body.params[n])]))
    let state: { step: string, expAvg: Record<string, FileTensorSpec>, expAvgSq: Record<string, FileTensorSpec> } | undefined
    for (let k = 0; k < 10; k++) {
      const tensors: Record<string, FileTensorSpec> = {}
      for (const n of names) {
        tensors[`params.${n}`] = params[n]
        tensors[`grads.${n}`] = fileTensor(adam.grads[k][n])
        if (state !== undefined) {
          tensors[`state.expAvg.${n}`] = state.expAvg[n]
          tensors[`state.expAvgSq.${n}`] = state.expAvgSq[n]
        }
      }
      const metadata: Record<string, string> = { optimizer: 'adam', lr: '0.001', ...(state === undefined ? {} : { 'state.step': state.step }) }
      const res = await (k % 2 === 0 ? app : inWorker).inject({
        method: 'POST',
        url: '/v1/optimizer/step',
        payload: writeFile(tensors, metadata),
        headers: { 'content-type': 'application/octet-stream' }
      })
      expect(res.statusCode, res.body.slice(0, 300)).toBe(200)
      expect(res.headers['content-type']).toBe('application/octet-stream')
      const file = checkFile(res.rawPayload)
      expect(file.metadata).toEqual({ 'state.step': String(k + 1) })
      expect(Object.keys(file.tensors).sort()).toEqual(names.flatMap(n => [`params.${n}`, `state.expAvg.${n}`, `state.expAvgSq.${n}`]).sort())
      const asWire = (prefix: string): Named => Object.fromEntries(names.map(n => {
        const t = file.tensors[`${prefix}.${n}`]
        return [n, { shape: t.shape, dtype: 'float64', data: t.values }]
      }))
      expectStep({ params: asWire('params'), state: { step: k + 1, expAvg: asWire('state.expAvg'), expAvgSq: asWire('state.expAvgSq') } }, adam.expected[k], adam.rtol, `step ${k + 1}`, 'flat')
      const spec = (prefix: string): Record<string, FileTensorSpec> => Object.fromEntries(names.map(n => [n, { dtype: 'F64', shape: file.tensors[`${prefix}.${n}`].shape, values: file.tensors[`${prefix}.${n}`].values }]))
      params = spec('params')
      state = { step: String(k + 1), expAvg: spec('state.expAvg'), expAvgSq: spec('state.expAvgSq') }
    }
  })

  it('a JSON reply to a file body nests the names whole: {"params": {"layer1.weight": …}}; sgd without momentum has no state', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/optimizer/step',
      payload: writeFile({ 'params.a.b': { dtype: 'F32', shape: [2], values: [1, 2] }, 'grads.a.b': { dtype: 'F32', shape: [2], values: [10, -10] } }, { optimizer: 'sgd', lr: '0.5' }),
      headers: { 'content-type': 'application/octet-stream', accept: 'application/json' }
    })
    expect(res.statusCode, res.body).toBe(200)
    expect(JSON.parse(res.body)).toEqual({ params: { 'a.b': { shape: [2], dtype: 'float32', data: [-4, 7] } }, state: {} })
    const file = await app.inject({
      method: 'POST',
      url: '/v1/optimizer/step',
      payload: writeFile({ 'params.a.b': { dtype: 'F32', shape: [2], values: [1, 2] }, 'grads.a.b': { dtype: 'F32', shape: [2], values: [10, -10] } }, { optimizer: 'sgd', lr: '0.5' }),
      headers: { 'content-type': 'application/octet-stream' }
    })
    const read = checkFile(file.rawPayload)
    expect(read.metadata).toBeUndefined()
    expect(read.tensors).toEqual({ 'params.a.b': { dtype: 'F32', shape: [2], values: [-4, 7] } })
  })

  it('a file that gives one place twice, or a field named __proto__, is a 400', async () => {
    const t = { dtype: 'F32' as const, shape: [1], values: [1] }
    const cases: Array<[Record<string, FileTensorSpec>, Record<string, string>, RegExp]> = [
      [{ 'params.w': t, 'grads.w': t }, { optimizer: 'sgd', lr: '1', 'params.w': '[1]' }, /twice/],
      [{ 'params.w': t, 'grads.w': t, 'state.expAvg.w': t }, { optimizer: 'adam', lr: '1', state: '{"expAvg": 1}' }, /twice/],
      [{ 'params.__proto__': t, 'grads.__proto__': t }, { optimizer: 'sgd', lr: '1' }, /__proto__/]
    ]
    for (const [tensors, metadata, message] of cases) {
      const res = await app.inject({ method: 'POST', url: '/v1/optimizer/step', payload: writeFile(tensors, metadata), headers: { 'content-type': 'application/octet-stream' } })
      expect(expectError(res, 400, 'INVALID_TENSOR').message).toMatch(message)
    }
  })
})

describe('errors', () => {
  const ok = { optimizer: 'adam', lr: 0.1, params: { w: [1, 2], b: 3 }, grads: { w: [0.1, 0.2], b: 0.3 } }
  const cases: Array<[string, object, number, string, RegExp]> = [
    ['a gradient missing', { ...ok, grads: { w: [0.1, 0.2] } }, 400, 'INVALID_ARGUMENT', /grads has no tensor for parameter "b"/],
    ['a gradient of no parameter', { ...ok, grads: { ...ok.grads, c: 1 } }, 400, 'INVALID_ARGUMENT', /grads names "c", which is not in params/],
    ['a gradient of another shape', { ...ok, grads: { w: [[0.1, 0.2]], b: 0.3 } }, 400, 'SHAPE_MISMATCH', /grads\["w"\] \[1,2\] must have the shape of params\["w"\], \[2\]/],
    ['a state tensor of another shape', { ...ok, state: { step: 1, expAvg: { w: [1, 2], b: [3] }, expAvgSq: { w: [1, 2], b: 3 } } }, 400, 'SHAPE_MISMATCH', /state\.expAvg\["b"\] \[1\]/],
    ['a state name not in params', { ...ok, state: { step: 1, expAvg: { w: [1, 2], b: 3, c: 1 }, expAvgSq: { w: [1, 2], b: 3 } } }, 400, 'INVALID_ARGUMENT', /state\.expAvg names "c"/],
    ['a state missing a name', { ...ok, state: { step: 1, expAvg: { w: [1, 2] }, expAvgSq: { w: [1, 2], b: 3 } } }, 400, 'INVALID_ARGUMENT', /state\.expAvg has no tensor for parameter "b"/],
    ['part of adam\'s state', { ...ok, state: { step: 2 } }, 400, 'INVALID_ARGUMENT', /state has step but not expAvg/],
    ['sgd\'s state given to adam', { ...ok, state: { momentumBuffer: { w: [1, 2], b: 3 } } }, 400, 'INVALID_ARGUMENT', /state\.momentumBuffer is not state of this step/],
    ['state given to sgd without momentum', { ...ok, optimizer: 'sgd', state: { momentumBuffer: { w: [1, 2], b: 3 } } }, 400, 'INVALID_ARGUMENT', /sgd without momentum keeps no state/],
    ['adam\'s options given to sgd', { ...ok, optimizer: 'sgd', betas: [0.9, 0.9] }, 400, 'INVALID_ARGUMENT', /betas is not an option of sgd/],
    ['sgd\'s options given to adamw', { ...ok, optimizer: 'adamw', momentum: 0.9, nesterov: true }, 400, 'INVALID_ARGUMENT', /momentum and nesterov are not an option of adamw|momentum and nesterov are not/],
    ['an unknown optimizer', { ...ok, optimizer: 'rmsprop' }, 400, 'INVALID_ARGUMENT', /optimizer must be one of sgd, adam, adamw/],
    ['a negative learning rate', { ...ok, lr: -1 }, 400, 'INVALID_ARGUMENT', /lr must be at least 0/],
    ['a negative weight decay', { ...ok, weightDecay: -0.1 }, 400, 'INVALID_ARGUMENT', /weightDecay must be at least 0/],
    ['a negative momentum', { ...ok, optimizer: 'sgd', momentum: -0.5 }, 400, 'INVALID_ARGUMENT', /momentum must be at least 0/],
    ['a beta of 1', { ...ok, betas: [0.9, 1] }, 400, 'INVALID_ARGUMENT', /betas\[1\] must be in \[0, 1\)/],
    ['a negative eps', { ...ok, eps: -1e-8 }, 400, 'INVALID_ARGUMENT', /eps must be at least 0/],
    ['Nesterov without momentum', { ...ok, optimizer: 'sgd', nesterov: true }, 400, 'INVALID_ARGUMENT', /nesterov needs a momentum above 0 and a dampening of 0/],
    ['Nesterov with dampening', { ...ok, optimizer: 'sgd', nesterov: true, momentum: 0.9, dampening: 0.1 }, 400, 'INVALID_ARGUMENT', /nesterov needs/],
    ['no parameters', { ...ok, params: {}, grads: {} }, 400, 'INVALID_ARGUMENT', /params is empty/],
    ['a step count that is not an integer', { ...ok, state: { step: 1.5, expAvg: { w: [1, 2], b: 3 }, expAvgSq: { w: [1, 2], b: 3 } } }, 400, 'FST_ERR_VALIDATION', /step/],
    ['no lr', { optimizer: 'sgd', params: ok.params, grads: ok.grads }, 400, 'FST_ERR_VALIDATION', /lr/],
    ['a name with a line break', { ...ok, params: { 'w\n': [1] }, grads: { 'w\n': [1] } }, 400, 'FST_ERR_VALIDATION', /params/],
    ['a ragged parameter', { ...ok, params: { w: [[1, 2], [3]], b: 3 } }, 400, 'INVALID_TENSOR', /params\.w/]
  ]
  for (const [what, body, status, code, message] of cases) {
    it(`${what}: ${status} ${code}`, async () => {
      for (const on of [app, inWorker]) expect(expectError(await step(body, on), status, code).message).toMatch(message)
    })
  }

  it('the reply\'s size counts against MAX_ELEMENTS: parameters and the state kept', async () => {
    const small = await buildApp({ logLevel: 'silent', workers: 1, maxElements: 10 })
    try {
      const p = { w: [1, 2, 3, 4], b: [1] }
      const g = { w: [1, 1, 1, 1], b: [1] }
      const sgd = await small.inject({ method: 'POST', url: '/v1/optimizer/step', payload: { optimizer: 'sgd', lr: 1, params: p, grads: g } })
      expect(sgd.statusCode, sgd.body).toBe(200)
      const adam = await small.inject({ method: 'POST', url: '/v1/optimizer/step', payload: { optimizer: 'adam', lr: 1, params: p, grads: g } })
      expect(expectError(adam, 413, 'TOO_LARGE').message).toMatch(/the reply's tensors would have 15 elements, more than 10/)
    } finally {
      await small.close()
    }
  })

  it('the service keeps computing after the errors', async () => {
    const res = await step({ optimizer: 'sgd', lr: 0.5, params: { w: [1, 2] }, grads: { w: [2, 2] } })
    expect(JSON.parse(res.body)).toEqual({ params: { w: { shape: [2], dtype: 'float64', data: [0, 1] } }, state: {} })
  })
})
