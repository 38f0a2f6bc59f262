/**
 * Per-client rate limits on the operation routes (RATE_LIMIT_MAX per RATE_LIMIT_WINDOW_MS), with
 * @fastify/rate-limit. A client is its API key when keys are configured and it sends a valid one,
 * else its address (so requests with a wrong key are limited too, per address). Counted in an
 * onRequest hook, before the body is read, as the load shedding is: past the limit a request costs
 * a hash lookup. Answers 429 RATE_LIMITED with Retry-After and the IETF draft's RateLimit-Limit,
 * RateLimit-Remaining and RateLimit-Reset headers (the latter three on every limited route's reply).
 *
 * The counts live in this process's memory: N processes or replicas allow N times the limit.
 */
import rateLimit, { normalizeIP } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import { ApiError } from '../errors.js'

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
  // global: false: only the routes given the hook are counted (not the probes, metrics or docs)
  await app.register(rateLimit, {
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

export default fp(rateLimitPlugin, { name: 'rate-limit', dependencies: ['auth'] })
