/**
 * RATE_LIMIT_REDIS_URL against a real Redis (Debian's redis-server, started here on a free loopback
 * port): two service instances sharing it allow exactly the limit together; with Redis stopped, or
 * asleep, requests are answered (fail open), the failure is logged once and counted; when Redis
 * is back, the limit holds again.
 *
 * Skipped only when redis-server is missing outside CI; in CI (.ci/run installs it) it always runs.
 */
import { spawn, spawnSync } from 'node:child_process'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { freePort, type Proc, skipWithout, startProcess, stopProcess, which } from './helpers.js'

const redisServer = which('redis-server')
const skip = skipWithout(redisServer)
const title = 'rate limits shared through Redis (Debian redis-server on loopback)' +
  (skip ? ' - SKIPPED: no redis-server on this machine (apt-get install -y redis-server); in CI it always runs' : '')

const DOT = { a: [1, 2], b: [3, 4] }
const LIMIT = 4

/** Starts redis-server on `port` with nothing persisted; resolves once it accepts connections. */
async function startRedis (port: number): Promise<Proc> {
  const proc = startProcess(redisServer as string, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--enable-debug-command', 'local'], { env: { PATH: process.env.PATH } })
  const deadline = Date.now() + 10_000
  while (!proc.output().includes('Ready to accept connections')) {
    if (Date.now() > deadline) throw new Error(`redis-server did not start: ${proc.output().slice(-1000)}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return proc
}

describe.skipIf(skip)(title, () => {
  let port = 0
  let redis: Proc | undefined
  const lines: string[] = []
  let a: FastifyInstance
  let b: FastifyInstance

  beforeAll(async () => {
    port = await freePort()
    redis = await startRedis(port)
    const config = { logLevel: 'info', workers: 1, rateLimitMax: LIMIT, rateLimitWindowMs: 60_000, rateLimitRedisUrl: `redis://127.0.0.1:${port}` }
    a = await buildApp(config, { logStream: { write: (line: string) => { lines.push(line) } } })
    b = await buildApp(config, { logStream: { write: () => {} } })
    await a.ready()
    await b.ready()
  }, 60_000)

  afterAll(async () => {
    await a?.close()
    await b?.close()
    await stopProcess(redis, 'SIGKILL')
  })

  const post = async (app: FastifyInstance, from: string): Promise<number> =>
    (await app.inject({ method: 'POST', url: '/v1/dot', payload: DOT, remoteAddress: from })).statusCode
  const storeErrors = async (app: FastifyInstance): Promise<number> =>
    Number(/^tensor_rate_limit_store_errors_total (\S+)$/m.exec((await app.inject({ method: 'GET', url: '/metrics' })).body)?.[1] ?? NaN)

  it('two instances allow exactly the limit together, per client', async () => {
    const statuses: number[] = []
    for (let i = 0; i < LIMIT + 2; i++) statuses.push(await post(i % 2 === 0 ? a : b, '10.0.0.1'))
    expect(statuses).toEqual([...Array<number>(LIMIT).fill(200), 429, 429])
    // another client has its own count
    expect(await post(b, '10.0.0.2')).toBe(200)
    expect(await storeErrors(a)).toBe(0)
  })

  it('Redis down: requests are answered uncounted (fail open), logged once and counted in the metric', async () => {
    await stopProcess(redis, 'SIGKILL')
    const statuses: number[] = []
    for (let i = 0; i < LIMIT + 3; i++) statuses.push(await post(a, '10.0.0.3'))
    expect(statuses).toEqual(Array<number>(LIMIT + 3).fill(200))
    expect(await storeErrors(a)).toBe(LIMIT + 3)
    const warned = lines.map(l => JSON.parse(l) as { level: number, msg: string }).filter(l => l.msg.startsWith('rate-limit store (Redis) failing'))
    expect(warned).toHaveLength(1)
    expect(warned[0].level).toBe(40)
  })

  it('Redis back: the limit holds again, and the recovery is logged', async () => {
    redis = await startRedis(port)
    // the client reconnects by itself (within a second or so): until then requests go uncounted
    const deadline = Date.now() + 15_000
    for (;;) {
      const before = await storeErrors(a)
      await post(a, '10.0.0.9')
      if (await storeErrors(a) === before) break
      if (Date.now() > deadline) throw new Error('the service did not reconnect to Redis')
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    const statuses: number[] = []
    for (let i = 0; i < LIMIT + 1; i++) statuses.push(await post(i % 2 === 0 ? a : b, '10.0.0.4'))
    expect(statuses).toEqual([...Array<number>(LIMIT).fill(200), 429])
    expect(lines.some(l => (JSON.parse(l) as { msg: string }).msg === 'rate-limit store (Redis) answering again')).toBe(true)
  }, 30_000)

  it('Redis slow (DEBUG SLEEP): a request does not wait for it but goes on uncounted', async () => {
    const before = await storeErrors(a)
    const cli = which('redis-cli')
    expect(cli).not.toBeNull()
    // redis-server sleeps 3 s; each request's call gives up after REDIS_TIMEOUT_MS
    const sleeper = spawn(cli as string, ['-p', String(port), 'DEBUG', 'SLEEP', '3'], { stdio: 'ignore' })
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(await post(a, '10.0.0.5')).toBe(200)
    expect(await storeErrors(a)).toBe(before + 1)
    await new Promise(resolve => sleeper.once('exit', resolve))
    expect(spawnSync(cli as string, ['-p', String(port), 'PING'], { encoding: 'utf8' }).stdout.trim()).toBe('PONG')
  }, 30_000)
})
