/**
 * Exposure settings, all off by default: API keys (API_KEYS, API_KEYS_FILE re-read on SIGHUP,
 * METRICS_REQUIRE_KEY), per-client rate limits (RATE_LIMIT_MAX, RATE_LIMIT_WINDOW_MS), CORS
 * (CORS_ORIGINS), and the security headers every reply carries.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type AppOptions, buildApp } from '../src/app.js'
import { ROUTES } from '../src/operations/index.js'
import { type Config, loadConfig } from '../src/config.js'

const DOT = { a: [1, 2, 3], b: [4, 5, 6] }
const DOT_RESULT = { result: { shape: [], dtype: 'float64', data: 32 } }
const KEY_A = 'k-alpha-0123456789abcdef0123456789'
const KEY_B = 'k-bravo-fedcba9876543210fedcba9876'
const KEY_C = 'k-charlie-00112233445566778899aabb'

/** The short hash a log line names a key by: 8 hex digits of its SHA-256. */
const idOf = (key: string): string => createHash('sha256').update(key).digest('hex').slice(0, 8)

const apps: FastifyInstance[] = []
async function app (overrides: Partial<Config> = {}, options: AppOptions = {}): Promise<FastifyInstance> {
  const built = await buildApp({ logLevel: 'silent', workers: 1, ...overrides }, options)
  apps.push(built)
  return built
}
afterAll(async () => { await Promise.all(apps.map(async (a) => await a.close())) })

async function dot (target: FastifyInstance, headers: Record<string, string> = {}, extra: Partial<InjectOptions> = {}): Promise<LightMyRequestResponse> {
  return await target.inject({ method: 'POST', url: '/v1/dot', payload: DOT, headers, ...extra })
}

function expectError (res: LightMyRequestResponse, status: number, code: string, error: string): void {
  expect(res.statusCode).toBe(status)
  const body = res.json()
  expect(Object.keys(body).sort()).toEqual(['code', 'error', 'message', 'statusCode'])
  expect(body).toMatchObject({ statusCode: status, code, error })
  expect(typeof body.message).toBe('string')
  expect(body.message.length).toBeGreaterThan(0)
}

describe('off by default', () => {
  let open: FastifyInstance
  beforeAll(async () => { open = await app() })

  it('operations need no key and carry no rate-limit or CORS headers', async () => {
    const res = await dot(open, { origin: 'https://app.example.com' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual(DOT_RESULT)
    for (const h of ['access-control-allow-origin', 'access-control-expose-headers', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset', 'www-authenticate']) {
      expect(res.headers[h], h).toBeUndefined()
    }
  })

  it('a key sent anyway is ignored; /metrics is open', async () => {
    expect((await dot(open, { authorization: 'Bearer whatever' })).statusCode).toBe(200)
    expect((await open.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200)
  })

  it('no CORS preflight: OPTIONS is not a method of the route (405)', async () => {
    const res = await open.inject({
      method: 'OPTIONS',
      url: '/v1/dot',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' }
    })
    expect(res.statusCode).toBe(405)
    expect(res.headers.allow).toBe('POST')
    expect(res.headers['access-control-allow-origin']).toBeUndefined()
    expect(res.headers['access-control-allow-methods']).toBeUndefined()
  })

  it('no rate limit: many requests from one address all answer 200', async () => {
    for (let i = 0; i < 30; i++) expect((await dot(open)).statusCode).toBe(200)
  })

  it('the configuration from an empty environment has every exposure setting off', () => {
    const config = loadConfig({})
    expect(config).toMatchObject({ apiKeys: [], apiKeysFile: '', metricsRequireKey: false, rateLimitMax: 0, corsOrigins: [] })
  })
})

describe('API keys', () => {
  let secured: FastifyInstance
  beforeAll(async () => { secured = await app({ apiKeys: [KEY_A, KEY_B] }) })

  it('no key: 401 UNAUTHORIZED with WWW-Authenticate: Bearer', async () => {
    const res = await dot(secured)
    expectError(res, 401, 'UNAUTHORIZED', 'Unauthorized')
    expect(res.headers['www-authenticate']).toMatch(/^Bearer( |$)/)
    expect(res.headers['x-request-id']).toBeDefined()
  })

  it('a wrong key, in either header: 401 with WWW-Authenticate: Bearer error="invalid_token"', async () => {
    const wrong: Array<Record<string, string>> = [
      { authorization: `Bearer ${KEY_C}` },
      { 'x-api-key': KEY_C },
      // a prefix, the key with a character more, another scheme
      { authorization: `Bearer ${KEY_A.slice(0, -1)}` },
      { 'x-api-key': KEY_A + 'x' },
      { authorization: `Basic ${Buffer.from(`user:${KEY_A}`).toString('base64')}` }
    ]
    for (const headers of wrong) {
      const res = await dot(secured, headers)
      expectError(res, 401, 'UNAUTHORIZED', 'Unauthorized')
      expect(res.headers['www-authenticate'], JSON.stringify(headers)).toMatch(/^Bearer /)
    }
    expect((await dot(secured, { 'x-api-key': KEY_C })).headers['www-authenticate']).toContain('error="invalid_token"')
  })

  it('accepts every configured key as Authorization: Bearer <key> and as x-api-key: <key>', async () => {
    for (const key of [KEY_A, KEY_B]) {
      const forms: Array<Record<string, string>> = [{ authorization: `Bearer ${key}` }, { authorization: `bearer ${key}` }, { 'x-api-key': key }]
      for (const headers of forms) {
        const res = await dot(secured, headers)
        expect(res.statusCode, JSON.stringify(headers)).toBe(200)
        expect(res.json()).toEqual(DOT_RESULT)
        expect(res.headers['www-authenticate']).toBeUndefined()
      }
    }
  })

  it('refuses before the body is parsed: a malformed body without a key is 401, with a key 400', async () => {
    const bad = { payload: '{"a": [1, 2', headers: { 'content-type': 'application/json' } }
    expectError(await secured.inject({ method: 'POST', url: '/v1/matmul', ...bad }), 401, 'UNAUTHORIZED', 'Unauthorized')
    const withKey = await secured.inject({ method: 'POST', url: '/v1/matmul', ...bad, headers: { ...bad.headers, 'x-api-key': KEY_A } })
    expect(withKey.statusCode).toBe(400)
    expect(withKey.json().code).toMatch(/^FST_ERR_CTP_/)
  })

  it('/health, /ready, /docs and /openapi.json stay open; /metrics too without METRICS_REQUIRE_KEY', async () => {
    await secured.ready()
    for (const url of ['/health', '/ready', '/docs', '/docs/static/index.html', '/openapi.json', '/metrics']) {
      const res = await secured.inject({ method: 'GET', url })
      expect([200, 302], url).toContain(res.statusCode)
    }
  })

  it('METRICS_REQUIRE_KEY: /metrics answers 401 without a key and 200 with one; the probes stay open', async () => {
    const strict = await app({ apiKeys: [KEY_A], metricsRequireKey: true })
    await strict.ready()
    const refused = await strict.inject({ method: 'GET', url: '/metrics' })
    expectError(refused, 401, 'UNAUTHORIZED', 'Unauthorized')
    expect(refused.headers['www-authenticate']).toMatch(/^Bearer/)
    expect((await strict.inject({ method: 'GET', url: '/metrics', headers: { 'x-api-key': KEY_C } })).statusCode).toBe(401)
    const allowed = await strict.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${KEY_A}` } })
    expect(allowed.statusCode).toBe(200)
    expect(allowed.body).toContain('http_request_duration_seconds')
    for (const url of ['/health', '/ready']) expect((await strict.inject({ method: 'GET', url })).statusCode, url).toBe(200)
  })

  it('the OpenAPI document declares both forms of the key, required by every operation and not by the probes', async () => {
    const doc = (await secured.inject({ method: 'GET', url: '/openapi.json' })).json()
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' })
    expect(doc.components.securitySchemes.apiKeyHeader).toMatchObject({ type: 'apiKey', in: 'header', name: 'x-api-key' })
    for (const op of ROUTES) {
      const post = doc.paths[`/v1/${op}`].post
      expect(post.security, op).toEqual([{ bearerAuth: [] }, { apiKeyHeader: [] }])
      expect(Object.keys(post.responses), op).toEqual(expect.arrayContaining(['401', '429']))
      expect(Object.keys(post.responses['429'].headers), op).toEqual(expect.arrayContaining(['Retry-After', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset']))
    }
    expect(doc.paths['/health'].get.security).toEqual([])
    expect(doc.paths['/ready'].get.security).toEqual([])
  })
})

describe('API_KEYS_FILE', () => {
  let dir: string
  let file: string
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tensor-keys-'))
    file = join(dir, 'keys')
  })
  afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

  it('reads one key a line (blank lines and # comments skipped), and re-reads the file on reload', async () => {
    writeFileSync(file, `# the service's keys\n${KEY_A}\n\n  ${KEY_B}  \n`)
    const keyed = await app({ apiKeysFile: file })
    expect((await dot(keyed, { 'x-api-key': KEY_A })).statusCode).toBe(200)
    expect((await dot(keyed, { 'x-api-key': KEY_B })).statusCode).toBe(200)
    expect((await dot(keyed, { 'x-api-key': KEY_C })).statusCode).toBe(401)
    expect((await dot(keyed, { 'x-api-key': '# the service\'s keys' })).statusCode).toBe(401)

    writeFileSync(file, `${KEY_C}\n`)
    // not yet re-read
    expect((await dot(keyed, { 'x-api-key': KEY_C })).statusCode).toBe(401)
    expect(keyed.reloadApiKeys()).toBe(true)
    expect((await dot(keyed, { 'x-api-key': KEY_C })).statusCode).toBe(200)
    expect((await dot(keyed, { 'x-api-key': KEY_A })).statusCode).toBe(401)
    expect((await dot(keyed, { 'x-api-key': KEY_B })).statusCode).toBe(401)

    // an empty, malformed or missing file keeps the keys in use (it never turns authentication off)
    for (const content of ['', '\n# none\n', 'two words\n', null]) {
      if (content === null) rmSync(file)
      else writeFileSync(file, content)
      expect(keyed.reloadApiKeys(), JSON.stringify(content)).toBe(false)
      expect((await dot(keyed, { 'x-api-key': KEY_C })).statusCode).toBe(200)
      expect((await dot(keyed)).statusCode).toBe(401)
    }
  })

  it('keys of API_KEYS and API_KEYS_FILE both work, and a reload keeps those of API_KEYS', async () => {
    writeFileSync(file, `${KEY_B}\n`)
    const both = await app({ apiKeys: [KEY_A], apiKeysFile: file })
    expect((await dot(both, { 'x-api-key': KEY_A })).statusCode).toBe(200)
    expect((await dot(both, { 'x-api-key': KEY_B })).statusCode).toBe(200)
    writeFileSync(file, `${KEY_C}\n`)
    expect(both.reloadApiKeys()).toBe(true)
    expect((await dot(both, { 'x-api-key': KEY_A })).statusCode).toBe(200)
    expect((await dot(both, { 'x-api-key': KEY_B })).statusCode).toBe(401)
    expect((await dot(both, { 'x-api-key': KEY_C })).statusCode).toBe(200)
  })

  describe('SIGHUP to the real server process', () => {
    let child: ChildProcess | undefined
    afterEach(() => { child?.kill('SIGKILL') })

    it('re-reads the file: the new key works, the old one is refused, and the process keeps running', async () => {
      writeFileSync(file, `${KEY_A}\n`)
      child = spawn(process.execPath, ['--import', 'tsx', 'test/support/serve.ts'], {
        env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn', WORKERS: '1', API_KEYS_FILE: file, METRICS_REQUIRE_KEY: 'true' },
        stdio: ['ignore', 'pipe', 'inherit']
      })
      let exited = false
      child.once('exit', () => { exited = true })
      const port = await new Promise<number>((resolve, reject) => {
        let out = ''
        child!.stdout!.on('data', (d: Buffer) => {
          out += d.toString()
          const m = /listening (\d+)/.exec(out)
          if (m !== null) resolve(Number(m[1]))
        })
        child!.once('exit', () => reject(new Error(`server exited early: ${out}`)))
      })
      const metrics = async (key: string): Promise<number> =>
        (await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { 'x-api-key': key } })).status
      expect(await metrics(KEY_A)).toBe(200)
      expect(await metrics(KEY_B)).toBe(401)

      writeFileSync(file, `${KEY_B}\n`)
      child.kill('SIGHUP')
      let status = 0
      for (let i = 0; i < 50 && status !== 200; i++) {
        await new Promise(resolve => setTimeout(resolve, 100))
        status = await metrics(KEY_B)
      }
      expect(status).toBe(200)
      expect(await metrics(KEY_A)).toBe(401)
      expect(exited).toBe(false)
    }, 30_000)
  })
})

describe('keys never reach the logs', () => {
  it('the request line names a valid key by its short hash; neither valid nor wrong keys appear', async () => {
    const lines: string[] = []
    const logged = await app({ logLevel: 'info', apiKeys: [KEY_A, KEY_B], rateLimitMax: 100 }, { logStream: { write: (line: string) => { lines.push(line) } } })
    expect((await dot(logged, { authorization: `Bearer ${KEY_A}` })).statusCode).toBe(200)
    expect((await dot(logged, { 'x-api-key': KEY_B })).statusCode).toBe(200)
    expect((await dot(logged, { authorization: `Bearer ${KEY_C}` })).statusCode).toBe(401)
    expect((await dot(logged, { 'x-api-key': KEY_C })).statusCode).toBe(401)
    // a failing request with a key is logged too
    expect((await logged.inject({ method: 'POST', url: '/v1/dot', payload: { a: [1], b: [1, 2] }, headers: { 'x-api-key': KEY_A } })).statusCode).toBe(400)
    // the logger flushes synchronously to the stream
    const text = lines.join('')
    const requests = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request')
    expect(requests).toHaveLength(5)
    expect(requests.map((l) => l.key)).toEqual([idOf(KEY_A), idOf(KEY_B), undefined, undefined, idOf(KEY_A)])
    expect(requests.map((l) => l.code)).toEqual([undefined, undefined, 'UNAUTHORIZED', 'UNAUTHORIZED', 'SHAPE_MISMATCH'])
    expect(text).toContain(`"keys":["${idOf(KEY_A)}","${idOf(KEY_B)}"]`)
    for (const key of [KEY_A, KEY_B, KEY_C]) {
      expect(text).not.toContain(key)
      // nor a recognisable part of it
      expect(text).not.toContain(key.slice(8, 24))
    }
  })
})

describe('rate limits', () => {
  const WINDOW = 60_000

  function expectLimited (res: LightMyRequestResponse, max: number): void {
    expectError(res, 429, 'RATE_LIMITED', 'Too Many Requests')
    const retry = Number(res.headers['retry-after'])
    expect(Number.isInteger(retry)).toBe(true)
    expect(retry).toBeGreaterThan(0)
    expect(retry).toBeLessThanOrEqual(WINDOW / 1000)
    expect(res.headers['ratelimit-limit']).toBe(String(max))
    expect(res.headers['ratelimit-remaining']).toBe('0')
    expect(Number(res.headers['ratelimit-reset'])).toBeGreaterThan(0)
  }

  it('per address without keys: past RATE_LIMIT_MAX, 429 RATE_LIMITED with Retry-After and RateLimit-* headers', async () => {
    const limited = await app({ rateLimitMax: 3, rateLimitWindowMs: WINDOW })
    for (let i = 0; i < 3; i++) {
      const res = await dot(limited, {}, { remoteAddress: '10.0.0.1' })
      expect(res.statusCode).toBe(200)
      expect(res.headers['ratelimit-limit']).toBe('3')
      expect(res.headers['ratelimit-remaining']).toBe(String(2 - i))
      expect(res.headers['retry-after']).toBeUndefined()
    }
    expectLimited(await dot(limited, {}, { remoteAddress: '10.0.0.1' }), 3)
    // another address has its own count
    expect((await dot(limited, {}, { remoteAddress: '10.0.0.2' })).statusCode).toBe(200)
    // the probes, metrics and docs are not counted or limited
    for (const url of ['/health', '/metrics', '/openapi.json']) {
      const res = await limited.inject({ method: 'GET', url, remoteAddress: '10.0.0.1' })
      expect(res.statusCode, url).toBe(200)
      expect(res.headers['ratelimit-limit'], url).toBeUndefined()
    }
  })

  it('counts before the body is parsed: malformed bodies count, and past the limit one gets 429, not 400', async () => {
    const limited = await app({ rateLimitMax: 2, rateLimitWindowMs: WINDOW })
    const bad = { method: 'POST' as const, url: '/v1/matmul', payload: '{"a": [[1, 2', headers: { 'content-type': 'application/json' }, remoteAddress: '10.0.1.1' }
    for (let i = 0; i < 2; i++) {
      const res = await limited.inject(bad)
      expect(res.statusCode).toBe(400)
      expect(res.headers['ratelimit-remaining']).toBe(String(1 - i))
    }
    expectLimited(await limited.inject(bad), 2)
    // and a well-formed one from the same address too
    expectLimited(await dot(limited, {}, { remoteAddress: '10.0.1.1' }), 2)
  })

  it('per API key with keys: one key\'s count is shared across addresses, other keys keep theirs', async () => {
    const limited = await app({ rateLimitMax: 2, rateLimitWindowMs: WINDOW, apiKeys: [KEY_A, KEY_B] })
    expect((await dot(limited, { 'x-api-key': KEY_A }, { remoteAddress: '10.0.2.1' })).statusCode).toBe(200)
    expect((await dot(limited, { authorization: `Bearer ${KEY_A}` }, { remoteAddress: '10.0.2.2' })).statusCode).toBe(200)
    expectLimited(await dot(limited, { 'x-api-key': KEY_A }, { remoteAddress: '10.0.2.3' }), 2)
    // another key from the same addresses is not limited
    for (const address of ['10.0.2.1', '10.0.2.2']) {
      const res = await dot(limited, { 'x-api-key': KEY_B }, { remoteAddress: address })
      expect(res.statusCode, address).toBe(200)
    }
    // requests without a valid key are counted per address: wrong keys cannot dodge the limit
    for (let i = 0; i < 2; i++) expect((await dot(limited, { 'x-api-key': `${KEY_C}${i}` }, { remoteAddress: '10.0.2.9' })).statusCode).toBe(401)
    expectLimited(await dot(limited, { 'x-api-key': `${KEY_C}x` }, { remoteAddress: '10.0.2.9' }), 2)
    // ...and a valid key from that address still has its own count
    expect((await dot(limited, { 'x-api-key': KEY_B }, { remoteAddress: '10.0.2.9' })).statusCode).toBe(429)
  })

  it('the window resets the count', async () => {
    const limited = await app({ rateLimitMax: 1, rateLimitWindowMs: 300 })
    expect((await dot(limited, {}, { remoteAddress: '10.0.3.1' })).statusCode).toBe(200)
    expect((await dot(limited, {}, { remoteAddress: '10.0.3.1' })).statusCode).toBe(429)
    await new Promise(resolve => setTimeout(resolve, 400))
    expect((await dot(limited, {}, { remoteAddress: '10.0.3.1' })).statusCode).toBe(200)
  })
})

describe('CORS', () => {
  const ORIGIN = 'https://app.example.com'

  it('answers a preflight for an allowed origin with the methods and headers', async () => {
    const corsApp = await app({ corsOrigins: [ORIGIN, 'http://localhost:8080'], apiKeys: [KEY_A] })
    const res = await corsApp.inject({
      method: 'OPTIONS',
      url: '/v1/matmul',
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, authorization, x-api-key, x-request-id' }
    })
    // no key needed for a preflight (browsers never send one)
    expect(res.statusCode).toBe(204)
    expect(res.headers['access-control-allow-origin']).toBe(ORIGIN)
    const methods = String(res.headers['access-control-allow-methods']).split(/, */)
    expect(methods).toEqual(expect.arrayContaining(['GET', 'POST']))
    const allowed = String(res.headers['access-control-allow-headers']).toLowerCase().split(/, */)
    expect(allowed).toEqual(expect.arrayContaining(['content-type', 'authorization', 'x-api-key', 'x-request-id']))
    expect(res.headers['access-control-allow-credentials']).toBeUndefined()
  })

  it('a reply to an allowed origin names it and exposes x-request-id, Retry-After and the RateLimit headers; 401s too', async () => {
    const corsApp = await app({ corsOrigins: [ORIGIN], apiKeys: [KEY_A] })
    for (const [headers, status] of [[{ 'x-api-key': KEY_A }, 200], [{}, 401]] as const) {
      const res = await dot(corsApp, { origin: ORIGIN, ...headers })
      expect(res.statusCode).toBe(status)
      expect(res.headers['access-control-allow-origin']).toBe(ORIGIN)
      expect(String(res.headers.vary).toLowerCase()).toContain('origin')
      const exposed = String(res.headers['access-control-expose-headers']).toLowerCase().split(/, */)
      expect(exposed).toEqual(expect.arrayContaining(['x-request-id', 'retry-after', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset']))
    }
  })

  it('another origin gets no CORS headers', async () => {
    const corsApp = await app({ corsOrigins: [ORIGIN] })
    const pre = await corsApp.inject({
      method: 'OPTIONS',
      url: '/v1/dot',
      headers: { origin: 'https://evil.example.net', 'access-control-request-method': 'POST' }
    })
    expect(pre.headers['access-control-allow-origin']).toBeUndefined()
    const res = await dot(corsApp, { origin: 'https://evil.example.net' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['access-control-allow-origin']).toBeUndefined()
  })

  it('CORS_ORIGINS=* allows any origin', async () => {
    const corsApp = await app({ corsOrigins: ['*'] })
    const res = await corsApp.inject({
      method: 'OPTIONS',
      url: '/v1/dot',
      headers: { origin: 'https://anything.example.org', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' }
    })
    expect(res.statusCode).toBe(204)
    expect(res.headers['access-control-allow-origin']).toBe('*')
    expect((await dot(corsApp, { origin: 'https://anything.example.org' })).headers['access-control-allow-origin']).toBe('*')
  })
})

describe('security headers', () => {
  let plain: FastifyInstance
  beforeAll(async () => {
    plain = await app()
    await plain.ready()
  })

  it('every reply carries helmet\'s headers: operations, errors, probes, docs, unknown routes', async () => {
    const replies = [
      await dot(plain),
      await plain.inject({ method: 'POST', url: '/v1/dot', payload: { a: [1] } }),
      await plain.inject({ method: 'GET', url: '/health' }),
      await plain.inject({ method: 'GET', url: '/docs/' }),
      await plain.inject({ method: 'GET', url: '/nowhere' })
    ]
    for (const res of replies) {
      const where = `${res.statusCode} ${res.raw.req.url}`
      expect(res.headers['x-content-type-options'], where).toBe('nosniff')
      expect(res.headers['x-frame-options'], where).toBe('SAMEORIGIN')
      expect(res.headers['strict-transport-security'], where).toMatch(/max-age=\d+/)
      expect(res.headers['referrer-policy'], where).toBe('no-referrer')
      expect(res.headers['cross-origin-opener-policy'], where).toBe('same-origin')
      expect(res.headers['x-powered-by'], where).toBeUndefined()
      expect(res.headers['content-security-policy'], where).toContain("default-src 'self'")
    }
  })

  it('the content security policy lets /docs load only from the service itself', async () => {
    const res = await plain.inject({ method: 'GET', url: '/docs/' })
    expect(res.statusCode).toBe(200)
    const csp = String(res.headers['content-security-policy'])
    const directives = Object.fromEntries(csp.split(';').map((d) => d.trim()).filter((d) => d !== '').map((d) => {
      const [name, ...values] = d.split(/\s+/)
      return [name, values]
    }))
    expect(directives['default-src']).toEqual(["'self'"])
    expect(directives['script-src']).toEqual(["'self'"])
    expect(directives['style-src']).toEqual(["'self'"])
    expect(directives['connect-src']).toEqual(["'self'"])
    expect(directives['object-src']).toEqual(["'none'"])
    // nothing from elsewhere: no scheme-wide sources, hosts or wildcards, no inline script
    for (const values of Object.values(directives) as string[][]) {
      for (const v of values) expect(["'self'", "'none'", 'data:']).toContain(v)
    }
    expect(directives['upgrade-insecure-requests']).toBeUndefined()
  })
})

describe('configuration', () => {
  let dir: string
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'tensor-config-')) })
  afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

  it('reads the exposure variables', () => {
    const file = join(dir, 'keys')
    writeFileSync(file, `${KEY_C}\n`)
    expect(loadConfig({
      API_KEYS: ` ${KEY_A} , ${KEY_B}`,
      API_KEYS_FILE: file,
      METRICS_REQUIRE_KEY: 'true',
      RATE_LIMIT_MAX: '100',
      RATE_LIMIT_WINDOW_MS: '1000',
      CORS_ORIGINS: 'https://app.example.com, http://localhost:8080'
    })).toMatchObject({
      apiKeys: [KEY_A, KEY_B],
      apiKeysFile: file,
      metricsRequireKey: true,
      rateLimitMax: 100,
      rateLimitWindowMs: 1000,
      corsOrigins: ['https://app.example.com', 'http://localhost:8080']
    })
    expect(loadConfig({ CORS_ORIGINS: '*' }).corsOrigins).toEqual(['*'])
  })

  it('a malformed value stops start-up with a message naming the variable (and never quoting a key)', () => {
    const empty = join(dir, 'empty')
    writeFileSync(empty, '\n# no keys yet\n')
    const cases: Array<[Record<string, string>, string]> = [
      [{ API_KEYS: `${KEY_A},,${KEY_B}` }, 'API_KEYS'],
      [{ API_KEYS: `${KEY_A},has space` }, 'API_KEYS'],
      [{ API_KEYS_FILE: join(dir, 'missing') }, 'API_KEYS_FILE'],
      [{ API_KEYS_FILE: empty }, 'API_KEYS_FILE'],
      [{ METRICS_REQUIRE_KEY: 'yes', API_KEYS: KEY_A }, 'METRICS_REQUIRE_KEY'],
      [{ METRICS_REQUIRE_KEY: 'true' }, 'METRICS_REQUIRE_KEY'],
      [{ RATE_LIMIT_MAX: '-1' }, 'RATE_LIMIT_MAX'],
      [{ RATE_LIMIT_MAX: '2.5' }, 'RATE_LIMIT_MAX'],
      [{ RATE_LIMIT_WINDOW_MS: '0' }, 'RATE_LIMIT_WINDOW_MS'],
      [{ CORS_ORIGINS: 'https://app.example.com/' }, 'CORS_ORIGINS'],
      [{ CORS_ORIGINS: 'app.example.com' }, 'CORS_ORIGINS'],
      [{ CORS_ORIGINS: '*, https://app.example.com' }, 'CORS_ORIGINS'],
      [{ HEADERS_TIMEOUT_MS: '0' }, 'HEADERS_TIMEOUT_MS'],
      [{ HEADERS_TIMEOUT_MS: '20000', REQUEST_TIMEOUT_MS: '10000' }, 'HEADERS_TIMEOUT_MS'],
      [{ KEEP_ALIVE_TIMEOUT_MS: '1.5' }, 'KEEP_ALIVE_TIMEOUT_MS'],
      [{ MAX_CONNECTIONS: '-1' }, 'MAX_CONNECTIONS']
    ]
    for (const [env, name] of cases) {
      let message = ''
      try {
        loadConfig(env)
      } catch (err) {
        message = (err as Error).message
      }
      expect(message, JSON.stringify(env)).toMatch(new RegExp(`^${name}[= ]`))
      expect(message).not.toContain(KEY_A)
    }
  })
})
