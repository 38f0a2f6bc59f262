/**
 * The data path's recycled buffers over real sockets: bodies read into pooled buffers, moved to a
 * worker, written over by the reply and given back once the socket has written them. Many
 * requests with different operands at once, round after round, so that every buffer is used
 * again: each reply must be its own request's product, byte for byte. And the body reader's
 * rules: chunked bodies (no Content-Length), a body shorter than its Content-Length, one over
 * the limit.
 */
import { connect } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { listen } from './helpers/bodies.js'
import { checkFile, writeFile } from './helpers/safetensors.js'

let app: FastifyInstance
let base: string

beforeAll(async () => {
  app = await buildApp({ logLevel: 'silent', workers: 2, bodyLimitBytes: 4 * 1024 * 1024 })
  base = await listen(app)
})
afterAll(async () => { await app.close() })

/** n×n float32 operands from a seed: small integers, so that float32 products are exact. */
function operands (n: number, seed: number): { a: Float32Array, b: Float32Array, c: Float64Array } {
  const a = new Float32Array(n * n).map((_, i) => ((i * 7 + seed * 13) % 11) - 5)
  const b = new Float32Array(n * n).map((_, i) => ((i * 3 + seed * 5) % 7) - 3)
  const c = new Float64Array(n * n)
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) c[i * n + j] += a[i * n + k] * b[k * n + j]
  return { a, b, c }
}

describe('recycled buffers', () => {
  it('48 different safetensors and base64 products at once, four rounds: every reply is its own request\'s product', async () => {
    const n = 96 // 72 KiB operands: bodies, results and replies all of pooled sizes
    for (let round = 0; round < 4; round++) {
      await Promise.all(Array.from({ length: 48 }, async (_, r) => {
        const seed = round * 48 + r
        const { a, b, c } = operands(n, seed)
        if (r % 2 === 0) {
          const body = writeFile({ a: { dtype: 'F32', shape: [n, n], values: a }, b: { dtype: 'F32', shape: [n, n], values: b } })
          const res = await fetch(`${base}/v1/matmul`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body })
          expect(res.status).toBe(200)
          const { tensors } = checkFile(new Uint8Array(await res.arrayBuffer()))
          expect(tensors.result.shape).toEqual([n, n])
          expect(tensors.result.values).toEqual(Array.from(c))
        } else {
          const t = (x: Float32Array): object => ({ shape: [n, n], dtype: 'float32', data: Buffer.from(x.buffer).toString('base64') })
          const res = await fetch(`${base}/v1/matmul`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ a: t(a), b: t(b), encoding: 'base64' }) })
          expect(res.status).toBe(200)
          const { result } = await res.json() as { result: { shape: number[], data: string } }
          const bytes = Buffer.from(result.data, 'base64')
          expect(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, n * n))).toEqual(Array.from(c))
        }
      }))
    }
    // the buffers did come back: the main thread's pool holds some between requests
    const metrics = await (await fetch(`${base}/metrics`)).text()
    expect(Number(/^tensor_buffer_pool_bytes (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0)
    // and the workers' busy time is counted
    const busy = [...metrics.matchAll(/^tensor_worker_busy_seconds_total\{worker="\d+"\} ([0-9.e-]+)/gm)].map(m => Number(m[1]))
    expect(busy.length).toBe(2)
    expect(busy.every(s => s > 0)).toBe(true)
  })
})

describe('a reply\'s buffer is reused only once the socket has written it', () => {
  it('a client that reads its 4 MB reply late still gets its own bytes while others reuse the pool', async () => {
    const big = await buildApp({ logLevel: 'silent', workers: 2, bodyLimitBytes: 16 * 1024 * 1024 })
    const origin = new URL(await listen(big))
    try {
      const n = 1024
      const fileOf = (seed: number): Buffer => {
        const { a, b } = { a: new Float32Array(n * n).map((_, i) => ((i * 7 + seed) % 11) - 5), b: new Float32Array(n * n).map((_, i) => ((i * 3 + seed) % 7) - 3) }
        return writeFile({ a: { dtype: 'F32', shape: [n, n], values: a }, b: { dtype: 'F32', shape: [n, n], values: b } })
      }
      const post = async (body: Buffer): Promise<Buffer> => {
        const res = await fetch(`${origin.origin}/v1/matmul`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body })
        expect(res.status).toBe(200)
        return Buffer.from(await res.arrayBuffer())
      }
      const slowBody = fileOf(1)
      const expected = await post(slowBody)
      // the slow client: sends its request, then reads nothing for a while
      const socket = connect(Number(origin.port), origin.hostname)
      await new Promise(resolve => socket.once('connect', resolve))
      socket.pause()
      socket.write(`POST /v1/matmul HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${slowBody.length}\r\nConnection: close\r\n\r\n`)
      socket.write(slowBody)
      await new Promise(resolve => setTimeout(resolve, 300))
      // meanwhile, other requests of the same sizes take buffers from the pool and write over them
      for (let seed = 2; seed < 8; seed++) await post(fileOf(seed))
      const chunks: Buffer[] = []
      socket.on('data', c => chunks.push(c))
      socket.resume()
      await new Promise(resolve => socket.once('end', resolve))
      const reply = Buffer.concat(chunks)
      const body = reply.subarray(reply.indexOf('\r\n\r\n') + 4)
      expect(body.length).toBe(expected.length)
      expect(body.equals(expected)).toBe(true)
    } finally {
      await big.close()
    }
  })
})

/** Sends raw bytes on a new connection and resolves with everything the server sends back. */
async function raw (request: Buffer[], halfClose = false): Promise<string> {
  const url = new URL(base)
  return await new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname)
    const chunks: Buffer[] = []
    socket.on('data', c => chunks.push(c))
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')))
    socket.on('error', reject)
    socket.on('connect', () => {
      for (const part of request) socket.write(part)
      if (halfClose) socket.end() // (the server sees the end of what was sent)
    })
  })
}

describe('the body reader', () => {
  const n = 200 // 160 KiB a tensor: read in many socket chunks
  const { a, b, c } = operands(n, 3)
  const file = writeFile({ a: { dtype: 'F32', shape: [n, n], values: a }, b: { dtype: 'F32', shape: [n, n], values: b } })

  it('reads a chunked body (no Content-Length) grown as it comes', async () => {
    const parts: Buffer[] = [Buffer.from('POST /v1/matmul HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n')]
    for (let at = 0; at < file.length; at += 50_000) {
      const piece = file.subarray(at, at + 50_000)
      parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'))
    }
    parts.push(Buffer.from('0\r\n\r\n'))
    const reply = await raw(parts)
    expect(reply.slice(0, 12)).toBe('HTTP/1.1 200')
    const body = Buffer.from(reply.slice(reply.indexOf('\r\n\r\n') + 4), 'latin1')
    expect(checkFile(new Uint8Array(body)).tensors.result.values).toEqual(Array.from(c))
  })

  it('a body that ends before its Content-Length is 400; one over BODY_LIMIT_BYTES is 413; the service goes on', async () => {
    const short = await raw([Buffer.from(`POST /v1/matmul HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${file.length + 10}\r\n\r\n`), file], true)
      .catch(() => 'reset')
    // (the client never sends the last 10 bytes: the server waits, then the connection ends)
    expect(['reset', ''].includes(short) || short.startsWith('HTTP/1.1 400')).toBe(true)
    const big = Buffer.alloc(5 * 1024 * 1024)
    const over = await fetch(`${base}/v1/matmul`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: big })
    expect(over.status).toBe(413)
    const chunkedOver = await raw([
      Buffer.from('POST /v1/matmul HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n'),
      ...Array.from({ length: 5 }, () => [Buffer.from(`${(1 << 20).toString(16)}\r\n`), Buffer.alloc(1 << 20), Buffer.from('\r\n')]).flat(),
      Buffer.from('0\r\n\r\n')
    ]).catch(() => 'reset')
    expect(chunkedOver === 'reset' || chunkedOver.startsWith('HTTP/1.1 413')).toBe(true)
    const ok = await fetch(`${base}/v1/matmul`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: file })
    expect(ok.status).toBe(200)
  })
})
