/**
 * Refusals decided before the body is read reach a client that sends `Connection: close` and
 * its whole body before it reads (as Python's urllib does): 503 at capacity, 401, 429, 406, 413
 * from Content-Length, 404. With a raw socket: the request line, the headers and then 8 MB of
 * body in 64 KiB writes; every write must succeed (no broken pipe, no reset), and the status must
 * then be read. The server waits for the rest of the body before it answers (src/linger.ts).
 */
import { connect } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import type { Config } from '../../src/config.js'
import { listen } from '../helpers/bodies.js'

const SLOW_WORKER = new URL('../support/slow-worker.mjs', import.meta.url).href
const BODY_BYTES = 8 * 1024 * 1024

let app: FastifyInstance | undefined
afterEach(async () => {
  await app?.close()
  app = undefined
})

async function start (overrides: Partial<Config>): Promise<URL> {
  app = await buildApp({ logLevel: 'silent', ...overrides })
  return new URL(await listen(app))
}

/**
 * Sends the request with `Connection: close` and the whole body in 64 KiB writes, then reads the
 * answer: its status line and headers, or the error a write or the read met.
 */
async function urllibLike (origin: URL, path: string, headers: Record<string, string>, declared = BODY_BYTES): Promise<{ status: number, head: string, error?: string }> {
  const socket = connect(Number(origin.port), origin.hostname)
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const chunks: Buffer[] = []
  const state: { error?: string } = {}
  socket.on('data', c => chunks.push(c))
  socket.on('error', (e: NodeJS.ErrnoException) => { state.error = e.code ?? e.message })
  const closed = new Promise(resolve => { socket.once('close', resolve) })
  const head = `POST ${path} HTTP/1.1\r\nHost: ${origin.host}\r\nConnection: close\r\nContent-Length: ${declared}\r\n` +
    Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n'
  socket.write(head)
  const piece = Buffer.alloc(64 * 1024, 0x20)
  for (let sent = 0; sent < declared && state.error === undefined; sent += piece.length) {
    if (!socket.write(piece)) await Promise.race([new Promise(resolve => { socket.once('drain', resolve) }), closed])
  }
  await closed
  const text = Buffer.concat(chunks).toString('latin1')
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)
  return { status, head: text.slice(0, text.indexOf('\r\n\r\n')), error: state.error }
}

const JSON_HEADERS = { 'content-type': 'application/json' }

describe('early refusals reach a client that sends its whole body first and asked for Connection: close', () => {
  it('503 OVERLOADED at capacity, with Retry-After', async () => {
    const origin = await start({ workers: 1, maxQueue: 0, inlineMaxFlops: 0, workerFile: SLOW_WORKER })
    // the one worker busy for a second
    const busy = fetch(`${origin.origin}/v1/matmul`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ a: [[1]], b: [[2]] }) })
    await new Promise(resolve => setTimeout(resolve, 200))
    const r = await urllibLike(origin, '/v1/matmul', JSON_HEADERS)
    expect(r.error).toBeUndefined()
    expect(r.status).toBe(503)
    expect(r.head).toMatch(/\r\nretry-after: 1\r\n/i)
    expect((await busy).status).toBe(200)
  })

  it('401 without an API key, 429 past the rate limit', async () => {
    const origin = await start({ workers: 1, apiKeys: ['secret-key'], rateLimitMax: 1 })
    const unauthorised = await urllibLike(origin, '/v1/matmul', JSON_HEADERS)
    expect(unauthorised.error).toBeUndefined()
    expect(unauthorised.status).toBe(401)
    const withKey = { ...JSON_HEADERS, 'x-api-key': 'secret-key' }
    const first = await fetch(`${origin.origin}/v1/dot`, { method: 'POST', headers: withKey, body: JSON.stringify({ a: [1], b: [2] }) })
    expect(first.status).toBe(200)
    const limited = await urllibLike(origin, '/v1/matmul', withKey)
    expect(limited.error).toBeUndefined()
    expect(limited.status).toBe(429)
    expect(limited.head).toMatch(/\r\nretry-after: \d+\r\n/i)
  })

  it('406 for an Accept it cannot meet, 413 from Content-Length, 404 for an unknown path', async () => {
    const origin = await start({ workers: 1, bodyLimitBytes: 4 * 1024 * 1024 })
    const notAcceptable = await urllibLike(origin, '/v1/matmul', { ...JSON_HEADERS, accept: 'text/html' })
    expect(notAcceptable.error).toBeUndefined()
    expect(notAcceptable.status).toBe(406)
    // (8 MB declared and sent, over a 4 MB limit: the rest is read and dropped, up to 4 limits' worth)
    const tooLarge = await urllibLike(origin, '/v1/matmul', JSON_HEADERS)
    expect(tooLarge.error).toBeUndefined()
    expect(tooLarge.status).toBe(413)
    const unknown = await urllibLike(origin, '/v1/nothing', { 'content-type': 'text/plain' }, 2 * 1024 * 1024)
    expect(unknown.error).toBeUndefined()
    expect(unknown.status).toBe(404)
    // and the service goes on answering
    const ok = await fetch(`${origin.origin}/v1/dot`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ a: [1, 2], b: [3, 4] }) })
    expect(await ok.json()).toEqual({ result: { shape: [], dtype: 'float64', data: 11 } })
  })
})
