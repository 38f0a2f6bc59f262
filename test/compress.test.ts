/**
 * Compression both ways: replies compressed as Accept-Encoding asks from COMPRESS_MIN_BYTES;
 * request bodies in gzip, deflate or br (JSON and safetensors alike) with BODY_LIMIT_BYTES on the
 * decompressed bytes; a body that does not decompress is a 400, an unknown Content-Encoding a 415.
 * Then a fuzz test: truncated and corrupted streams, bombs, mislabelled encodings.
 */
import zlib from 'node:zlib'
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { replyCoding } from '../src/plugins/compress.js'
import { expectError, nested } from './helpers/bodies.js'
import { checkFile, writeFile } from './helpers/safetensors.js'

const LIMIT = 200_000
let app: FastifyInstance

beforeAll(async () => {
  app = await buildApp({ logLevel: 'silent', workers: 1, bodyLimitBytes: LIMIT, compressMinBytes: 1024 })
  await app.ready()
})
afterAll(async () => { await app.close() })

const COMPRESS: Record<string, (b: Buffer) => Buffer> = {
  gzip: b => zlib.gzipSync(b),
  'x-gzip': b => zlib.gzipSync(b),
  deflate: b => zlib.deflateSync(b),
  br: b => zlib.brotliCompressSync(b)
}
const DECOMPRESS: Record<string, (b: Buffer) => Buffer> = {
  gzip: b => zlib.gunzipSync(b),
  deflate: b => zlib.inflateSync(b),
  br: b => zlib.brotliDecompressSync(b)
}

const body = JSON.stringify({ a: nested([20, 30], i => (i % 13) / 7), b: nested([30, 20], i => (i % 5) - 2) })

async function send (payload: Buffer | string, headers: Record<string, string>, url = '/v1/matmul'): Promise<any> {
  return await app.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json', ...headers } })
}

describe('replies', () => {
  it('Accept-Encoding picks the coding: the highest q, br before gzip before deflate on a tie, none for q=0', () => {
    expect(replyCoding(undefined)).toBeNull()
    expect(replyCoding('gzip, deflate, br')).toBe('br')
    expect(replyCoding('gzip, deflate')).toBe('gzip')
    expect(replyCoding('deflate;q=1, gzip;q=0.5')).toBe('deflate')
    expect(replyCoding('br;q=0, gzip;q=0.1')).toBe('gzip')
    expect(replyCoding('identity')).toBeNull()
    expect(replyCoding('*')).toBe('br')
    expect(replyCoding('*;q=0, gzip')).toBe('gzip')
    expect(replyCoding('x-gzip')).toBe('gzip')
    expect(replyCoding('zstd')).toBeNull()
  })

  it('a reply of COMPRESS_MIN_BYTES or more is compressed as asked, with Vary; it decompresses to the plain reply', async () => {
    const plain = await send(body, {})
    expect(plain.headers['content-encoding']).toBeUndefined()
    expect(plain.headers.vary).toBe('accept-encoding')
    expect(plain.rawPayload.length).toBeGreaterThan(1024)
    for (const coding of ['gzip', 'deflate', 'br']) {
      const res = await send(body, { 'accept-encoding': coding })
      expect(res.statusCode).toBe(200)
      expect(res.headers['content-encoding']).toBe(coding)
      expect(Number(res.headers['content-length'])).toBe(res.rawPayload.length)
      expect(res.rawPayload.length).toBeLessThan(plain.rawPayload.length)
      expect(DECOMPRESS[coding](res.rawPayload).toString()).toBe(plain.body)
    }
  })

  it('small replies and errors below the threshold are sent as they are; safetensors replies are compressed too', async () => {
    const small = await send(JSON.stringify({ a: [1, 2], b: [3, 4] }), { 'accept-encoding': 'gzip' })
    expect(small.headers['content-encoding']).toBeUndefined()
    expect(small.json().result.data).toBe(11)
    const error = await send('{"a":', { 'accept-encoding': 'gzip' })
    expectError(error, 400, 'FST_ERR_CTP_INVALID_JSON_BODY')
    const values = Array.from({ length: 400 }, (_, i) => i % 3)
    const file = writeFile({ a: { dtype: 'F32', shape: [20, 20], values }, b: { dtype: 'F32', shape: [20, 20], values } })
    const res = await send(file, { 'content-type': 'application/octet-stream', 'accept-encoding': 'gzip' })
    expect(res.headers['content-encoding']).toBe('gzip')
    expect(checkFile(zlib.gunzipSync(res.rawPayload)).tensors.result.shape).toEqual([20, 20])
  })
})

describe('request bodies', () => {
  it('gzip, x-gzip, deflate and br bodies, JSON and safetensors, answer as the plain body does', async () => {
    const plain = await send(body, {})
    const file = writeFile({ a: { dtype: 'F32', shape: [2], values: [1, 2] }, b: { dtype: 'F32', shape: [2], values: [3, 4] } })
    for (const [coding, compress] of Object.entries(COMPRESS)) {
      const res = await send(compress(Buffer.from(body)), { 'content-encoding': coding })
      expect(res.statusCode, res.body).toBe(200)
      expect(res.body).toBe(plain.body)
      const bin = await send(compress(file), { 'content-type': 'application/octet-stream', 'content-encoding': coding.toUpperCase() }, '/v1/dot')
      expect(checkFile(bin.rawPayload).tensors.result.values).toEqual([11])
    }
    const identity = await send(body, { 'content-encoding': 'identity' })
    expect(identity.body).toBe(plain.body)
  })

  it('BODY_LIMIT_BYTES applies to the decompressed bytes: a bomb is a 413', async () => {
    // 10 MB of spaces in 10 KB of gzip, well under the limit
    const bomb = zlib.gzipSync(Buffer.alloc(50 * LIMIT, 32), { level: 9 })
    expect(bomb.length).toBeLessThan(LIMIT)
    const res = await send(bomb, { 'content-encoding': 'gzip' })
    const error = expectError(res, 413, 'FST_ERR_CTP_BODY_TOO_LARGE')
    expect(error.message).toBe(`the body, decompressed, is over the limit of ${LIMIT} bytes (BODY_LIMIT_BYTES)`)
    // a decompressed body at the limit is fine
    const fits = JSON.stringify({ a: [1], b: [2] }).padEnd(LIMIT, ' ')
    expect((await send(zlib.gzipSync(fits), { 'content-encoding': 'gzip' })).statusCode).toBe(200)
    expect((await send(zlib.gzipSync(fits + ' '), { 'content-encoding': 'gzip' })).statusCode).toBe(413)
  })

  it('a body that does not decompress is a 400 INVALID_ENCODING; an unknown Content-Encoding a 415 saying so', async () => {
    const gz = zlib.gzipSync(Buffer.from(body))
    const truncated = expectError(await send(gz.subarray(0, gz.length - 10), { 'content-encoding': 'gzip' }), 400, 'INVALID_ENCODING')
    expect(truncated.message).toBe('the body is not valid gzip: unexpected end of file')
    expectError(await send(gz, { 'content-encoding': 'br' }), 400, 'INVALID_ENCODING')
    expectError(await send(body, { 'content-encoding': 'deflate' }), 400, 'INVALID_ENCODING')
    for (const coding of ['zstd', 'compress', 'gzip, br', 'x']) {
      const res = expectError(await send(body, { 'content-encoding': coding }), 415, 'UNSUPPORTED_ENCODING')
      expect(res.message).toBe(`Content-Encoding ${JSON.stringify(coding)} is not supported: send the body as it is, or in gzip, deflate or br`)
    }
  })
})

describe('fuzzing compressed bodies', () => {
  const RUNS = 5000
  it(`${RUNS} truncated, corrupted, mislabelled and oversized compressed bodies: never a 5xx`, async () => {
    const sources = [Buffer.from(body), Buffer.from('{"a":[1,2],"b":[3,4]}'), Buffer.alloc(3 * LIMIT, 32), Buffer.from('not json')]
    const seen = new Map<number, number>()
    await fc.assert(fc.asyncProperty(
      fc.constantFrom(...sources.keys()),
      fc.constantFrom('gzip', 'deflate', 'br'),
      fc.constantFrom('gzip', 'deflate', 'br', 'x-gzip', 'identity', 'zstd', 'GZIP', ' gzip ', 'gzip, gzip', ''),
      fc.oneof(
        fc.record({ kind: fc.constant('none') }),
        fc.record({ kind: fc.constant('truncate'), at: fc.nat() }),
        fc.record({ kind: fc.constant('flip'), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
        fc.record({ kind: fc.constant('append'), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) })
      ),
      async (source, coding, label, change) => {
        let payload = COMPRESS[coding](sources[source])
        if (change.kind === 'truncate') payload = payload.subarray(0, change.at % payload.length)
        if (change.kind === 'flip') payload[change.at % payload.length] = change.byte
        if (change.kind === 'append') payload = Buffer.concat([payload, change.bytes])
        const res = await send(payload, label === '' ? {} : { 'content-encoding': label })
        seen.set(res.statusCode, (seen.get(res.statusCode) ?? 0) + 1)
        expect(res.statusCode, `${coding} as ${label}, ${change.kind}: ${res.body.slice(0, 200)}`).toBeLessThan(500)
        if (res.statusCode !== 200) {
          const json = res.json()
          expect(Object.keys(json).sort()).toEqual(['code', 'error', 'message', 'statusCode'])
          expect([400, 413, 415]).toContain(res.statusCode)
        }
      }), { numRuns: RUNS })
    for (const status of [200, 400, 413, 415]) expect(seen.get(status) ?? 0).toBeGreaterThan(0)
    const res = await send(zlib.gzipSync('{"a":[[1,2],[3,4]],"b":[[5,6],[7,8]]}'), { 'content-encoding': 'gzip' })
    expect(res.json()).toEqual({ result: { shape: [2, 2], dtype: 'float64', data: [[19, 22], [43, 50]] } })
  }, 120_000)
})
