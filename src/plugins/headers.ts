/**
 * Response headers for browsers: security headers on every reply (helmet's, computed once at start
 * and set with one call per request: @fastify/helmet runs helmet's middleware chain on every
 * request, which took 40% of the service's throughput on a 4x4 matmul, 9,300 against 15,900
 * req/s), and CORS (@fastify/cors) when CORS_ORIGINS is set.
 *
 * The content security policy is helmet's default made stricter so that it fits the whole
 * service, Swagger UI at /docs included: everything from the service's own origin (Swagger UI's
 * scripts, styles and "Try it out" requests) and data: images and fonts, nothing from anywhere
 * else. No `upgrade-insecure-requests`: TLS is the deployer's choice, and on plain HTTP it would
 * send the page's own requests to an https:// that is not there.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import cors from '@fastify/cors'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import helmet, { type HelmetOptions } from 'helmet'

export const CONTENT_SECURITY_POLICY = {
  'default-src': ["'self'"],
  'base-uri': ["'self'"],
  'connect-src': ["'self'"],
  'font-src': ["'self'", 'data:'],
  'form-action': ["'self'"],
  'frame-ancestors': ["'self'"],
  'img-src': ["'self'", 'data:'],
  'object-src': ["'none'"],
  'script-src': ["'self'"],
  'script-src-attr': ["'none'"],
  'style-src': ["'self'"],
  'upgrade-insecure-requests': null
}

/** The request headers a browser may send cross-origin, and the reply headers it may read. */
export const CORS_ALLOWED_HEADERS = ['content-type', 'authorization', 'x-api-key', 'x-request-id']
export const CORS_EXPOSED_HEADERS = ['x-request-id', 'retry-after', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset']

/** The headers helmet sets for these options (its policy is static: no nonces, nothing per request). */
export function helmetHeaders (options: HelmetOptions): Record<string, string> {
  const headers: Record<string, string> = {}
  const res = {
    setHeader: (name: string, value: unknown) => { headers[name.toLowerCase()] = String(value) },
    removeHeader: (name: string) => { headers[name.toLowerCase()] = '' }
  }
  let done = false
  helmet(options)({} as IncomingMessage, res as unknown as ServerResponse, (err?: unknown) => {
    if (err !== undefined) throw err
    done = true
  })
  if (!done) throw new Error('helmet did not finish synchronously')
  return Object.fromEntries(Object.entries(headers).filter(([, v]) => v !== ''))
}

async function headersPlugin (app: FastifyInstance): Promise<void> {
  const headers = helmetHeaders({ contentSecurityPolicy: { useDefaults: false, directives: CONTENT_SECURITY_POLICY } })
  // Fastify sets no x-powered-by; helmet's removal of it has nothing to do here
  app.addHook('onRequest', (request, reply, done) => {
    reply.headers(headers)
    done()
  })
  const origins = app.config.corsOrigins
  if (origins.length > 0) {
    await app.register(cors, {
      origin: origins[0] === '*' ? '*' : origins,
      methods: ['GET', 'POST'],
      allowedHeaders: CORS_ALLOWED_HEADERS,
      exposedHeaders: CORS_EXPOSED_HEADERS,
      // keys travel in headers, never in cookies
      credentials: false,
      maxAge: 600
    })
  }
}

export default fp(headersPlugin, { name: 'headers' })
