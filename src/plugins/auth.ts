/**
 * API keys (API_KEYS, API_KEYS_FILE). With none configured every route is open and nothing here
 * runs. With keys, `app.requireApiKey` (an onRequest hook, so before the body is read) lets a
 * request through only with `Authorization: Bearer <key>` or `x-api-key: <key>`, and answers
 * anything else with 401 UNAUTHORIZED and `WWW-Authenticate: Bearer`.
 *
 * Keys are kept only as SHA-256 digests. A presented key is hashed and compared with every digest
 * with crypto.timingSafeEqual (equal lengths, no early exit), so the time taken says nothing about
 * how much of a key was right. Keys are never logged: a request's log line names its key by `key`,
 * the first 8 hex digits of the key's SHA-256.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import { readApiKeysFile } from '../config.js'
import { ApiError } from '../errors.js'

interface StoredKey {
  digest: Buffer
  /** The short hash that names the key in logs. */
  id: string
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Whether any API key is configured (then operation routes need one). */
    authEnabled: boolean
    /** An onRequest hook: 401 without a valid key; lets everything through when no key is configured. */
    requireApiKey: (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void
    /** The id (short hash) of the request's valid API key, or undefined (no key, a wrong key, or keys off). */
    apiKeyId: (request: FastifyRequest) => string | undefined
    /** Reads API_KEYS_FILE again (on SIGHUP); keeps the keys it had when the file is unreadable, malformed or empty. */
    reloadApiKeys: () => boolean
  }
  interface FastifyRequest {
    /** The id of the request's valid API key, once looked up; null when it has none. */
    apiKey?: string | null
  }
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest()

/** The short hash that names a key in logs: 8 hex digits of its SHA-256. */
export function keyId (key: string): string {
  return sha256(key).toString('hex').slice(0, 8)
}

function store (keys: string[]): StoredKey[] {
  return [...new Set(keys)].map((key) => ({ digest: sha256(key), id: keyId(key) }))
}

/** The key a request presents: `Authorization: Bearer <key>`, else `x-api-key: <key>`. */
function presentedKey (request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization
  if (typeof auth === 'string') {
    const m = /^Bearer +(\S+) *$/i.exec(auth)
    if (m !== null) return m[1]
  }
  const header = request.headers['x-api-key']
  return typeof header === 'string' && header !== '' ? header : undefined
}

/** The answer to an operation request without an API key, when keys are set. */
export const KEY_REQUIRED = 'an API key is required: send it as Authorization: Bearer <key> or as x-api-key: <key>'

async function authPlugin (app: FastifyInstance): Promise<void> {
  const { config } = app
  const fromEnv = config.apiKeys
  let keys = store([...fromEnv, ...(config.apiKeysFile !== '' ? readApiKeysFile(config.apiKeysFile) : [])])
  const enabled = keys.length > 0
  if (config.metricsRequireKey && !enabled) throw new Error('METRICS_REQUIRE_KEY=true needs API_KEYS or API_KEYS_FILE: there is no key to require')
  if (enabled) app.log.info({ keys: keys.map((k) => k.id) }, 'API keys loaded')

  function match (key: string): string | undefined {
    const digest = sha256(key)
    let found: string | undefined
    for (const k of keys) {
      // every stored key is compared, whatever matched before
      if (timingSafeEqual(k.digest, digest)) found = k.id
    }
    return found
  }

  function apiKeyId (request: FastifyRequest): string | undefined {
    if (!enabled) return undefined
    if (request.apiKey === undefined) {
      const key = presentedKey(request)
      request.apiKey = key !== undefined ? (match(key) ?? null) : null
    }
    return request.apiKey ?? undefined
  }

  function requireApiKey (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (!enabled || apiKeyId(request) !== undefined) {
      done()
      return
    }
    if (presentedKey(request) === undefined) {
      reply.header('www-authenticate', 'Bearer realm="tensor-service"')
      done(new ApiError('UNAUTHORIZED', KEY_REQUIRED))
    } else {
      reply.header('www-authenticate', 'Bearer realm="tensor-service", error="invalid_token"')
      done(new ApiError('UNAUTHORIZED', 'the API key is not valid'))
    }
  }

  function reloadApiKeys (): boolean {
    if (config.apiKeysFile === '') return false
    try {
      const next = store([...fromEnv, ...readApiKeysFile(config.apiKeysFile)])
      keys = next
      app.log.info({ keys: keys.map((k) => k.id) }, 'API keys reloaded')
      return true
    } catch (err) {
      app.log.error({ reason: (err as Error).message }, 'API keys not reloaded: the keys in use stay')
      return false
    }
  }

  app.decorate('authEnabled', enabled)
  app.decorate('requireApiKey', requireApiKey)
  app.decorate('apiKeyId', apiKeyId)
  app.decorate('reloadApiKeys', reloadApiKeys)
  app.decorateRequest('apiKey', undefined)
}

export default fp(authPlugin, { name: 'auth' })
