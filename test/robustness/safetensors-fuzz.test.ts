/**
 * Fuzzing safetensors bodies: thousands of files made from valid ones of every route, then broken
 * (header lengths, truncations, flipped bytes, headers that are not JSON objects, wrong dtypes,
 * shapes whose product overflows, overlapping, reversed or out-of-range offsets, holes, trailing
 * bytes, hostile names and metadata). Every one must be answered 200 (a valid file) or a JSON
 * error of 400 or 413, never a 5xx, on the main thread and in a worker alike; and the service
 * computes correctly afterwards.
 */
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { checkFile, type FileTensorSpec, writeFile } from '../helpers/safetensors.js'

const RUNS = 5000

const f32 = (shape: number[]): FileTensorSpec => ({ dtype: 'F32', shape, values: new Array(shape.reduce((p, d) => p * d, 1)).fill(0.5) })

/** A valid file for each route. */
const VALID: Record<string, Buffer> = {
  matmul: writeFile({ a: f32([2, 3]), b: f32([3, 2]) }),
  dot: writeFile({ a: { dtype: 'F16', shape: [3], values: [1, 2, 3] }, b: { dtype: 'BF16', shape: [3], values: [1, 1, 1] } }),
  linear: writeFile({ input: f32([2, 3]), weights: f32([3, 2]), bias: f32([2]) }, { activation: 'gelu' }),
  conv2d: writeFile({ input: f32([1, 1, 4, 4]), kernel: f32([2, 1, 2, 2]) }, { stride: '[2,2]', padding: '1' }),
  attention: writeFile({ query: f32([2, 2]), key: f32([3, 2]), value: f32([3, 2]), mask: { dtype: 'BOOL', shape: [3], values: [1, 0, 1] } }, { returnWeights: 'true' }),
  einsum: writeFile({ 'operands.0': f32([2, 3]), 'operands.1': f32([3, 2]) }, { equation: 'ij,jk->ik' }),
  'matmul/backward': writeFile({ a: f32([2, 3]), b: f32([3, 2]), gradOutput: f32([2, 2]) }, { wrt: '["a"]' }),
  'optimizer/step': writeFile({
    'params.fc.w': f32([2, 2]),
    'grads.fc.w': f32([2, 2]),
    'state.expAvg.fc.w': f32([2, 2]),
    'state.expAvgSq.fc.w': f32([2, 2])
  }, { optimizer: 'adam', lr: '0.1', 'state.step': '3' }),
  graph: writeFile({ 'inputs.x': f32([2, 2]), 'inputs.w': f32([2, 1]) }, {
    nodes: '[{"name":"y","operation":"matmul","a":"x","b":"w"},{"name":"s","operation":"reduce","op":"sum","input":"y"}]',
    gradients: '{"of":"s","wrt":["w"]}',
    'update.optimizer': 'sgd',
    'update.lr': '0.5'
  })
}

function headerOf (file: Buffer): { header: Record<string, any>, data: Buffer } {
  const n = Number(file.readBigUInt64LE(0))
  return { header: JSON.parse(file.subarray(8, 8 + n).toString()), data: file.subarray(8 + n) }
}

function assemble (headerText: string | Buffer, data: Buffer, length?: bigint): Buffer {
  const text = typeof headerText === 'string' ? Buffer.from(headerText) : headerText
  const head = Buffer.alloc(8)
  head.writeBigUInt64LE(length ?? BigInt(text.length))
  return Buffer.concat([head, text, data])
}

const hostileName = fc.constantFrom('a', 'b', 'input', 'mask', 'operands.0', 'operands.7', 'x.999999', '__proto__', 'constructor', 'prototype', '', '.', 'a.0', '__metadata__', 'é', 'grads.a',
  'params.', 'params.fc.w', 'params.0', 'params.__proto__', 'grads.fc.w.x', 'state', 'state.step', 'state.expAvg', 'state.expAvg.fc.w', 'state.expAvgSq.', 'state.momentumBuffer.fc.w', 'params.constructor', 'inputs.x', 'inputs.w', 'inputs.__proto__', 'inputs.', 'update.state.expAvg.w')
const dim = fc.oneof(fc.integer({ min: 0, max: 5 }), fc.constantFrom(2 ** 31, 2 ** 40, 2 ** 53, 2 ** 53 + 2, -1, 1.5, 1e300, '2', null))
const offset = fc.oneof(fc.integer({ min: 0, max: 200 }), fc.constantFrom(-1, 2 ** 53, 2 ** 64, 1.5, '0', null))
const dtype = fc.constantFrom('F64', 'F32', 'F16', 'BF16', 'BOOL', 'I64', 'U8', 'F8_E4M3', 'f32', '', null, 4)

/** One change to a parsed header. */
const headerChange = fc.oneof(
  fc.record({ kind: fc.constant('dtype'), value: dtype }),
  fc.record({ kind: fc.constant('shape'), value: fc.array(dim, { maxLength: 10 }) }),
  fc.record({ kind: fc.constant('offsets'), value: fc.array(offset, { minLength: 0, maxLength: 3 }) }),
  fc.record({ kind: fc.constant('drop'), value: fc.constantFrom('dtype', 'shape', 'data_offsets') }),
  fc.record({ kind: fc.constant('extra key'), value: fc.constantFrom('foo', '__proto__', 'constructor') }),
  fc.record({ kind: fc.constant('rename'), value: hostileName }),
  fc.record({ kind: fc.constant('entry'), value: fc.constantFrom(null, 1, 'x', [], [1, 2]) }),
  fc.record({ kind: fc.constant('metadata'), value: fc.dictionary(fc.constantFrom('activation', 'stride', 'causal', 'explain', 'a', 'encoding', 'dtype', '__proto__', 'x', 'state.step', 'state', 'params.fc.w', 'state.expAvg', 'state.__proto__', 'lr', 'optimizer', 'nodes', 'update.lr', 'update', 'inputs', 'gradients', 'update.state.step'), fc.oneof(fc.constantFrom('gelu', '[2,2]', 'true', '{"__proto__":1}', '"base64"', 'float16', 'NaN', '1e999', '', '{"step":1}', '{"expAvg":{}}', 'sgd', '-1', '1.5', '[{"name":"y","operation":"matmul","a":"y","b":"x"}]', '{"of":"y","wrt":["x"]}'), fc.integer(), fc.constant(null))) }),
  fc.record({ kind: fc.constant('swap offsets'), value: fc.constant(null) })
)

/** A mutation of a valid file. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('length'), value: fc.oneof(fc.bigInt({ min: 0n, max: 400n }), fc.constantFrom(2n ** 64n - 1n, 2n ** 63n, 100_000_001n, 2n ** 32n)) }),
  fc.record({ kind: fc.constant('truncate'), value: fc.nat() }),
  fc.record({ kind: fc.constant('flip'), value: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }) }),
  fc.record({ kind: fc.constant('append'), value: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('header text'), value: fc.constantFrom('', '[]', '"x"', '1', 'null', '{', '{"a":', '\u00ff', '{"__proto__":{"x":1}}', ' {}', '{}') }),
  fc.record({ kind: fc.constant('header'), value: fc.array(headerChange, { minLength: 1, maxLength: 3 }) }),
  // a shape whose product passes MAX_ELEMENTS, and float64's and 2^64's exact range
  fc.record({ kind: fc.constant('header'), value: fc.array(fc.constantFrom(2 ** 20, 2 ** 31, 2 ** 40, 65536, 3), { minLength: 2, maxLength: 8 }).map(shape => [{ kind: 'shape', value: shape }]) })
)

function mutate (route: string, m: { kind: string, value: any }, pick: number): Buffer {
  const file = Buffer.from(VALID[route])
  switch (m.kind) {
    case 'length': {
      file.writeBigUInt64LE(m.value as bigint)
      return file
    }
    case 'truncate': return file.subarray(0, m.value % file.length)
    case 'flip': {
      for (const [at, byte] of m.value as Array<[number, number]>) file[at % file.length] = byte
      return file
    }
    case 'append': return Buffer.concat([file, m.value as Uint8Array])
    case 'header text': return assemble(m.value as string, headerOf(file).data)
  }
  const { header, data } = headerOf(file)
  for (const change of m.value as Array<{ kind: string, value: any }>) {
    const names = Object.keys(header).filter(k => k !== '__metadata__')
    if (names.length === 0) break
    const name = names[pick % names.length]
    const entry = header[name]
    const isEntry = (x: unknown): boolean => typeof x === 'object' && x !== null && !Array.isArray(x)
    if (!isEntry(entry) && change.kind !== 'rename' && change.kind !== 'metadata') continue
    switch (change.kind) {
      case 'dtype': entry.dtype = change.value; break
      case 'shape': entry.shape = change.value; break
      case 'offsets': entry.data_offsets = change.value; break
      case 'drop': delete entry[change.value]; break
      case 'extra key': entry[change.value] = 1; break
      case 'rename':
        delete header[name]
        header[change.value] = entry
        break
      case 'entry': header[name] = change.value; break
      case 'metadata': header.__metadata__ = change.value; break
      case 'swap offsets': {
        const other = header[names[(pick + 1) % names.length]]
        if (!isEntry(other)) break
        ;[entry.data_offsets, other.data_offsets] = [other.data_offsets, entry.data_offsets]
        break
      }
    }
  }
  return assemble(JSON.stringify(header), data)
}

describe('fuzzing safetensors bodies', () => {
  let onMain: FastifyInstance
  let inWorker: FastifyInstance
  beforeAll(async () => {
    const limits = { logLevel: 'silent', workers: 1, maxElements: 100000, maxFlops: 1e9, maxQueue: 1000 }
    onMain = await buildApp({ ...limits, workerParseMinBytes: 0 })
    inWorker = await buildApp({ ...limits, workerParseMinBytes: 1 })
    await Promise.all([onMain.ready(), inWorker.ready()])
  })
  afterAll(async () => { await Promise.all([onMain.close(), inWorker.close()]) })

  it(`${RUNS} mutated files: 200 with a valid file, or a JSON 400 or 413; never a 5xx`, async () => {
    const protoKeys = Object.getOwnPropertyNames(Object.prototype).sort()
    const seen = new Map<string, number>()
    const routes = Object.keys(VALID)
    await fc.assert(fc.asyncProperty(fc.constantFrom(...routes), mutation, fc.nat(), fc.boolean(), async (route, m, pick, worker) => {
      const payload = mutate(route, m, pick)
      const res = await (worker ? inWorker : onMain).inject({
        method: 'POST',
        url: `/v1/${route}`,
        payload,
        headers: { 'content-type': 'application/octet-stream' }
      })
      const where = `${route} ${m.kind} ${JSON.stringify(m.value, (_, v) => typeof v === 'bigint' ? String(v) : v)?.slice(0, 200)} → ${res.body.slice(0, 300)}`
      if (res.statusCode === 200) {
        expect(res.headers['content-type']).toBe('application/octet-stream')
        expect(Object.keys(checkFile(res.rawPayload).tensors).length).toBeGreaterThan(0)
      } else {
        expect([400, 413], where).toContain(res.statusCode)
        const json = JSON.parse(res.body)
        expect(Object.keys(json).sort()).toEqual(['code', 'error', 'message', 'statusCode'])
        expect(json.statusCode).toBe(res.statusCode)
        expect(json.message.length).toBeGreaterThan(10)
        expect(res.body).not.toMatch(/\n\s+at |\/src\//)
        seen.set(json.code, (seen.get(json.code) ?? 0) + 1)
      }
      expect(({} as Record<string, unknown>).x).toBeUndefined()
    }), { numRuns: RUNS })
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(protoKeys)
    // the mutations reached the reader, the schema and the size limit
    expect(seen.get('INVALID_TENSOR') ?? 0).toBeGreaterThan(RUNS / 4)
    expect(seen.get('FST_ERR_VALIDATION') ?? 0).toBeGreaterThan(0)
    expect(seen.get('TOO_LARGE') ?? 0).toBeGreaterThan(0)

    for (const app of [onMain, inWorker]) {
      const res = await app.inject({ method: 'POST', url: '/v1/matmul', payload: VALID.matmul, headers: { 'content-type': 'application/octet-stream' } })
      expect(checkFile(res.rawPayload).tensors.result).toEqual({ dtype: 'F32', shape: [2, 2], values: [0.75, 0.75, 0.75, 0.75] })
    }
  }, 300_000)
})
