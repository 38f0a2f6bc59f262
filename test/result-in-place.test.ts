/**
 * A safetensors reply's result computed where the reply holds it (safetensorsResultPlace): the run
 * step's result array is the reply buffer's data section, so the encoding writes only the header.
 * The place's layout, the worker entry using it (the reply's buffer is the one lent, no copy), and
 * replies over HTTP large enough to be written into a lent buffer, checked value by value.
 */
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { unaryInfo } from '../src/kernels/unary.js'
import { buffers } from '../src/tensor/buffers.js'
import { replyBytesBound, type ReplySpec } from '../src/tensor/encode.js'
import { encodeSafetensors, safetensorsResultPlace } from '../src/tensor/safetensors.js'
import { run } from '../src/worker/index.js'
import { checkFile, writeFile } from './helpers/safetensors.js'

const tensor = (field: string, shape: number[]): ReplySpec['outputs'][number] => ({ field, shape, length: shape.reduce((p, d) => p * d, 1) })

describe('safetensorsResultPlace', () => {
  it('is the data section of the file encodeSafetensors writes: the result written there is the file\'s, not copied again', () => {
    for (const dtype of ['float32', 'float64'] as const) {
      const outputs = [tensor('result', [3, 5]), tensor('weights', [3, 4])]
      const into = new ArrayBuffer(4096)
      const place = safetensorsResultPlace(dtype, outputs, into)
      expect(place).not.toBeNull()
      if (place === null) return
      expect(place.length).toBe(27)
      expect(place.buffer).toBe(into)
      for (let i = 0; i < place.length; i++) place[i] = i / 4 - 3
      const bytes = encodeSafetensors(place, dtype, outputs, into)
      expect(bytes.buffer).toBe(into)
      // the place is exactly the file's data section: after the 8-byte length and the header
      expect(place.byteOffset).toBe(8 + Number(new DataView(into).getBigUint64(0, true)))
      const file = checkFile(bytes)
      expect(Array.from(file.tensors.result.values)).toEqual(Array.from({ length: 15 }, (_, i) => i / 4 - 3))
      expect(Array.from(file.tensors.weights.values)).toEqual(Array.from({ length: 12 }, (_, i) => (i + 15) / 4 - 3))
    }
  })

  it('is null where the file\'s tensors are not the result buffer\'s, in order and type, or the buffer is too small', () => {
    const into = new ArrayBuffer(4096)
    expect(safetensorsResultPlace('float16', [tensor('result', [4])], into)).toBeNull()
    expect(safetensorsResultPlace('bfloat16', [tensor('result', [4])], into)).toBeNull()
    // (the file orders tensors by name: weights before result would be moved)
    expect(safetensorsResultPlace('float32', [tensor('weights', [2]), tensor('result', [2])], into)).toBeNull()
    expect(safetensorsResultPlace('float32', [tensor('grads.a', [2]), { ...tensor('grads.b', [2]), absent: true }], into)).toBeNull()
    expect(safetensorsResultPlace('float32', [tensor('result', [2]), { field: 'step', shape: [], length: 0, value: 3 }], into)).toBeNull()
    expect(safetensorsResultPlace('float32', [tensor('result', [2000])], into)).toBeNull()
    expect(safetensorsResultPlace('float32', [tensor('result', [1000])], into)).not.toBeNull()
  })
})

describe('the worker entry', () => {
  it('computes a relu into the lent buffer, which comes back as the reply', () => {
    const n = 30000
    const x = new Float32Array(n).map((_, i) => Math.sin(i) * 100)
    const reply: ReplySpec = { format: 'safetensors', encoding: 'nested', outputs: [tensor('result', [n])] }
    const into = buffers.take(replyBytesBound('float32', reply))
    const answer = run({ operation: 'unary', dtype: 'float32', input: x, info: unaryInfo('relu', [n], { maxElements: 1e6, maxFlops: 1e9 }), reply, into, lent: [] } as never) as { bytes: Uint8Array }
    // (piscina's transferable wrapper holds the answer)
    const value = (Object.getOwnPropertySymbols(answer).map(s => (answer as unknown as Record<symbol, unknown>)[s]).find(v => typeof v === 'object' && v !== null && 'bytes' in v) ?? answer) as { bytes: Uint8Array }
    expect(value.bytes.buffer).toBe(into)
    const got = checkFile(value.bytes).tensors.result.values
    for (let i = 0; i < n; i++) if (got[i] !== Math.max(0, x[i])) expect(got[i], `element ${i}`).toBe(Math.max(0, x[i]))
  })
})

describe('over HTTP, replies of 64 KiB and more', () => {
  let onMain: FastifyInstance
  let inWorker: FastifyInstance
  beforeAll(async () => {
    onMain = await buildApp({ logLevel: 'silent', workers: 1, workerParseMinBytes: 0 })
    inWorker = await buildApp({ logLevel: 'silent', workers: 1, workerParseMinBytes: 1 })
    await Promise.all([onMain.ready(), inWorker.ready()])
  })
  afterAll(async () => { await Promise.all([onMain.close(), inWorker.close()]) })

  const post = async (app: FastifyInstance, route: string, file: Buffer, accept: string): Promise<{ statusCode: number, rawPayload: Buffer, body: string }> =>
    await app.inject({ method: 'POST', url: `/v1/${route}`, payload: file, headers: { 'content-type': 'application/octet-stream', accept } }) as never

  it('a graph whose first node computes in the reply\'s place and gives it back to the pool mid-run: the pool withholds it, so the reply is whole', async () => {
    const n = 20000
    const x = Array.from({ length: n }, (_, i) => Math.round(Math.sin(i) * 3 * 64) / 64)
    const body = {
      inputs: { x: { shape: [n], dtype: 'float32', data: x } },
      nodes: [{ name: 'a', operation: 'unary', op: 'relu', input: 'x' }, { name: 'b', operation: 'unary', op: 'neg', input: 'a' }],
      outputs: ['b']
    }
    // (work this small runs on the main thread unless inlineMaxFlops is 0)
    const app = await buildApp({ logLevel: 'silent', workers: 1, workerParseMinBytes: 0, inlineMaxFlops: 0 })
    try {
      for (let round = 0; round < 3; round++) {
        const res = await app.inject({ method: 'POST', url: '/v1/graph', payload: body, headers: { accept: 'application/octet-stream' } }) as unknown as { statusCode: number, rawPayload: Buffer, body: string }
        expect(res.statusCode, res.body.slice(0, 200)).toBe(200)
        const got = checkFile(res.rawPayload).tensors['outputs.b'].values
        const bad = got.findIndex((v, i) => v !== -Math.max(0, x[i]))
        expect(bad, `element ${bad} is ${got[bad]}, not ${-Math.max(0, x[bad])}`).toBe(-1)
      }
    } finally {
      await app.close()
    }
  })

  it('float32 and float64 results, one tensor or two (attention\'s weights), hold the values they should', async () => {
    const n = 20000
    const x = Array.from({ length: n }, (_, i) => Math.round(Math.cos(i) * 3 * 64) / 64)
    const b = x.slice(0, 200)
    const q = Array.from({ length: 2 * 64 * 16 }, (_, i) => Math.sin(i) / 4)
    const attention = writeFile({
      query: { dtype: 'F32', shape: [2, 64, 16], values: q },
      key: { dtype: 'F32', shape: [2, 64, 16], values: q.map(v => -v) },
      value: { dtype: 'F32', shape: [2, 64, 16], values: q.map(v => v * 2) }
    }, { returnWeights: 'true', causal: 'true' })
    const attentionJson = JSON.parse((await post(onMain, 'attention', attention, 'application/json')).body) as Record<string, { data: unknown[] }>
    // (x holds multiples of 1/64: exact in float32, so every expected value is exact)
    const files: Array<[string, Buffer, Record<string, (i: number) => number>]> = [
      ['unary', writeFile({ input: { dtype: 'F32', shape: [n], values: x } }, { op: 'relu' }), { result: i => Math.max(0, x[i]) }],
      ['unary', writeFile({ input: { dtype: 'F64', shape: [n], values: x } }, { op: 'neg' }), { result: i => -x[i] }],
      ['binary', writeFile({ a: { dtype: 'F64', shape: [100, 200], values: x }, b: { dtype: 'F64', shape: [200], values: b } }, { op: 'mul' }), { result: i => x[i] * b[i % 200] }],
      // (JSON prints float32 in the fewest digits that read back as the same float32)
      ['attention', attention, Object.fromEntries(['result', 'weights'].map(f => {
        const values = attentionJson[f].data.flat(3) as number[]
        return [f, (i: number) => Math.fround(values[i])]
      }))]
    ]
    for (const app of [onMain, inWorker]) {
      for (const [route, file, want] of files) {
        // twice: the second time the worker-parse path lends a buffer for a reply larger than the body
        for (let round = 0; round < 2; round++) {
          const res = await post(app, route, file, 'application/octet-stream')
          expect(res.statusCode, res.body.slice(0, 200)).toBe(200)
          const tensors = checkFile(res.rawPayload).tensors
          expect(Object.keys(tensors).sort()).toEqual(Object.keys(want))
          for (const [field, value] of Object.entries(want)) {
            const got = tensors[field].values
            const bad = Array.from(got).findIndex((v, i) => v !== value(i))
            expect(bad, `${route} ${field}: element ${bad} is ${got[bad]}, not ${value(bad)}`).toBe(-1)
          }
        }
      }
    }
  })
})
