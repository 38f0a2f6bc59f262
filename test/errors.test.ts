/**
 * The contract's error table over HTTP: every row (except 5xx, which no request can provoke on
 * purpose), each with its status, code and the error body's exact form, and the service still
 * answering afterwards. Limits are tested on apps built with small limits; overload and timeouts
 * on apps with one worker.
 */
import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.js'
import type { Config } from '../src/config.js'
import { base64Tensor, expectError, nested, post, waitFor } from './helpers/bodies.js'

/** Every operation but dot takes 1 s longer in this worker: long tasks of a known length. */
const SLOW_WORKER = new URL('./support/slow-worker.mjs', import.meta.url).href

const SCHEMA_OR_TENSOR = ['FST_ERR_VALIDATION', 'INVALID_TENSOR']
const MATMUL_SMALL = { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]] }

async function make (overrides: Partial<Config> = {}): Promise<FastifyInstance> {
  const app = await buildApp({ logLevel: 'silent', workers: 1, ...overrides })
  await app.ready()
  return app
}

async function expectMatmulWorks (app: FastifyInstance): Promise<void> {
  const res = await post(app, '/v1/matmul', MATMUL_SMALL)
  expect(res.statusCode, res.body).toBe(200)
  expect(res.json()).toEqual({ result: { shape: [2, 2], dtype: 'float64', data: [[19, 22], [43, 50]] } })
}

let app: FastifyInstance

beforeAll(async () => {
  app = await make()
})

afterAll(async () => {
  await app?.close()
})

describe('400 FST_ERR_CTP_*: a body that is not JSON', () => {
  it('invalid JSON', async () => {
    const res = await post(app, '/v1/dot', '{"a": [1, 2], "b": [3, 4')
    const body = expectError(res, 400, ['FST_ERR_CTP_INVALID_JSON_BODY'])
    expect(body.code).toMatch(/^FST_ERR_CTP_/)
  })

  it('a bare NaN, Infinity or -Infinity (as Python\'s json.dumps writes them): the message names it and says to send the string', async () => {
    for (const [text, token, at] of [
      ['{"a": [NaN, 1], "b": [1, 2]}', 'NaN', 7],
      ['{"a": "NaN", "b": [Infinity, 1]}', 'Infinity', 19],
      ['{"a": [1, 2], "b": [1, -Infinity]}', '-Infinity', 23]
    ] as const) {
      const body = expectError(await post(app, '/v1/dot', text), 400, 'FST_ERR_CTP_INVALID_JSON_BODY')
      expect(body.message).toBe(`Body is not valid JSON: ${token} at byte ${at} is not a JSON value; send it as the string "${token}" ` +
        '(JSON has no NaN or infinities: the strings "NaN", "Infinity" and "-Infinity" stand for them)')
    }
    // from 16 KB a numeric body is parsed by the row scanner: the same answer
    const big = `{"a": [${'1,'.repeat(9000)}NaN], "b": [${'1,'.repeat(9000)}1]}`
    expect(expectError(await post(app, '/v1/dot', big), 400, 'FST_ERR_CTP_INVALID_JSON_BODY').message).toContain(`NaN at byte ${big.indexOf('NaN')} `)
    // other invalid JSON keeps Fastify's message
    const other = expectError(await post(app, '/v1/dot', '{"a": [1, "NaN], "b": [Nope]}'), 400, 'FST_ERR_CTP_INVALID_JSON_BODY')
    expect(other.message).not.toContain('byte')
  })

  it('an empty body with content-type application/json', async () => {
    const res = await post(app, '/v1/dot', '')
    const body = expectError(res, 400, ['FST_ERR_CTP_EMPTY_JSON_BODY', 'FST_ERR_CTP_INVALID_JSON_BODY'])
    expect(body.code).toMatch(/^FST_ERR_CTP_/)
  })

  it('a body with a __proto__ key is refused with 400, never merged into anything', async () => {
    const res = await post(app, '/v1/dot', '{"a":[1],"b":[2],"__proto__":{"polluted":true}}')
    expectError(res, 400, ['FST_ERR_CTP_INVALID_JSON_BODY', 'FST_ERR_VALIDATION'])
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('JSON that is not an object (a bare array) fails the schema', async () => {
    expectError(await post(app, '/v1/dot', '[1, 2, 3]'), 400, 'FST_ERR_VALIDATION')
  })
})

describe('400 FST_ERR_VALIDATION or INVALID_TENSOR: the body fails the schema or a tensor is malformed', () => {
  it('a missing field', async () => {
    const body = expectError(await post(app, '/v1/dot', { a: [1, 2, 3] }), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toContain('b')
  })

  it('an unknown top-level field', async () => {
    const body = expectError(await post(app, '/v1/dot', { a: [1], b: [2], c: [3] }), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toContain('c')
  })

  it('a string "3" where a tensor goes is refused, never coerced to 3', async () => {
    expectError(await post(app, '/v1/dot', { a: '3', b: 2 }), 400, SCHEMA_OR_TENSOR)
    expectError(await post(app, '/v1/dot', { a: 3, b: '2' }), 400, SCHEMA_OR_TENSOR)
  })

  it('a string "3" inside nested arrays is refused', async () => {
    const body = expectError(await post(app, '/v1/dot', { a: [1, '3'], b: [1, 2] }), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toContain('a[1]')
  })

  it('null for a tensor', async () => {
    expectError(await post(app, '/v1/dot', { a: null, b: [1] }), 400, SCHEMA_OR_TENSOR)
    expectError(await post(app, '/v1/linear', { input: [[1]], weights: [[1]], bias: null }), 400, SCHEMA_OR_TENSOR)
  })

  it('null inside a tensor is refused, never read as 0', async () => {
    const body = expectError(await post(app, '/v1/dot', { a: [[1, 2], [3, null]], b: [[1, 1], [1, 1]] }), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toContain('a[1][1]')
  })

  it('causal given as the string "true" is refused (no coercion)', async () => {
    const q = [[1, 0], [0, 1]]
    expectError(await post(app, '/v1/attention', { query: q, key: q, value: q, causal: 'true' }), 400, SCHEMA_OR_TENSOR)
    expectError(await post(app, '/v1/attention', { query: q, key: q, value: q, returnWeights: 1 }), 400, SCHEMA_OR_TENSOR)
  })

  it('an option given as a string number is refused (no coercion)', async () => {
    const body = { input: [[[1, 2], [3, 4]]], kernel: [[[[1]]]], stride: '1' }
    expectError(await post(app, '/v1/conv2d', body), 400, [...SCHEMA_OR_TENSOR, 'INVALID_ARGUMENT'])
  })

  it('ragged nested arrays: the message names the operand and the index path', async () => {
    let body = expectError(await post(app, '/v1/dot', { a: [[1, 2], [3]], b: [[1, 2], [3, 4]] }), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toContain('a[1]')
    body = expectError(await post(app, '/v1/dot', { a: [1, 2], b: [[1, 2], 3] }), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toContain('b[1]')
    body = expectError(await post(app, '/v1/matmul', { a: [[1, 2], [3, 4]], b: [[1, 2], [3, [4]]] }), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toContain('b[1][1]')
  })

  it('a non-numeric leaf', async () => {
    for (const leaf of ['x', true, {}, 'nan']) {
      const body = expectError(await post(app, '/v1/dot', { a: [1, 2, leaf], b: [1, 2, 3] }), 400, SCHEMA_OR_TENSOR)
      expect(body.message).toContain('a[2]')
    }
  })

  it('rank 9 in nested form (rank 8 is fine)', async () => {
    const rank8 = nested([1, 1, 1, 1, 1, 1, 1, 2], i => i + 1)
    const ok = await post(app, '/v1/dot', { a: rank8, b: rank8 })
    expect(ok.statusCode, ok.body).toBe(200)
    expect(ok.json().result.data).toBe(5)
    const rank9 = nested([1, 1, 1, 1, 1, 1, 1, 1, 2])
    const body = expectError(await post(app, '/v1/dot', { a: rank9, b: rank9 }), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toMatch(/rank|deep/)
  })

  it('nesting 100000 deep is refused with 400 (no stack overflow, no 5xx)', async () => {
    const deep = '['.repeat(100000) + ']'.repeat(100000)
    const body = expectError(await post(app, '/v1/dot', `{"a":${deep},"b":[1]}`), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toContain('a')
  })

  it('rank 9 in object form', async () => {
    const shape = [1, 1, 1, 1, 1, 1, 1, 1, 2]
    expectError(await post(app, '/v1/dot', { a: { shape, data: [1, 2] }, b: { shape, data: [1, 2] } }), 400, SCHEMA_OR_TENSOR)
    const b64 = base64Tensor(shape)
    expectError(await post(app, '/v1/dot', { a: b64, b: b64 }), 400, SCHEMA_OR_TENSOR)
  })

  it('base64 outside the standard alphabet (URL-safe - and _)', async () => {
    // 8 bytes: one float64
    const body = expectError(await post(app, '/v1/dot', { a: { shape: [1], data: 'AAAA-_AAAAA=' }, b: [1] }), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toContain('a')
  })

  it('base64 with whitespace', async () => {
    const good = base64Tensor([2])
    const spaced = good.data.slice(0, 8) + ' ' + good.data.slice(8)
    expectError(await post(app, '/v1/dot', { a: { ...good, data: spaced }, b: [1, 2] }), 400, SCHEMA_OR_TENSOR)
    const broken = good.data.slice(0, 8) + '\n' + good.data.slice(8)
    expectError(await post(app, '/v1/dot', { a: { ...good, data: broken }, b: [1, 2] }), 400, SCHEMA_OR_TENSOR)
    const ok = await post(app, '/v1/dot', { a: good, b: [1, 2] })
    expect(ok.statusCode, ok.body).toBe(200)
  })

  it('base64 of the wrong byte length', async () => {
    // shape [2] float64 needs 16 bytes; one float64 (8 bytes) is given
    const one = base64Tensor([1]).data
    const body = expectError(await post(app, '/v1/dot', { a: { shape: [2], data: one }, b: [1, 2] }), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toContain('a')
    // float32 bytes where float64 is declared
    const f32 = base64Tensor([2], 'float32').data
    expectError(await post(app, '/v1/dot', { a: { shape: [2], dtype: 'float64', data: f32 }, b: [1, 2] }), 400, SCHEMA_OR_TENSOR)
    // base64 without its padding
    const unpadded = base64Tensor([1], 'float32').data.replace(/=+$/, '')
    expectError(await post(app, '/v1/dot', { a: { shape: [1], dtype: 'float32', data: unpadded }, b: [1] }), 400, SCHEMA_OR_TENSOR)
  })

  it('flat data whose length disagrees with shape', async () => {
    const body = expectError(await post(app, '/v1/dot', { a: { shape: [2, 2], data: [1, 2, 3] }, b: [[1, 2], [3, 4]] }), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toContain('a')
    expectError(await post(app, '/v1/dot', { a: { shape: [2, 2], data: [1, 2, 3, 4, 5] }, b: [[1, 2], [3, 4]] }), 400, SCHEMA_OR_TENSOR)
  })

  it('nested data that disagrees with shape', async () => {
    const body = expectError(await post(app, '/v1/dot', {
      a: { shape: [2, 2], data: [[1, 2, 3], [4, 5, 6]] },
      b: [[1, 2], [3, 4]]
    }), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toContain('a')
    expectError(await post(app, '/v1/dot', { a: { shape: [4], data: [[1, 2], [3, 4]] }, b: [1, 2, 3, 4] }), 400, SCHEMA_OR_TENSOR)
  })

  it('a negative dimension', async () => {
    expectError(await post(app, '/v1/dot', { a: { shape: [-1], data: [] }, b: [] }), 400, SCHEMA_OR_TENSOR)
    expectError(await post(app, '/v1/dot', { a: { shape: [-2, -3], data: base64Tensor([6]).data }, b: [] }), 400, SCHEMA_OR_TENSOR)
  })

  it('a non-integer dimension (2.0 is the integer 2)', async () => {
    expectError(await post(app, '/v1/dot', { a: { shape: [1.5], data: [1] }, b: [1] }), 400, SCHEMA_OR_TENSOR)
    expectError(await post(app, '/v1/dot', { a: { shape: ['2'], data: [1, 2] }, b: [1, 2] }), 400, SCHEMA_OR_TENSOR)
    const ok = await post(app, '/v1/dot', '{"a": {"shape": [2.0], "data": [1, 2]}, "b": [3, 4]}')
    expect(ok.statusCode, ok.body).toBe(200)
    expect(ok.json().result.data).toBe(11)
  })

  it('an unknown key inside a tensor object', async () => {
    const body = expectError(await post(app, '/v1/dot', { a: { shape: [1], data: [1], order: 'F' }, b: [1] }), 400, SCHEMA_OR_TENSOR)
    expect(body.message).toContain('order')
  })

  it('dtype "int32" (in a tensor and at the request level)', async () => {
    expectError(await post(app, '/v1/dot', { a: { data: [1], dtype: 'int32' }, b: [1] }), 400, SCHEMA_OR_TENSOR)
    expectError(await post(app, '/v1/dot', { a: [1], b: [1], dtype: 'int32' }), 400, SCHEMA_OR_TENSOR)
  })

  it('an unknown encoding', async () => {
    expectError(await post(app, '/v1/dot', { a: [1], b: [1], encoding: 'hex' }), 400, SCHEMA_OR_TENSOR)
  })

  it('base64 data without a shape', async () => {
    expectError(await post(app, '/v1/dot', { a: { data: base64Tensor([1]).data }, b: [1] }), 400, SCHEMA_OR_TENSOR)
  })
})

describe('400 SHAPE_MISMATCH: the message names both operands and their shapes', () => {
  async function mismatch (route: string, body: unknown, ...parts: string[]): Promise<void> {
    const err = expectError(await post(app, route, body), 400, 'SHAPE_MISMATCH')
    for (const part of parts) expect(err.message).toContain(part)
  }

  it('matmul: inner dimensions', async () => {
    await mismatch('/v1/matmul', { a: nested([2, 3]), b: nested([4, 5]) }, 'a [2,3]', 'b [4,5]', '3', '4')
  })

  it('matmul: 1-D operands of different lengths', async () => {
    await mismatch('/v1/matmul', { a: [1, 2, 3], b: [1, 2] }, 'a [3]', 'b [2]')
  })

  it('matmul: batch dimensions that do not broadcast', async () => {
    await mismatch('/v1/matmul', { a: nested([2, 2, 3]), b: nested([3, 3, 4]) }, 'a [2,2,3]', 'b [3,3,4]')
  })

  it('matmul: a rank-0 operand', async () => {
    expectError(await post(app, '/v1/matmul', { a: 2, b: [1, 2] }), 400, 'SHAPE_MISMATCH')
  })

  it('dot: different shapes', async () => {
    await mismatch('/v1/dot', { a: [1, 2, 3], b: [1, 2, 3, 4] }, 'a [3]', 'b [4]')
    await mismatch('/v1/dot', { a: nested([2, 3]), b: nested([3, 2]) }, 'a [2,3]', 'b [3,2]')
    await mismatch('/v1/dot', { a: nested([6]), b: nested([2, 3]) }, 'a [6]', 'b [2,3]')
  })

  it('linear: input and weights', async () => {
    await mismatch('/v1/linear', { input: nested([2, 3]), weights: nested([4, 5]) }, 'input [2,3]', 'weights [4,5]')
  })

  it('linear: bias and weights', async () => {
    // bias [3] where weights [3,2] give 2 outputs
    await mismatch('/v1/linear', { input: nested([1, 3]), weights: nested([3, 2]), bias: [1, 2, 3] }, 'bias [3]', 'weights [3,2]')
  })

  it('conv2d: kernel channels and input channels', async () => {
    await mismatch('/v1/conv2d', { input: nested([1, 3, 5, 5]), kernel: nested([2, 2, 3, 3]) }, 'input [1,3,5,5]', 'kernel [2,2,3,3]')
  })

  it('conv2d: kernel larger than the padded input', async () => {
    await mismatch('/v1/conv2d', { input: nested([1, 1, 3, 3]), kernel: nested([1, 1, 5, 5]) }, 'input [1,1,3,3]', 'kernel [1,1,5,5]')
    // padding 1 makes it fit
    const ok = await post(app, '/v1/conv2d', { input: nested([1, 1, 3, 3]), kernel: nested([1, 1, 5, 5]), padding: 1 })
    expect(ok.statusCode, ok.body).toBe(200)
    expect(ok.json().result.shape).toEqual([1, 1, 1, 1])
    // dilation makes a 3x3 kernel span 5x5
    await mismatch('/v1/conv2d', { input: nested([1, 1, 4, 4]), kernel: nested([1, 1, 3, 3]), dilation: 2 }, 'input [1,1,4,4]', 'kernel [1,1,3,3]')
  })

  it('conv2d: bias and kernel', async () => {
    await mismatch('/v1/conv2d', { input: nested([1, 1, 3, 3]), kernel: nested([2, 1, 2, 2]), bias: [1, 2, 3] }, 'bias [3]', 'kernel [2,1,2,2]')
  })

  it('attention: key and query E', async () => {
    await mismatch('/v1/attention', { query: nested([2, 4]), key: nested([3, 5]), value: nested([3, 6]) }, 'query [2,4]', 'key [3,5]')
  })

  it('attention: value and key Lk', async () => {
    await mismatch('/v1/attention', { query: nested([2, 4]), key: nested([3, 4]), value: nested([5, 6]) }, 'key [3,4]', 'value [5,6]')
  })

  it('attention: a mask that does not broadcast to the scores', async () => {
    const mask = nested([2, 2], () => true)
    await mismatch('/v1/attention', { query: nested([2, 4]), key: nested([3, 4]), value: nested([3, 6]), mask }, 'mask [2,2]', 'key [3,4]')
  })

  it('attention: batch dimensions that do not broadcast', async () => {
    await mismatch('/v1/attention', { query: nested([2, 1, 4]), key: nested([3, 1, 4]), value: nested([3, 1, 4]) }, 'query [2,1,4]', 'key [3,1,4]')
  })
})

describe('400 INVALID_ARGUMENT: an option out of range', () => {
  const input = nested([1, 2, 5, 5])
  const kernel = nested([2, 2, 3, 3])

  async function invalid (body: Record<string, unknown>, codes: readonly string[] = ['INVALID_ARGUMENT']): Promise<string> {
    return expectError(await post(app, '/v1/conv2d', { input, kernel, ...body }), 400, codes).message
  }

  it('conv2d: stride 0', async () => {
    expect(await invalid({ stride: 0 })).toContain('stride')
    expect(await invalid({ stride: [1, 0] })).toContain('stride')
  })

  it('conv2d: negative padding', async () => {
    expect(await invalid({ padding: -1 })).toContain('padding')
    expect(await invalid({ padding: [0, -2] })).toContain('padding')
  })

  it('conv2d: dilation 0', async () => {
    expect(await invalid({ dilation: 0 })).toContain('dilation')
  })

  it('conv2d: groups 0', async () => {
    expect(await invalid({ groups: 0 })).toContain('groups')
    expect(await invalid({ groups: -1 })).toContain('groups')
  })

  it('conv2d: groups not dividing the channels', async () => {
    const msg = expectError(await post(app, '/v1/conv2d', {
      input: nested([1, 3, 4, 4]),
      kernel: nested([2, 1, 2, 2]),
      groups: 2
    }), 400, ['INVALID_ARGUMENT', 'SHAPE_MISMATCH']).message
    expect(msg).toContain('groups')
  })

  it('conv2d: padding "same" with stride 2', async () => {
    const msg = await invalid({ padding: 'same', stride: 2 })
    expect(msg).toContain('same')
    expect(msg).toContain('stride')
  })

  it('conv2d: an unknown padding word or layout fails the schema', async () => {
    await invalid({ padding: 'full' }, ['FST_ERR_VALIDATION', 'INVALID_ARGUMENT'])
    await invalid({ layout: 'CHWN' }, ['FST_ERR_VALIDATION', 'INVALID_ARGUMENT'])
  })

  it('attention: a non-finite scale (JSON 1e400 overflows to Infinity; the string "NaN" is not a number)', async () => {
    const q = '[[1,0],[0,1]]'
    for (const scale of ['1e400', '-1e400', '"NaN"', '"Infinity"']) {
      const res = await post(app, '/v1/attention', `{"query":${q},"key":${q},"value":${q},"scale":${scale}}`)
      expectError(res, 400, ['INVALID_ARGUMENT', 'FST_ERR_VALIDATION'])
    }
  })

  it('linear: an unknown activation', async () => {
    const msg = expectError(await post(app, '/v1/linear', {
      input: [[1, 2]],
      weights: [[1], [2]],
      activation: 'swish'
    }), 400, ['FST_ERR_VALIDATION', 'INVALID_ARGUMENT']).message
    expect(msg).toContain('activation')
  })
})

describe('413 TOO_LARGE and FST_ERR_CTP_BODY_TOO_LARGE: refused before any computing', () => {
  let limited: FastifyInstance
  let small: FastifyInstance

  beforeAll(async () => {
    limited = await make({ maxElements: 1000, maxFlops: 1e4 })
    small = await make({ bodyLimitBytes: 1000 })
  })

  afterAll(async () => {
    await limited?.close()
    await small?.close()
  })

  it('a body over BODY_LIMIT_BYTES', async () => {
    const body = JSON.stringify({ a: nested([400], () => 1.5), b: nested([400], () => 2.5) })
    expect(body.length).toBeGreaterThan(1000)
    expectError(await post(small, '/v1/dot', body), 413, 'FST_ERR_CTP_BODY_TOO_LARGE')
    // the same app takes a body under the limit
    const ok = await post(small, '/v1/dot', { a: [1, 2, 3], b: [4, 5, 6] })
    expect(ok.statusCode, ok.body).toBe(200)
    expect(ok.json().result.data).toBe(32)
  })

  it('an operand over MAX_ELEMENTS (nested, flat and base64; an operand at the limit is fine)', async () => {
    let msg = expectError(await post(limited, '/v1/dot', { a: nested([1001]), b: nested([1001]) }), 413, 'TOO_LARGE').message
    expect(msg).toContain('a')
    msg = expectError(await post(limited, '/v1/dot', { a: [1], b: { shape: [1001], data: 'AAAA' } }), 413, 'TOO_LARGE').message
    expect(msg).toContain('b')
    // declared shapes are checked before the data is read
    expectError(await post(limited, '/v1/dot', { a: { shape: [2, 1000], data: 'AAAA' }, b: [1] }), 413, 'TOO_LARGE')
    expectError(await post(limited, '/v1/dot', { a: { shape: [2001], data: [1] }, b: [1] }), 413, 'TOO_LARGE')
    const atLimit = base64Tensor([1000])
    const ok = await post(limited, '/v1/dot', { a: atLimit, b: atLimit })
    expect(ok.statusCode, ok.body).toBe(200)
  })

  it('a result over MAX_ELEMENTS: [1000,1]·[1,1000] gives 1e6 elements', async () => {
    const msg = expectError(await post(limited, '/v1/matmul', {
      a: base64Tensor([1000, 1]),
      b: base64Tensor([1, 1000])
    }), 413, 'TOO_LARGE').message
    expect(msg).toContain('result')
  })

  it('an intermediate over MAX_ELEMENTS: attention scores [Lq,Lk] while query, key, value and output fit', async () => {
    const t = base64Tensor([1000, 1])
    const msg = expectError(await post(limited, '/v1/attention', { query: t, key: t, value: t }), 413, 'TOO_LARGE').message
    expect(msg).toContain('scores')
  })

  it('an intermediate over MAX_ELEMENTS: the conv2d column buffer while input, kernel and output fit', async () => {
    // input 900, kernel 9, output 784, columns 9 x 784
    const msg = expectError(await post(limited, '/v1/conv2d', {
      input: base64Tensor([1, 1, 30, 30]),
      kernel: base64Tensor([1, 1, 3, 3])
    }), 413, 'TOO_LARGE').message
    expect(msg).toContain('column')
  })

  it('work over MAX_FLOPS', async () => {
    // MAX_FLOPS 1e4: 2·5·100·10 = 1e4 fits, 2·10·100·10 = 2e4 does not; every tensor has at most 1000 elements
    const ok = await post(limited, '/v1/matmul', { a: base64Tensor([5, 100]), b: base64Tensor([100, 10]) })
    expect(ok.statusCode, ok.body).toBe(200)
    let msg = expectError(await post(limited, '/v1/matmul', {
      a: base64Tensor([10, 100]),
      b: base64Tensor([100, 10])
    }), 413, 'TOO_LARGE').message
    expect(msg).toMatch(/MAX_FLOPS|floating-point/)
    msg = expectError(await post(limited, '/v1/linear', {
      input: base64Tensor([10, 100]),
      weights: base64Tensor([100, 10])
    }), 413, 'TOO_LARGE').message
    expect(msg).toMatch(/MAX_FLOPS|floating-point/)
    // attention: 2·Lq·Lk·(E+Ev) = 2·20·20·40 = 32000
    const t = base64Tensor([20, 20])
    msg = expectError(await post(limited, '/v1/attention', { query: t, key: t, value: t }), 413, 'TOO_LARGE').message
    expect(msg).toMatch(/MAX_FLOPS|floating-point/)
  })

  it('a declared shape of 2^40 x 2^40 x 2^40 and a dimension of 1e300 are refused quickly with 413 or 400', async () => {
    const start = Date.now()
    const huge = [1099511627776, 1099511627776, 1099511627776]
    for (const a of [
      { shape: huge, data: 'AAAA' },
      { shape: huge, data: [1] },
      { shape: huge, dtype: 'float32', data: 'AAAA' },
      { shape: [1e300], data: 'AAAA' },
      { shape: [1e300, 0], data: [] },
      { shape: [2 ** 53], data: 'AAAA' }
    ]) {
      const res = await post(app, '/v1/dot', { a, b: [1] })
      expect([400, 413], res.body).toContain(res.statusCode)
      expectError(res, res.statusCode, ['TOO_LARGE', 'INVALID_TENSOR', 'FST_ERR_VALIDATION'])
    }
    // as raw JSON text too, where 1e300 is not rewritten by a serializer
    const res = await post(app, '/v1/matmul', '{"a":{"shape":[1e300,1e300],"data":"AAAA"},"b":[[1]]}')
    expect([400, 413]).toContain(res.statusCode)
    expectError(res, res.statusCode, ['TOO_LARGE', 'INVALID_TENSOR', 'FST_ERR_VALIDATION'])
    expect(Date.now() - start).toBeLessThan(2000)
  })

  it('the limited apps still compute', async () => {
    await expectMatmulWorks(limited)
    await expectMatmulWorks(small)
  })
})

describe('404 NOT_FOUND and 415 FST_ERR_CTP_INVALID_MEDIA_TYPE', () => {
  it('an unknown route, GET and POST', async () => {
    expectError(await app.inject({ method: 'GET', url: '/v1/nothing' }), 404, 'NOT_FOUND')
    expectError(await post(app, '/v1/nothing', { a: [1], b: [1] }), 404, 'NOT_FOUND')
    const body = expectError(await app.inject({ method: 'GET', url: '/nope?x=1' }), 404, 'NOT_FOUND')
    expect(body.message).toContain('/nope')
  })

  it('a known path with the wrong method: 405 with Allow', async () => {
    const get = await app.inject({ method: 'GET', url: '/v1/matmul' })
    expect(expectError(get, 405, 'METHOD_NOT_ALLOWED').message).toBe('GET /v1/matmul is not allowed: use POST')
    expect(get.headers.allow).toBe('POST')
    const del = await app.inject({ method: 'DELETE', url: '/health?x=1' })
    expectError(del, 405, 'METHOD_NOT_ALLOWED')
    expect(del.headers.allow).toBe('GET, HEAD')
  })

  it('GET / leads to the documentation', async () => {
    const res = await app.inject({ method: 'GET', url: '/' })
    expect(res.statusCode).toBe(302)
    expect(res.headers.location).toBe('/docs')
  })

  it('text/plain', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/dot',
      payload: '{"a":[1],"b":[2]}',
      headers: { 'content-type': 'text/plain' }
    })
    expectError(res, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
  })

  it('application/x-www-form-urlencoded', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/dot',
      payload: 'a=1&b=2',
      headers: { 'content-type': 'application/x-www-form-urlencoded' }
    })
    expectError(res, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
  })

  it('a body without a content-type, and other non-JSON types', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/dot', payload: '{"a":[1],"b":[2]}' })
    expectError(res, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    for (const type of ['multipart/form-data; boundary=x', 'application/xml']) {
      expectError(await post(app, '/v1/dot', '{"a":[1],"b":[2]}', { 'content-type': type }), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    }
    // application/octet-stream is a safetensors file: JSON text is not one, and is told to say it is JSON
    const json = await post(app, '/v1/dot', '{"a":[1],"b":[2]}', { 'content-type': 'application/octet-stream' })
    expectError(json, 400, 'INVALID_TENSOR')
    expect(json.json().message).toMatch(/looks like JSON.*Content-Type: application\/json/)
    // a body that is neither still gets the format's own reason
    const odd = await post(app, '/v1/dot', 'xyzxyzxyzxyz', { 'content-type': 'application/octet-stream' })
    expect(expectError(odd, 400, 'INVALID_TENSOR').message).toMatch(/safetensors header length \d+ is over/)
  })

  it('application/json with a charset is JSON', async () => {
    const res = await post(app, '/v1/dot', { a: [1, 2, 3], b: [4, 5, 6] }, { 'content-type': 'application/json; charset=utf-8' })
    expect(res.statusCode, res.body).toBe(200)
  })
})

describe('503 OVERLOADED', () => {
  it('six concurrent slow requests with 1 worker and a queue of 1: exactly 2 answer 200, 4 answer 503 with Retry-After', async () => {
    const busy = await make({ workers: 1, maxQueue: 1, inlineMaxFlops: 0, workerFile: SLOW_WORKER })
    try {
      // each takes 1 s in the slow worker, far longer than admitting all six
      const replies = await Promise.all(Array.from({ length: 6 }, () => post(busy, '/v1/matmul', MATMUL_SMALL)))
      const ok = replies.filter(r => r.statusCode === 200)
      const refused = replies.filter(r => r.statusCode !== 200)
      expect(replies.map(r => r.statusCode).sort()).toEqual([200, 200, 503, 503, 503, 503])
      for (const r of ok) expect(r.json().result.data).toEqual([[19, 22], [43, 50]])
      for (const r of refused) {
        expectError(r, 503, 'OVERLOADED')
        const after = r.headers['retry-after']
        expect(after).toBeDefined()
        expect(Number(after)).toBeGreaterThan(0)
      }
      // and, the queue drained, it serves again
      await expectMatmulWorks(busy)
    } finally {
      await busy.close()
    }
  })

  it('with no queue (maxQueue 0) one slow request in flight refuses another', async () => {
    const busy = await make({ workers: 1, maxQueue: 0, inlineMaxFlops: 0, workerFile: SLOW_WORKER })
    try {
      const first = post(busy, '/v1/matmul', MATMUL_SMALL)
      await waitFor(() => busy.pool.idleThreads === 0, 5000, 'the first request to reach the worker')
      const second = await post(busy, '/v1/matmul', MATMUL_SMALL)
      expectError(second, 503, 'OVERLOADED')
      expect(second.headers['retry-after']).toBeDefined()
      expect((await first).statusCode).toBe(200)
      await expectMatmulWorks(busy)
    } finally {
      await busy.close()
    }
  })
})

describe('504 TIMEOUT', () => {
  it('a computation past TASK_TIMEOUT_MS is stopped with 504; its worker is replaced and the app answers again', async () => {
    const slow = await make({ workers: 1, taskTimeoutMs: 100, inlineMaxFlops: 0, workerFile: SLOW_WORKER })
    try {
      const start = Date.now()
      const res = await post(slow, '/v1/matmul', MATMUL_SMALL) // 1 s in the slow worker
      const elapsed = Date.now() - start
      const err = expectError(res, 504, 'TIMEOUT')
      expect(err.message).toContain('100')
      expect(elapsed).toBeLessThan(1000)
      // the stopped worker is replaced: wait for the new thread to be up and idle
      await waitFor(() => slow.pool.threads.length === 1 && slow.pool.idleThreads === 1, 10000, 'a replacement worker')
      const dot = await post(slow, '/v1/dot', { a: [1, 2, 3], b: [4, 5, 6] }) // dot is not slowed
      expect(dot.statusCode, dot.body).toBe(200)
      expect(dot.json().result.data).toBe(32)
    } finally {
      await slow.close()
    }
  })

  it('a task that waited for a worker is not stopped for its wait: TASK_TIMEOUT_MS bounds the run in the worker', async () => {
    // Contract: TASK_TIMEOUT_MS is the "longest one computation may run in its worker".
    // A runs past the limit and is stopped; B (a dot of 3 numbers) waited behind it and then
    // runs in microseconds on the replacement worker, so B must answer 200, not 504.
    const app2 = await make({ workers: 1, maxQueue: 1, taskTimeoutMs: 300, inlineMaxFlops: 0, workerFile: SLOW_WORKER })
    try {
      const a = post(app2, '/v1/matmul', MATMUL_SMALL) // 1 s in the slow worker
      await waitFor(() => app2.pool.idleThreads === 0, 5000, 'the slow request to reach the worker')
      const b = post(app2, '/v1/dot', { a: [1, 2, 3], b: [4, 5, 6] })
      const [ra, rb] = await Promise.all([a, b])
      expectError(ra, 504, 'TIMEOUT')
      expect(rb.statusCode, rb.body).toBe(200)
      expect(JSON.parse(rb.body).result.data).toBe(32)
    } finally {
      await app2.close()
    }
  })
})

describe('the service keeps serving', () => {
  it('every error response so far left the shared app working: [[1,2],[3,4]]·[[5,6],[7,8]] = [[19,22],[43,50]]', async () => {
    await expectMatmulWorks(app)
    const health = await app.inject({ method: 'GET', url: '/health' })
    expect(health.statusCode).toBe(200)
  })
})

describe('errors that name the mistake', () => {
  it('a misspelt field: the missing field and the unknown one, on the main thread and in a worker', async () => {
    const inWorker = await make({ workerParseMinBytes: 1 })
    try {
      for (const target of [app, inWorker]) {
        const e = expectError(await post(target, '/v1/matmul', { a: [[1, 2]], bb: [[3], [4]] }), 400, 'FST_ERR_VALIDATION')
        expect(e.message).toBe('body must have required property \'b\', and has the unknown field "bb"')
      }
    } finally {
      await inWorker.close()
    }
    // a missing field alone says only that
    expect(expectError(await post(app, '/v1/matmul', { a: [[1, 2]] }), 400, 'FST_ERR_VALIDATION').message).toBe('body must have required property \'b\'')
  })

  it('JSON posted as a file, a file posted as JSON, gzip without Content-Encoding: each is told what to send', async () => {
    const json = JSON.stringify(MATMUL_SMALL)
    for (const workerParseMinBytes of [0, 1]) {
      const target = workerParseMinBytes === 0 ? app : await make({ workerParseMinBytes })
      try {
        const asFile = await target.inject({ method: 'POST', url: '/v1/matmul', payload: json, headers: { 'content-type': 'application/octet-stream' } })
        expect(expectError(asFile, 400, 'INVALID_TENSOR').message).toMatch(/looks like JSON.*Content-Type: application\/json/)
        const header = Buffer.from(JSON.stringify({ a: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }).padEnd(56, ' '))
        const length = Buffer.alloc(8)
        length.writeBigUInt64LE(BigInt(header.length))
        const file = Buffer.concat([length, header, Buffer.alloc(8)])
        const fileAsJson = await target.inject({ method: 'POST', url: '/v1/matmul', payload: file, headers: { 'content-type': 'application/json' } })
        expect(expectError(fileAsJson, 400, 'FST_ERR_CTP_INVALID_JSON_BODY').message).toMatch(/looks like a safetensors file.*application\/octet-stream/)
        const gz = gzipSync(json)
        for (const type of ['application/json', 'application/octet-stream']) {
          const res = await target.inject({ method: 'POST', url: '/v1/matmul', payload: gz, headers: { 'content-type': type } })
          expect(JSON.parse(res.body).message).toMatch(/looks gzip-compressed.*Content-Encoding: gzip/)
          expect(res.statusCode).toBe(400)
        }
      } finally {
        if (target !== app) await target.close()
      }
    }
  })

  it('a body over the limit names the limit and the setting', async () => {
    const small = await make({ bodyLimitBytes: 1000 })
    try {
      const res = await post(small, '/v1/matmul', { a: nested([20, 20]), b: nested([20, 20]) })
      expect(expectError(res, 413, 'FST_ERR_CTP_BODY_TOO_LARGE').message).toMatch(/over the limit of 1000 bytes \(BODY_LIMIT_BYTES\)/)
    } finally {
      await small.close()
    }
  })
})
