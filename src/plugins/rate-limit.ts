/**
 * Per-client rate limits on the operation routes (RATE_LIMIT_MAX per RATE_LIMIT_WINDOW_MS), with
 * @fastify/rate-limit. A client is its API key when keys are configured and it sends a valid one,
 * else its address (so requests with a wrong key are limited too, per address). Counted in an
 * onRequest hook, before the body is read, as the load shedding is: past the limit a request costs
 * a hash lookup. Answers 429 RATE_LIMITED with Retry-After and the IETF draft's RateLimit-Limit,
 * RateLimit-Remaining and RateLimit-Reset headers (the latter three on every limited route's reply).
 *
 * The counts live in this process's memory (N processes or replicas allow N times the limit), or
 * with RATE_LIMIT_REDIS_URL in Redis, shared by every replica. Redis failing never fails a request:
 * a call has REDIS_TIMEOUT_MS, commands are not queued while disconnected, and a request whose count
 * could not be made is let through (fail open), counted in tensor_rate_limit_store_errors_total;
 * the first failure of an outage is logged, and so is the recovery (the client reconnects alone).
 */
import rateLimit, { type FastifyRateLimitStoreCtor, normalizeIP } from '@fastify/rate-limit'
// @ts-expect-error: the package's Redis store has no type declarations of its own
import RedisStore from '@fastify/rate-limit/store/RedisStore.js'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import { Counter } from 'prom-client'
import { ApiError } from '../errors.js'

/** The longest one Redis call may take before the request goes on uncounted. */
export const REDIS_TIMEOUT_MS = 200

type Callback = (err: Error | null, res?: { current: number, ttl: number }) => void
interface Store {
  incr: (key: string, cb: Callback, timeWindow: number, max: number) => void
  read: (key: string, cb: Callback, timeWindow: number, max: number) => void
  child: (routeOptions: unknown) => Store
}

/** A store that reports each call's outcome (a failure, or a success) before answering. */
function watched (inner: Store, report: (err: Error | null) => void): Store {
  const wrap = (cb: Callback): Callback => (err, res) => {
    report(err)
    cb(err, res)
  }
  return {
    incr: (key, cb, timeWindow, max) => inner.incr(key, wrap(cb), timeWindow, max),
    read: (key, cb, timeWindow, max) => inner.read(key, wrap(cb), timeWindow, max),
    child: (routeOptions) => watched(inner.child(routeOptions), report)
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The rate limit's onRequest hook for the operation routes; undefined when RATE_LIMIT_MAX is 0. */
    rateLimitHook?: (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void
  }
}

export const rateLimited = (max: number, windowMs: number, after: string): ApiError =>
  new ApiError('RATE_LIMITED', `rate limit reached: ${max} requests per ${windowMs} ms; retry in ${after}`)

async function rateLimitPlugin (app: FastifyInstance): Promise<void> {
  const { config } = app
  if (config.rateLimitMax === 0) return
  let store: { store?: FastifyRateLimitStoreCtor } = {}
  if (config.rateLimitRedisUrl !== '') {
    const errors = new Counter({
      name: 'tensor_rate_limit_store_errors_total',
      help: 'Rate-limit counts that Redis (RATE_LIMIT_REDIS_URL) could not make in time: those requests went on uncounted',
      registers: [app.metrics.registry]
    })
    let down = false
    const report = (err: Error | null): void => {
      if (err !== null) {
        errors.inc()
        if (!down) app.log.warn({ err: { message: err.message } }, 'rate-limit store (Redis) failing: requests go on uncounted until it answers again')
        down = true
      } else if (down) {
        down = false
        app.log.info('rate-limit store (Redis) answering again')
      }
    }
    const redis = new Redis(config.rateLimitRedisUrl, {
      commandTimeout: REDIS_TIMEOUT_MS,
      connectTimeout: 1000,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (times: number) => Math.min(100 * times, 1000)
    })
    // (connection errors come as events too: without a listener they would be thrown)
    redis.on('error', () => {})
    // counting from the first request: start-up waits for the connection, for a second at most
    // (without Redis the service starts all the same, and answers uncounted until it connects)
    let waited: NodeJS.Timeout | undefined
    let ready = (): void => {}
    await Promise.race([
      new Promise<void>(resolve => { ready = resolve; redis.once('ready', resolve) }),
      new Promise(resolve => { waited = setTimeout(resolve, 1000) })
    ])
    clearTimeout(waited)
    redis.off('ready', ready)
    app.addHook('onClose', async () => { redis.disconnect() })
    const shared: Store = new RedisStore(false, false, redis, 'tensor-service-rate-')
    const watchedStore = watched(shared, report)
    // (the plugin constructs its store: this one returns the watched Redis store)
    store = { store: function StoreOf () { return watchedStore } as unknown as FastifyRateLimitStoreCtor }
  }
  // global: false: only the routes given the hook are counted (not the probes, metrics or docs)
  await app.register(rateLimit, {
    ...store,
    skipOnError: true,
    global: false,
    max: config.rateLimitMax,
    timeWindow: config.rateLimitWindowMs,
    enableDraftSpec: true,
    keyGenerator: (request) => {
      const id = app.apiKeyId(request)
      return id !== undefined ? `key:${id}` : `ip:${normalizeIP(request.ip)}`
    },
    errorResponseBuilder: (request, context) => rateLimited(context.max, config.rateLimitWindowMs, context.after)
  })
  const limit = app.rateLimit()
  // (a callback hook, as the route's other onRequest hooks are)
  app.decorate('rateLimitHook', (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
    limit.call(app, request, reply).then(() => done(), done)
  })
}

export default fp(rateLimitPlugin, { name: 'rate-limit', dependencies: ['auth', 'metrics'] })
