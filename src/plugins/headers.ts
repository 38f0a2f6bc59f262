/**
 * Response headers for browsers: security headers on every reply (@fastify/helmet), and CORS
 * (@fastify/cors) when CORS_ORIGINS is set.
 *
 * The content security policy is helmet's default made stricter so that it fits the whole
 * service, Swagger UI at /docs included: everything from the service's own origin (Swagger UI's
 * scripts, styles and "Try it out" requests) and data: images and fonts, nothing from anywhere
 * else. No `upgrade-insecure-requests`: TLS is the deployer's choice, and on plain HTTP it would
 * send the page's own requests to an https:// that is not there.
 */
import cors from '@fastify/cors'
import helmet from '@fastify/helmet'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

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

async function headersPlugin (app: FastifyInstance): Promise<void> {
  await app.register(helmet, {
    contentSecurityPolicy: { useDefaults: false, directives: CONTENT_SECURITY_POLICY }
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
