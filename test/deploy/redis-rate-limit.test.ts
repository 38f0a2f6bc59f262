/**
 * RATE_LIMIT_REDIS_URL against a real Redis (Debian's redis-server, started here on a free loopback
 * port): two service processes (the compiled service, dist/) sharing it allow exactly the limit
 * together; with Redis stopped, or asleep, requests are answered (fail open), the failure is logged
 * once and counted; when Redis is back, the limit holds again and the recovery is logged.
 *
 * Skipped only when redis-server is missing outside CI; in CI (.ci/run installs it) it always runs.
 */
import { spawn, spawnSync } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import {
  cleanEnv, distIsFresh, dotFrom, freePort, type Proc, repoRoot, run, skipWithout, startProcess, stopProcess, waitForHttp, which
} from './helpers.js'

const redisServer = which('redis-server')
const skip = skipWithout(redisServer)
const title = 'rate limits shared through Redis (Debian redis-server on loopback)' +
  (skip ? ' - SKIPPED: no redis-server on this machine (apt-get install -y redis-server); in CI it always runs' : '')

const LIMIT = 4

/** Starts redis-server on `port` with nothing persisted; resolves once it accepts connections. */
async function startRedis (port: number): Promise<Proc> {
  const proc = startProcess(redisServer as string, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--enable-debug-command', 'local'], { env: cleanEnv({}) })
  const deadline = Date.now() + 10_000
  while (!proc.output().includes('Ready to accept connections')) {
    if (Date.now() > deadline) throw new Error(`redis-server did not start: ${proc.output().slice(-1000)}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return proc
}

describe('RATE_LIMIT_REDIS_URL with no Redis there', () => {
  it('the service starts all the same (after waiting a second for it) and answers uncounted', async () => {
    const closed = await freePort() // nothing listens there
    const app = await buildApp({ logLevel: 'silent', workers: 1, rateLimitMax: 1, rateLimitRedisUrl: `redis://127.0.0.1:${closed}` })
    try {
      const statuses: number[] = []
      for (let i = 0; i < 3; i++) statuses.push((await app.inject({ method: 'POST', url: '/v1/dot', payload: { a: [1], b: [2] } })).statusCode)
      expect(statuses).toEqual([200, 200, 200])
      expect((await app.inject({ method: 'GET', url: '/metrics' })).body).toMatch(/^tensor_rate_limit_store_errors_total 3$/m)
    } finally {
      await app.close()
    }
  })
})

describe.skipIf(skip)(title, () => {
  let port = 0
  let redis: Proc | undefined
  const services: Proc[] = []
  const bases: string[] = []

  beforeAll(async () => {
    if (!distIsFresh()) await run('npm', ['run', 'build'], { cwd: repoRoot, env: cleanEnv({}) })
    port = await freePort()
    redis = await startRedis(port)
    for (let i = 0; i < 2; i++) {
      const p = await freePort()
      bases.push(`http://127.0.0.1:${p}`)
      services.push(startProcess(process.execPath, ['dist/server.js'], {
        cwd: repoRoot,
        env: cleanEnv({ PORT: String(p), HOST: '127.0.0.1', WORKERS: '1', LOG_LEVEL: 'info', RATE_LIMIT_MAX: String(LIMIT), RATE_LIMIT_REDIS_URL: `redis://127.0.0.1:${port}` })
      }))
    }
    for (let i = 0; i < 2; i++) await waitForHttp(`${bases[i]}/ready`, { proc: services[i] })
  }, 120_000)

  afterAll(async () => {
    for (const s of services) await stopProcess(s, 'SIGTERM')
    await stopProcess(redis, 'SIGKILL')
  })

  const storeErrors = async (base: string): Promise<number> =>
    Number(/^tensor_rate_limit_store_errors_total (\S+)$/m.exec(await (await fetch(`${base}/metrics`)).text())?.[1] ?? NaN)
  /** The first service's log lines (JSON) with this message. */
  const logged = (msg: string): Array<{ level: number, msg: string }> =>
    services[0].output().split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as { level: number, msg: string }).filter(l => l.msg.startsWith(msg))

  it('two service processes allow exactly the limit together, per client', async () => {
    const statuses: number[] = []
    for (let i = 0; i < LIMIT + 2; i++) statuses.push(await dotFrom(bases[i % 2], '127.0.0.2'))
    expect(statuses).toEqual([...Array<number>(LIMIT).fill(200), 429, 429])
    // another client has its own count
    expect(await dotFrom(bases[1], '127.0.0.3')).toBe(200)
    expect(await storeErrors(bases[0])).toBe(0)
  })

  it('Redis down: requests are answered uncounted (fail open), logged once and counted in the metric', async () => {
    await stopProcess(redis, 'SIGKILL')
    const statuses: number[] = []
    for (let i = 0; i < LIMIT + 3; i++) statuses.push(await dotFrom(bases[0], '127.0.0.4'))
    expect(statuses).toEqual(Array<number>(LIMIT + 3).fill(200))
    expect(await storeErrors(bases[0])).toBe(LIMIT + 3)
    // (the service writes its log asynchronously, at least every second)
    await expect.poll(() => logged('rate-limit store (Redis) failing').length, { timeout: 5_000 }).toBeGreaterThan(0)
    const warned = logged('rate-limit store (Redis) failing')
    expect(warned).toHaveLength(1)
    expect(warned[0].level).toBe(40)
  })

  it('Redis back: the limit holds again, and the recovery is logged', async () => {
    redis = await startRedis(port)
    // the client reconnects by itself (within a second or so): until then requests go uncounted
    const deadline = Date.now() + 15_000
    for (;;) {
      const before = await storeErrors(bases[0])
      await dotFrom(bases[0], '127.0.0.9')
      if (await storeErrors(bases[0]) === before) break
      if (Date.now() > deadline) throw new Error('the service did not reconnect to Redis')
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    const statuses: number[] = []
    for (let i = 0; i < LIMIT + 1; i++) statuses.push(await dotFrom(bases[0], '127.0.0.5'))
    expect(statuses).toEqual([...Array<number>(LIMIT).fill(200), 429])
    // the other process reconnected too, and shares the count
    let other = 0
    for (let i = 0; i < 50 && other !== 429; i++) {
      other = await dotFrom(bases[1], '127.0.0.5')
      if (other !== 429) await new Promise(resolve => setTimeout(resolve, 200))
    }
    expect(other).toBe(429)
    await expect.poll(() => logged('rate-limit store (Redis) answering again').length, { timeout: 5_000 }).toBe(1)
  }, 30_000)

  it('Redis slow (DEBUG SLEEP): a request does not wait for it but goes on uncounted', async () => {
    const before = await storeErrors(bases[0])
    const cli = which('redis-cli')
    expect(cli).not.toBeNull()
    // redis-server sleeps 3 s; each request's call gives up after REDIS_TIMEOUT_MS
    const sleeper = spawn(cli as string, ['-p', String(port), 'DEBUG', 'SLEEP', '3'], { stdio: 'ignore' })
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(await dotFrom(bases[0], '127.0.0.6')).toBe(200)
    expect(await storeErrors(bases[0])).toBe(before + 1)
    await new Promise(resolve => sleeper.once('exit', resolve))
    expect(spawnSync(cli as string, ['-p', String(port), 'PING'], { encoding: 'utf8' }).stdout.trim()).toBe('PONG')
  }, 30_000)
})
