/**
 * TRUST_PROXY: the client's address (rate limits per address, the log line's `client`) comes from
 * X-Forwarded-For only when the connection comes from a trusted proxy; from anyone else the
 * header is ignored, so a client cannot pick its own address. (The real nginx in front:
 * test/deploy/scaleout.test.ts.)
 */
import type { FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { type Config, loadConfig, parseTrustProxy } from '../src/config.js'

const DOT = { a: [1, 2], b: [3, 4] }

let apps: FastifyInstance[] = []
afterEach(async () => {
  for (const a of apps) await a.close()
  apps = []
})

async function app (overrides: Partial<Config>, lines?: string[]): Promise<FastifyInstance> {
  const a = await buildApp({ logLevel: lines === undefined ? 'silent' : 'info', workers: 1, rateLimitMax: 2, rateLimitWindowMs: 60_000, ...overrides },
    lines === undefined ? {} : { logStream: { write: (line: string) => { lines.push(line) } } })
  apps.push(a)
  return a
}

/** The statuses of posts from `peer` (the connection's address), each with the given X-Forwarded-For. */
async function statuses (a: FastifyInstance, peer: string, forwarded: Array<string | undefined>): Promise<number[]> {
  const out: number[] = []
  for (const xff of forwarded) {
    const res = await a.inject({ method: 'POST', url: '/v1/dot', payload: DOT, remoteAddress: peer, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } })
    out.push(res.statusCode)
  }
  return out
}

describe('TRUST_PROXY', () => {
  it('unset: X-Forwarded-For is ignored, so one peer has one count whatever the header says', async () => {
    const a = await app({})
    expect(await statuses(a, '127.0.0.1', ['10.0.0.1', '10.0.0.2', '10.0.0.3'])).toEqual([200, 200, 429])
  })

  it('a trusted proxy\'s clients are counted apart, each by the address it forwards', async () => {
    const a = await app({ trustProxy: ['127.0.0.1'] })
    expect(await statuses(a, '127.0.0.1', ['10.0.0.1', '10.0.0.1', '10.0.0.1'])).toEqual([200, 200, 429])
    expect(await statuses(a, '127.0.0.1', ['10.0.0.2', '10.0.0.2'])).toEqual([200, 200])
  })

  it('from a peer that is not the trusted proxy, the header changes nothing (a client cannot pick its address)', async () => {
    const a = await app({ trustProxy: ['10.9.9.9'] })
    expect(await statuses(a, '127.0.0.1', ['10.0.0.1', '10.0.0.2', '10.0.0.3'])).toEqual([200, 200, 429])
    // the trusted proxy itself is believed
    expect(await statuses(a, '10.9.9.9', ['10.0.0.4', '10.0.0.5'])).toEqual([200, 200])
  })

  it('a hop count trusts the nearest proxies only: a spoofed entry further left is not the address', async () => {
    const a = await app({ trustProxy: 1 })
    // the client wrote "6.6.6.6" itself; the proxy appended the address it saw, 10.0.0.1
    expect(await statuses(a, '127.0.0.1', ['6.6.6.6, 10.0.0.1', '7.7.7.7, 10.0.0.1', '8.8.8.8, 10.0.0.1'])).toEqual([200, 200, 429])
  })

  it('the log line names the client address as the rate limit sees it', async () => {
    const lines: string[] = []
    const trusted = await app({ trustProxy: ['127.0.0.1'] }, lines)
    await statuses(trusted, '127.0.0.1', ['10.0.0.7'])
    const untrusted = await app({}, lines)
    await statuses(untrusted, '127.0.0.1', ['10.0.0.8'])
    const clients = lines.map(l => JSON.parse(l) as { msg: string, route?: string, client?: string }).filter(l => l.msg === 'request' && l.route === '/v1/dot').map(l => l.client)
    expect(clients).toEqual(['10.0.0.7', '127.0.0.1'])
  })

  it('parses true, false, hop counts, addresses, CIDR ranges and proxy-addr\'s names, and refuses the rest naming TRUST_PROXY', () => {
    expect(parseTrustProxy('true')).toBe(true)
    expect(parseTrustProxy('false')).toBe(false)
    expect(parseTrustProxy('2')).toBe(2)
    expect(parseTrustProxy('10.0.0.0/8, uniquelocal,::1, fd00::/8')).toEqual(['10.0.0.0/8', 'uniquelocal', '::1', 'fd00::/8'])
    expect(loadConfig({}).trustProxy).toBe(false)
    expect(loadConfig({ TRUST_PROXY: '127.0.0.1' }).trustProxy).toEqual(['127.0.0.1'])
    for (const bad of ['yes', '0', '65', '10.0.0.0/33', 'proxy.example.com', '10.0.0.1/8/1', '1.2.3']) {
      expect(() => loadConfig({ TRUST_PROXY: bad }), bad).toThrow(/^TRUST_PROXY=/)
    }
  })
})
