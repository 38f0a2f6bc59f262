/**
 * Slow clients, over real sockets: headers and bodies sent a byte at a time (slowloris), idle
 * keep-alive connections, and more connections than MAX_CONNECTIONS. Each slow connection is
 * closed by its limit (with 408 where Node answers), other clients are answered meanwhile, and no
 * connection is left open afterwards.
 */
import { connect, type Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import type { Config } from '../../src/config.js'

const DOT = JSON.stringify({ a: [1, 2], b: [3, 4] })

let app: FastifyInstance | undefined
afterEach(async () => {
  await app?.close()
  app = undefined
})

async function listen (overrides: Partial<Config>): Promise<number> {
  app = await buildApp({ logLevel: 'silent', workers: 1, ...overrides })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return (app.server.address() as { port: number }).port
}

interface Slow { socket: Socket, received: () => string, closed: Promise<void>, stop: () => void }

/** A connection that sends `head` and then one byte of `drip` every `everyMs` until closed. */
function slowClient (port: number, head: string, drip: string, everyMs = 100): Slow {
  const socket = connect(port, '127.0.0.1')
  let text = ''
  socket.setEncoding('latin1')
  socket.on('data', (d: string) => { text += d })
  socket.on('error', () => {})
  const closed = new Promise<void>(resolve => socket.once('close', () => resolve()))
  let i = 0
  let timer: NodeJS.Timeout | undefined
  socket.once('connect', () => {
    socket.write(head)
    timer = setInterval(() => {
      if (socket.destroyed) return
      socket.write(drip[i++ % drip.length])
    }, everyMs)
  })
  socket.once('close', () => clearInterval(timer))
  return { socket, received: () => text, closed, stop: () => { clearInterval(timer); socket.destroy() } }
}

/** Resolves with true once `p` settles, false after `ms` (the test then fails with what is left). */
async function within (p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<boolean>(resolve => { timer = setTimeout(() => resolve(false), ms) })
  const r = await Promise.race([p.then(() => true), late])
  clearTimeout(timer)
  return r
}

async function post (port: number): Promise<{ status: number, body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/dot`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: DOT })
  return { status: res.status, body: await res.text() }
}

async function openConnections (): Promise<number> {
  return await new Promise((resolve, reject) => app!.server.getConnections((err, n) => err != null ? reject(err) : resolve(n)))
}

const LIMITS = { headersTimeoutMs: 600, requestTimeoutMs: 1200, keepAliveTimeoutMs: 400 }

describe('slow clients are closed by their limits while others are answered', () => {
  it('headers sent a byte at a time (HEADERS_TIMEOUT_MS): 408 and closed; a normal request meanwhile gets 200', async () => {
    const port = await listen(LIMITS)
    const slow = Array.from({ length: 20 }, () => slowClient(port, 'POST /v1/dot HTTP/1.1\r\nHost: x\r\n', 'X-Slow: abcdefgh'))
    await new Promise(resolve => setTimeout(resolve, 200))
    const normal = await post(port)
    expect(normal.status).toBe(200)
    expect(JSON.parse(normal.body)).toEqual({ result: { shape: [], dtype: 'float64', data: 11 } })
    // (a generous bound: the limit, Node's check interval, and a loaded machine's slack)
    expect(await within(Promise.all(slow.map(s => s.closed)), 10_000)).toBe(true)
    for (const s of slow) expect(s.received()).toMatch(/^(HTTP\/1\.1 408 |$)/)
    expect(slow.filter(s => s.received().startsWith('HTTP/1.1 408 ')).length).toBeGreaterThan(0)
    expect(await openConnections()).toBe(0)
  })

  it('a body sent a byte at a time (REQUEST_TIMEOUT_MS): 408 and closed; a normal request meanwhile gets 200', async () => {
    const port = await listen(LIMITS)
    const head = 'POST /v1/dot HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n'
    const slow = Array.from({ length: 20 }, () => slowClient(port, head, '{"a":[1,2,3,4,5,6,7,8,9,'))
    await new Promise(resolve => setTimeout(resolve, 200))
    expect((await post(port)).status).toBe(200)
    expect(await within(Promise.all(slow.map(s => s.closed)), 10_000)).toBe(true)
    for (const s of slow) expect(s.received()).toMatch(/^HTTP\/1\.1 408 /)
    expect(await openConnections()).toBe(0)
    // the service still computes
    expect((await post(port)).status).toBe(200)
  })

  it('an idle keep-alive connection is closed after KEEP_ALIVE_TIMEOUT_MS', async () => {
    const port = await listen(LIMITS)
    const socket = connect(port, '127.0.0.1')
    let text = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => { text += d })
    const closed = new Promise<void>(resolve => socket.once('close', () => resolve()))
    await new Promise(resolve => socket.once('connect', resolve))
    socket.write(`POST /v1/dot HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${DOT.length}\r\n\r\n${DOT}`)
    expect(await within(closed, 10_000)).toBe(true)
    expect(text).toMatch(/^HTTP\/1\.1 200 /)
    expect(text).toMatch(/keep-alive/i) // it was kept open for a next request, then closed idle
    expect(await openConnections()).toBe(0)
  })

  it('MAX_CONNECTIONS: past the cap a new connection is closed at once; once the slow ones are gone, requests are answered', async () => {
    const port = await listen({ ...LIMITS, maxConnections: 10 })
    const slow = Array.from({ length: 10 }, () => slowClient(port, 'GET /health HTTP/1.1\r\n', 'X-Slow: abcdefgh'))
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(await openConnections()).toBe(10)
    const extra = slowClient(port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n', ' ', 1000)
    expect(await within(extra.closed, 5_000)).toBe(true)
    expect(extra.received()).toBe('') // refused, not answered
    expect(await within(Promise.all(slow.map(s => s.closed)), 10_000)).toBe(true)
    expect((await post(port)).status).toBe(200)
    await new Promise(resolve => setTimeout(resolve, 100))
    expect(await openConnections()).toBeLessThanOrEqual(1) // (fetch's own keep-alive connection)
  })
})
