/**
 * Safetensors bodies over HTTP: files written by the safetensors library (test/fixtures/safetensors,
 * with their generator) and in other valid layouts are accepted, and the replies equal the files
 * the library writes, byte for byte; the options travel in __metadata__; Accept chooses the reply's
 * format; the same schema, limits and errors as JSON bodies. Every case runs on an app that reads
 * files on the main thread and on one that hands every body to a worker.
 */
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import type { ForwardName } from '../src/operations/index.js'
import { expectError, type Reply } from './helpers/bodies.js'
import { checkFile, type FileTensorSpec, writeFile } from './helpers/safetensors.js'

const FIXTURES = new URL('./fixtures/safetensors/', import.meta.url)
const cases = JSON.parse(readFileSync(new URL('cases.json', FIXTURES), 'utf8')) as Array<{ name: string, route: string, request: string, reply: string, exact: boolean }>
const fixture = (file: string): Buffer => readFileSync(new URL(file, FIXTURES))

const LIMITS = { maxElements: 100000, maxFlops: 1e9, workers: 1 }
let onMain: FastifyInstance
let inWorker: FastifyInstance

beforeAll(async () => {
  onMain = await buildApp({ logLevel: 'silent', ...LIMITS, workerParseMinBytes: 0 })
  inWorker = await buildApp({ logLevel: 'silent', ...LIMITS, workerParseMinBytes: 1 })
  await Promise.all([onMain.ready(), inWorker.ready()])
})
afterAll(async () => { await Promise.all([onMain.close(), inWorker.close()]) })

type Injected = Reply & { rawPayload: Buffer, json: () => any }

async function postFile (app: FastifyInstance, route: string, file: Uint8Array, headers: Record<string, string> = {}): Promise<Injected> {
  return await app.inject({
    method: 'POST',
    url: `/v1/${route}`,
    payload: Buffer.from(file.buffer, file.byteOffset, file.byteLength),
    headers: { 'content-type': 'application/octet-stream', ...headers }
  }) as unknown as Injected
}

/** Posts to both apps; both must answer alike. */
async function both (route: string, file: Uint8Array, headers: Record<string, string> = {}): Promise<Injected> {
  const [a, b] = await Promise.all([postFile(onMain, route, file, headers), postFile(inWorker, route, file, headers)])
  expect(b.statusCode, b.body.slice(0, 300)).toBe(a.statusCode)
  expect(b.headers['content-type']).toBe(a.headers['content-type'])
  expect(b.rawPayload.equals(a.rawPayload), 'the worker answers as the main thread').toBe(true)
  return a
}

const f32 = (shape: number[], values: number[]): FileTensorSpec => ({ dtype: 'F32', shape, values })

describe('files written by the safetensors library', () => {
  for (const c of cases) {
    it(`${c.name}: ${c.route}, answered with the file the library writes`, async () => {
      const res = await both(c.route, fixture(c.request))
      expect(res.statusCode, res.body.slice(0, 300)).toBe(200)
      expect(res.headers['content-type']).toBe('application/octet-stream')
      const expected = fixture(c.reply)
      const got = checkFile(res.rawPayload)
      if (c.exact) {
        expect(res.rawPayload.equals(expected)).toBe(true)
      } else {
        // the same header (layout, names, dtypes, shapes, offsets); values to float32 precision
        const n = Number(expected.readBigUInt64LE(0))
        expect(res.rawPayload.subarray(0, 8 + n).toString()).toBe(expected.subarray(0, 8 + n).toString())
        const want = checkFile(expected)
        for (const [name, t] of Object.entries(want.tensors)) {
          t.values.forEach((v, i) => expect(got.tensors[name].values[i]).toBeCloseTo(v, 6))
        }
      }
    })
  }

  it('the JSON reply to the same file (Accept: application/json) states the same values', async () => {
    for (const c of cases) {
      const res = await both(c.route, fixture(c.request), { accept: 'application/json' })
      expect(res.statusCode).toBe(200)
      expect(res.headers['content-type']).toMatch(/^application\/json/)
      const file = checkFile(fixture(c.reply))
      const body = res.json() as Record<string, { shape: number[], dtype: string, data: unknown }>
      for (const [name, t] of Object.entries(file.tensors)) {
        expect(body[name].shape).toEqual(t.shape)
        expect(body[name].dtype).toBe({ F64: 'float64', F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[t.dtype as string])
        const flat = [body[name].data].flat(8) as number[]
        flat.forEach((v, i) => c.exact ? expect(v).toBe(t.values[i]) : expect(v).toBeCloseTo(t.values[i], 6))
      }
    }
  })
})

describe('the reply follows Accept', () => {
  const file = writeFile({ a: f32([2], [1, 2]), b: f32([2], [3, 4]) })
  const json = { a: { shape: [2], dtype: 'float32', data: [1, 2] }, b: { shape: [2], dtype: 'float32', data: [3, 4] } }
  const safetensorsReply = (res: Injected): void => {
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200)
    expect(res.headers['content-type']).toBe('application/octet-stream')
    expect(checkFile(res.rawPayload).tensors).toEqual({ result: { dtype: 'F32', shape: [], values: [11] } })
  }
  const jsonReply = (res: Injected): void => {
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200)
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8')
    expect(res.json()).toEqual({ result: { shape: [], dtype: 'float32', data: 11 } })
  }

  it('a file without Accept, or with */*, is answered with a file; a JSON body with JSON', async () => {
    safetensorsReply(await both('dot', file))
    safetensorsReply(await both('dot', file, { accept: '*/*' }))
    jsonReply(await onMain.inject({ method: 'POST', url: '/v1/dot', payload: json }) as unknown as Injected)
    jsonReply(await onMain.inject({ method: 'POST', url: '/v1/dot', payload: json, headers: { accept: '*/*' } }) as unknown as Injected)
  })

  it('Accept chooses across formats, with q values and wildcards', async () => {
    safetensorsReply(await onMain.inject({ method: 'POST', url: '/v1/dot', payload: json, headers: { accept: 'application/octet-stream' } }) as unknown as Injected)
    safetensorsReply(await onMain.inject({ method: 'POST', url: '/v1/dot', payload: json, headers: { accept: 'application/json;q=0.5, application/octet-stream' } }) as unknown as Injected)
    jsonReply(await both('dot', file, { accept: 'application/json' }))
    jsonReply(await both('dot', file, { accept: 'text/html, application/*;q=0.2, application/octet-stream;q=0.1' }))
    jsonReply(await both('dot', file, { accept: 'application/octet-stream;q=0, */*' }))
    safetensorsReply(await both('dot', file, { accept: 'application/*' }))
  })

  it('406 when Accept allows neither; errors are JSON whatever Accept asks', async () => {
    for (const accept of ['text/html', 'application/json;q=0, application/octet-stream;q=0', 'image/*']) {
      const res = await both('dot', file, { accept })
      const body = expectError(res, 406, 'NOT_ACCEPTABLE')
      expect(body.message).toContain('application/octet-stream')
    }
    const bad = await both('dot', writeFile({ a: f32([2], [1, 2]), b: f32([3], [3, 4, 5]) }), { accept: 'application/octet-stream' })
    expectError(bad, 400, 'SHAPE_MISMATCH')
  })
})

describe('options in __metadata__', () => {
  const q = f32([2, 2], [1, 0, 0, 1])
  const k = f32([3, 2], [1, 0, 0, 1, 1, 1])
  const v = f32([3, 2], [1, 2, 3, 4, 5, 6])

  it('a value is JSON when it parses as JSON, else the string: "true", "[2,2]", relu and "\\"gelu\\""', async () => {
    const causal = checkFile((await both('attention', writeFile({ query: q, key: k, value: v }, { causal: 'true', returnWeights: 'true' }))).rawPayload)
    expect(Object.keys(causal.tensors)).toEqual(['result', 'weights'])
    expect(causal.tensors.weights.values.slice(0, 3)).toEqual([1, 0, 0])
    const conv = checkFile((await both('conv2d', writeFile({ input: f32([1, 4, 4], Array.from({ length: 16 }, (_, i) => i)), kernel: f32([1, 1, 1, 1], [2]) }, { stride: '[2,2]', padding: 'valid' }))).rawPayload)
    expect(conv.tensors.result).toEqual({ dtype: 'F32', shape: [1, 2, 2], values: [0, 4, 16, 20] })
    for (const activation of ['relu', '"relu"']) {
      const lin = checkFile((await both('linear', writeFile({ input: f32([1, 2], [1, -3]), weights: f32([2, 1], [1, 1]) }, { activation }))).rawPayload)
      expect(lin.tensors.result.values).toEqual([0])
    }
  })

  it('metadata meets the schema as JSON fields would: a wrong type, an unknown option', async () => {
    const ab = { a: f32([2], [1, 2]), b: f32([2], [3, 4]) }
    expectError(await both('linear', writeFile({ input: f32([1, 2], [1, 2]), weights: f32([2, 1], [1, 1]) }, { activation: 'swish' })), 400, 'FST_ERR_VALIDATION')
    expectError(await both('attention', writeFile({ query: q, key: k, value: v }, { causal: 'yes' })), 400, 'FST_ERR_VALIDATION')
    expectError(await both('dot', writeFile(ab, { colour: 'red' })), 400, 'FST_ERR_VALIDATION')
    // encoding and dtype: the JSON reply's encoding; the result dtype
    const res = await both('dot', writeFile(ab, { encoding: 'base64', dtype: 'float64' }), { accept: 'application/json' })
    expect(res.json()).toEqual({ result: { shape: [], dtype: 'float64', data: Buffer.from(new Float64Array([11]).buffer).toString('base64') } })
  })

  it('tensor fields are tensors of the file, never metadata entries', async () => {
    const body = expectError(await both('dot', writeFile({ a: f32([2], [1, 2]) }, { b: '[3,4]' })), 400, 'INVALID_TENSOR')
    expect(body.message).toBe('b must be a tensor of the file; __metadata__ carries only the options')
    const twice = expectError(await both('dot', writeFile({ a: f32([2], [1, 2]), b: f32([2], [3, 4]) }, { b: '[3,4]' })), 400, 'INVALID_TENSOR')
    expect(twice.message).toContain('__metadata__ entry "b" names a tensor of the file')
  })
})

describe('the schema and the errors of JSON bodies', () => {
  it('a tensor the operation does not have, or a missing one, fails the schema', async () => {
    const extra = expectError(await both('dot', writeFile({ a: f32([1], [1]), b: f32([1], [1]), c: f32([1], [1]) })), 400, 'FST_ERR_VALIDATION')
    expect(extra.message).toMatch(/additional|unknown|c/)
    const missing = expectError(await both('dot', writeFile({ a: f32([1], [1]) })), 400, 'FST_ERR_VALIDATION')
    expect(missing.message).toContain("'b'")
  })

  it('BOOL only for a mask, I64 nowhere', async () => {
    const bool = expectError(await both('dot', writeFile({ a: { dtype: 'BOOL', shape: [2], values: [1, 0] }, b: f32([2], [1, 1]) })), 400, 'INVALID_TENSOR')
    expect(bool.message).toBe('a is BOOL; only an attention mask may be boolean')
    const i64 = expectError(await both('dot', writeFile({ a: { dtype: 'I64', shape: [2], values: [1, 0] }, b: f32([2], [1, 1]) })), 400, 'INVALID_TENSOR')
    expect(i64.message).toBe('tensor "a" has dtype "I64"; accepted: F64, F32, F16, BF16 (and BOOL for a mask)')
    // a numeric mask (added to the scores) may be any float dtype
    const res = await both('attention', writeFile({
      query: f32([1, 2], [1, 0]),
      key: f32([2, 2], [1, 0, 0, 1]),
      value: f32([2, 1], [1, 3]),
      mask: { dtype: 'F16', shape: [2], values: [0, -Infinity] }
    }))
    expect(checkFile(res.rawPayload).tensors.result.values).toEqual([1])
  })

  it('shapes over MAX_ELEMENTS: 413 TOO_LARGE before any data is read; bodies over BODY_LIMIT_BYTES: 413', async () => {
    const big = writeFile({ a: f32([0], []), b: f32([0], []) })
    // the header claims a huge shape with the data of an empty tensor
    const header = JSON.stringify({ a: { dtype: 'F32', shape: [100000, 100000], data_offsets: [0, 0] }, b: { dtype: 'F32', shape: [0], data_offsets: [0, 0] } })
    const file = Buffer.concat([Buffer.alloc(8), Buffer.from(header)])
    file.writeBigUInt64LE(BigInt(header.length))
    expectError(await both('dot', file), 413, 'TOO_LARGE')
    expect((await both('dot', big)).statusCode).toBe(200)
    const small = await buildApp({ logLevel: 'silent', workers: 1, bodyLimitBytes: 1000 })
    try {
      const res = await postFile(small, 'dot', writeFile({ a: f32([200], new Array(200).fill(1)), b: f32([200], new Array(200).fill(1)) }))
      expectError(res, 413, 'FST_ERR_CTP_BODY_TOO_LARGE')
    } finally {
      await small.close()
    }
  })
})

describe('every dtype in every wire form', () => {
  // a NaN, infinities, a float16 subnormal (2^-24), float16's largest value (bfloat16: 65536)
  const values = [1, -2.5, 0.1015625, 65504, -0.5, NaN, Infinity, -Infinity, 2 ** -24, 3.0517578125e-5]
  const shape = [10, 1]
  const FILE: Record<string, 'F64' | 'F32' | 'F16' | 'BF16'> = { float64: 'F64', float32: 'F32', float16: 'F16', bfloat16: 'BF16' }
  for (const dtype of ['float64', 'float32', 'float16', 'bfloat16'] as const) {
    it(`${dtype}: [10,1]·[[1]] in nested, flat, base64 and safetensors; out in the same four; each reply posted back`, async () => {
      // the values rounded to the dtype, as the service must read them from JSON
      const rounded = await roundedBy(dtype, values)
      // a·[[1]] is a itself, value by value (NaN and infinities included)
      const identity = { shape: [1, 1], dtype, data: [1] }
      const wrapped = values.map(v => Number.isNaN(v) ? 'NaN' : v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : v)
      const inputs: Array<[string, Buffer]> = []
      for (const data of [wrapped, wrapped.map(v => [v])]) {
        inputs.push(['json', Buffer.from(JSON.stringify({ a: { shape, dtype, data }, b: identity }))])
      }
      const fileA: FileTensorSpec = { dtype: FILE[dtype], shape, values: rounded }
      const fileB: FileTensorSpec = { dtype: FILE[dtype], shape: [1, 1], values: identity.data }
      inputs.push(['file', writeFile({ a: fileA, b: fileB })])
      const b64 = JSON.parse((await onMain.inject({ method: 'POST', url: '/v1/matmul', payload: { a: { shape, dtype, data: wrapped }, b: identity, encoding: 'base64' } })).body).result
      inputs.push(['json', Buffer.from(JSON.stringify({ a: b64, b: identity }))])
      for (const [kind, payload] of inputs) {
        for (const encoding of ['nested', 'flat', 'base64', 'safetensors']) {
          const headers = { 'content-type': kind === 'file' ? 'application/octet-stream' : 'application/json', accept: encoding === 'safetensors' ? 'application/octet-stream' : 'application/json' }
          let body = payload
          if (encoding !== 'safetensors') {
            body = kind === 'file' ? writeFile({ a: fileA, b: fileB }, { encoding }) : Buffer.from(JSON.stringify({ ...JSON.parse(payload.toString()), encoding }))
          }
          for (const app of [onMain, inWorker]) {
            const res = await app.inject({ method: 'POST', url: '/v1/matmul', payload: body, headers }) as unknown as Injected
            expect(res.statusCode, res.body.slice(0, 200)).toBe(200)
            const got = encoding === 'safetensors' ? checkFile(res.rawPayload).tensors.result : null
            if (got !== null) {
              expect(got.dtype).toBe(FILE[dtype])
              expect(got.values).toEqual(rounded)
              continue
            }
            const result = res.json().result
            expect(result.dtype).toBe(dtype)
            expect(result.shape).toEqual(shape)
            // posted back unchanged, the reply gives itself again
            const again = await onMain.inject({ method: 'POST', url: '/v1/matmul', payload: { a: result, b: identity, encoding } })
            expect(again.json().result).toEqual(result)
            const back = await onMain.inject({ method: 'POST', url: '/v1/matmul', payload: { a: result, b: identity }, headers: { accept: 'application/octet-stream' } }) as unknown as Injected
            expect(checkFile(back.rawPayload).tensors.result.values).toEqual(rounded)
          }
        }
      }
    })
  }
})

/** Values rounded to a dtype by an independent route: Float32Array for float32, bits for the 16-bit types. */
async function roundedBy (dtype: string, values: number[]): Promise<number[]> {
  if (dtype === 'float64') return values
  if (dtype === 'float32') return Array.from(Float32Array.from(values))
  // every value is exact in float16 and bfloat16 but 65504 (0xFFE0 in 8 significant bits: a tie
  // between 65280 and 65536, which goes to the even significand, 65536)
  return values.map(v => dtype === 'bfloat16' && v === 65504 ? 65536 : v)
}

describe('a JSON reply over MAX_JSON_REPLY_BYTES', () => {
  it('is refused from the shapes with 413 TOO_LARGE naming base64 and safetensors; those replies are given', async () => {
    const app = await buildApp({ logLevel: 'silent', workers: 1, maxJsonReplyBytes: 100000 })
    try {
      const col = { shape: [100, 1], dtype: 'float32', data: new Array(100).fill(1) }
      const row = { shape: [1, 100], dtype: 'float32', data: new Array(100).fill(0.5) }
      const nestedReply = await app.inject({ method: 'POST', url: '/v1/matmul', payload: { a: col, b: row } })
      const body = expectError(nestedReply as unknown as Injected, 413, 'TOO_LARGE')
      expect(body.message).toMatch(/^the JSON reply \(result \[100,100\], float32, nested\) may take up to \d+ bytes, over MAX_JSON_REPLY_BYTES \(100000\): ask for "encoding": "base64", or for a safetensors reply/)
      expectError(await app.inject({ method: 'POST', url: '/v1/matmul', payload: { a: col, b: row, encoding: 'flat' } }) as unknown as Injected, 413, 'TOO_LARGE')
      const b64 = await app.inject({ method: 'POST', url: '/v1/matmul', payload: { a: col, b: row, encoding: 'base64' } })
      expect(b64.statusCode).toBe(200)
      const file = await app.inject({ method: 'POST', url: '/v1/matmul', payload: { a: col, b: row }, headers: { accept: 'application/octet-stream' } }) as unknown as Injected
      expect(file.statusCode).toBe(200)
      expect(checkFile(file.rawPayload).tensors.result.values).toEqual(new Array(10000).fill(0.5))
      // the bound holds: the largest nested reply of that many float32 values fits under it
      const worst = Array.from({ length: 100 }, (_, i) => -1.17549435e-38 * (1 + i / 1000))
      const fits = await buildApp({ logLevel: 'silent', workers: 1, maxJsonReplyBytes: 0 })
      try {
        const res = await fits.inject({ method: 'POST', url: '/v1/matmul', payload: { a: { ...col, data: worst }, b: { ...row, data: new Array(100).fill(1) } } })
        expect(res.statusCode).toBe(200)
        expect(res.rawPayload.length).toBeLessThan(Number(/up to (\d+) bytes/.exec(body.message)?.[1]))
      } finally {
        await fits.close()
      }
    } finally {
      await app.close()
    }
  })
})

describe('backward routes in safetensors', () => {
  it('gradOutput is a tensor of the file, wrt and returnResult are metadata; gradients come back as grads.<name>', async () => {
    const a = f32([2, 3], [1, 2, 3, 4, 5, 6])
    const b = f32([3, 2], [1, 0, -1, 2, 0.5, 1])
    const g = f32([2, 2], [1, -1, 0.5, 2])
    const json = { a: { shape: [2, 3], dtype: 'float32', data: [1, 2, 3, 4, 5, 6] }, b: { shape: [3, 2], dtype: 'float32', data: [1, 0, -1, 2, 0.5, 1] }, gradOutput: { shape: [2, 2], dtype: 'float32', data: [1, -1, 0.5, 2] }, returnResult: true, encoding: 'flat' }
    const byJson = (await onMain.inject({ method: 'POST', url: '/v1/matmul/backward', payload: json })).json()
    const res = await both('matmul/backward', writeFile({ a, b, gradOutput: g }, { returnResult: 'true' }))
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200)
    const { tensors } = checkFile(res.rawPayload)
    expect(Object.keys(tensors)).toEqual(['grads.a', 'grads.b', 'result'])
    expect(tensors['grads.a']).toEqual({ dtype: 'F32', shape: [2, 3], values: byJson.grads.a.data })
    expect(tensors['grads.b']).toEqual({ dtype: 'F32', shape: [3, 2], values: byJson.grads.b.data })
    expect(tensors.result.values).toEqual(byJson.result.data)
    const onlyB = checkFile((await both('matmul/backward', writeFile({ a, b, gradOutput: g }, { wrt: '["b"]' }))).rawPayload)
    expect(Object.keys(onlyB.tensors)).toEqual(['grads.b'])
    // float16 operands: float16 gradients, computed in float32 (these values are exact)
    const h = (shape: number[], values: number[]): FileTensorSpec => ({ dtype: 'F16', shape, values })
    // (einsum's backward: its operands are a list, test/einsum.test.ts)
    const files: Record<Exclude<ForwardName, 'einsum'>, Record<string, FileTensorSpec>> = {
      matmul: { a: h([1, 2], [1, 2]), b: h([2, 1], [0.5, 0.25]), gradOutput: h([1, 1], [2]) },
      dot: { a: h([2], [1, 2]), b: h([2], [0.5, 0.25]), gradOutput: h([], [2]) },
      linear: { input: h([1, 2], [1, 2]), weights: h([2, 1], [0.5, 0.25]), gradOutput: h([1, 1], [2]) },
      conv2d: { input: h([1, 1, 2, 2], [1, 2, 3, 4]), kernel: h([1, 1, 1, 1], [0.5]), gradOutput: h([1, 1, 2, 2], [1, 1, 1, 1]) },
      attention: { query: h([1, 2], [1, 0]), key: h([1, 2], [1, 0]), value: h([1, 2], [1, 2]), gradOutput: h([1, 2], [1, 1]) },
      binary: { a: h([2, 1], [1, 2]), b: h([2], [0.5, 0.25]), gradOutput: h([2, 2], [1, 1, 1, 1]) },
      unary: { input: h([2], [1, -2]), gradOutput: h([2], [1, 0.5]) },
      softmax: { input: h([2, 2], [0, 0, 1, 1]), gradOutput: h([2, 2], [1, 0, 0, 1]) },
      reduce: { input: h([2, 2], [1, 2, 3, 4]), gradOutput: h([2], [1, 0.5]) },
      layer_norm: { input: h([1, 2], [1, 3]), weight: h([2], [1, 0.5]), gradOutput: h([1, 2], [1, 0]) },
      pool2d: { input: h([1, 2, 2], [1, 2, 3, 4]), gradOutput: h([1, 1, 1], [2]) },
      loss: { input: h([2], [1, 2]), target: h([2], [0, 4]), gradOutput: h([], [1]) }
    }
    const options: Partial<Record<keyof typeof files, Record<string, string>>> = { binary: { op: 'mul' }, unary: { op: 'square' }, reduce: { op: 'sum', axis: '1' }, layer_norm: { normalizedShape: '[2]', eps: '0' }, pool2d: { kind: 'avg', kernelSize: '2' }, loss: { kind: 'mse' } }
    for (const route of Object.keys(files) as Array<keyof typeof files>) {
      const res16 = await both(`${route}/backward`, writeFile(files[route], options[route]))
      expect(res16.statusCode, res16.body.slice(0, 300)).toBe(200)
      for (const t of Object.values(checkFile(res16.rawPayload).tensors)) expect(t.dtype).toBe('F16')
    }
    // gradOutput from the metadata is refused like any tensor field
    const body = expectError(await both('matmul/backward', writeFile({ a, b }, { gradOutput: '[[1,1],[1,1]]' })), 400, 'INVALID_TENSOR')
    expect(body.message).toBe('gradOutput must be a tensor of the file; __metadata__ carries only the options')
  })
})

describe('dtype promotion, as PyTorch promotes', () => {
  const t = (dtype: string, data: number[]): object => ({ shape: [data.length], dtype, data })
  it.each([
    ['float16', 'float16', 'float16'],
    ['bfloat16', 'bfloat16', 'bfloat16'],
    ['float16', 'bfloat16', 'float32'],
    ['float16', 'float32', 'float32'],
    ['bfloat16', 'float64', 'float64'],
    ['float32', 'float32', 'float32']
  ])('%s with %s gives %s', async (x, y, want) => {
    const res = await onMain.inject({ method: 'POST', url: '/v1/dot', payload: { a: t(x, [1, 2]), b: t(y, [3, 0.5]) } })
    expect(res.json().result).toEqual({ shape: [], dtype: want, data: 4 })
  })

  it('a nested (float64) operand promotes to float64; a request-level dtype casts every operand first', async () => {
    const res = await onMain.inject({ method: 'POST', url: '/v1/dot', payload: { a: t('float16', [0.5]), b: [0.1] } })
    expect(res.json().result).toEqual({ shape: [], dtype: 'float64', data: 0.05 })
    // 0.1 as float16 is 0.0999755859375; times 3 is 0.2999267578125, which rounds to the float16 0.2998 (0.29980469)
    const cast = await onMain.inject({ method: 'POST', url: '/v1/dot', payload: { a: [0.1], b: [3], dtype: 'float16' } })
    expect(cast.json().result).toEqual({ shape: [], dtype: 'float16', data: 0.2998 })
    const b16 = await onMain.inject({ method: 'POST', url: '/v1/dot', payload: { a: [0.1], b: [3], dtype: 'bfloat16', encoding: 'base64' } })
    // 0.1 as bfloat16 is 0.10009765625; times 3 is 0.30029296875, whose nearest bfloat16 is 0.30078125 (0x3E9A)
    expect(b16.json().result).toEqual({ shape: [], dtype: 'bfloat16', data: Buffer.from([0x9a, 0x3e]).toString('base64') })
  })

  it('an attention mask takes no part: float16 query, key and value with a float64 mask give float16', async () => {
    const res = await onMain.inject({
      method: 'POST',
      url: '/v1/attention',
      payload: { query: { shape: [1, 2], dtype: 'float16', data: [[1, 0]] }, key: { shape: [2, 2], dtype: 'float16', data: [[1, 0], [0, 1]] }, value: { shape: [2, 1], dtype: 'float16', data: [[1], [3]] }, mask: [0, -1e9] }
    })
    expect(res.json().result).toEqual({ shape: [1, 1], dtype: 'float16', data: [[1]] })
  })
})

describe('einsum in safetensors', () => {
  it('operands.0, operands.1 … fill the operands array; equation in the metadata; gradients as grads.operands.<i>', async () => {
    const a = f32([2, 3], [1, 2, 3, 4, 5, 6])
    const b = f32([3, 2], [1, 0, -1, 2, 0.5, 1])
    const res = await both('einsum', writeFile({ 'operands.1': b, 'operands.0': a }, { equation: 'ij,jk->ik' }))
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200)
    expect(checkFile(res.rawPayload).tensors.result).toEqual({ dtype: 'F32', shape: [2, 2], values: [0.5, 7, 2, 16] })
    // three operands, one of them float16: float32
    const three = await both('einsum', writeFile({ 'operands.0': a, 'operands.1': b, 'operands.2': { dtype: 'F16', shape: [2], values: [1, -1] } }, { equation: 'ij,jk,k->i' }))
    expect(checkFile(three.rawPayload).tensors.result).toEqual({ dtype: 'F32', shape: [2], values: [-6.5, -14] })
    // backward: only operand 1 asked for; the JSON reply has null in place 0, the file no tensor
    const g = f32([2, 2], [1, 1, 1, 1])
    const back = await both('einsum/backward', writeFile({ 'operands.0': a, 'operands.1': b, gradOutput: g }, { equation: 'ij,jk->ik', wrt: '[1]', returnResult: 'true' }))
    expect(back.statusCode, back.body.slice(0, 300)).toBe(200)
    const { tensors } = checkFile(back.rawPayload)
    expect(Object.keys(tensors)).toEqual(['grads.operands.1', 'result'])
    expect(tensors['grads.operands.1']).toEqual({ dtype: 'F32', shape: [3, 2], values: [5, 5, 7, 7, 9, 9] })
    const json = await both('einsum/backward', writeFile({ 'operands.0': a, 'operands.1': b, gradOutput: g }, { equation: 'ij,jk->ik', wrt: '[1]', encoding: 'flat' }), { accept: 'application/json' })
    expect(json.json()).toEqual({ grads: { operands: [null, { shape: [3, 2], dtype: 'float32', data: [5, 5, 7, 7, 9, 9] }] } })
    // a gap in the operands, and an operand in the metadata
    expectError(await both('einsum', writeFile({ 'operands.0': a, 'operands.2': b }, { equation: 'ij,jk->ik' })), 400, 'INVALID_TENSOR')
    expectError(await both('einsum', writeFile({ 'operands.0': a }, { equation: 'ij,jk->ik', operands: '[[1]]' })), 400, 'INVALID_TENSOR')
  })
})
