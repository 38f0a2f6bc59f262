/**
 * The application as a Fastify instance that tests build without listening: Ajv that never
 * coerces or drops fields, request ids, OpenAPI + Swagger UI, the kernel pool, the routes and
 * the one error handler.
 */
import { randomUUID } from 'node:crypto'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import underPressure from '@fastify/under-pressure'
import Fastify, { type FastifyError, type FastifyInstance, LogController } from 'fastify'
import type { DestinationStream } from 'pino'
import { type Config, defaultConfig } from './config.js'
import { errorBody, internalMessage, isApiError, STATUS_TEXT, unsupportedMediaMessage } from './errors.js'
import { bodyPending, drainBody } from './linger.js'
import type { Limits } from './kernels/types.js'
import authPlugin from './plugins/auth.js'
import compressPlugin from './plugins/compress.js'
import headersPlugin from './plugins/headers.js'
import metricsPlugin from './plugins/metrics.js'
import poolPlugin from './plugins/pool.js'
import rateLimitPlugin from './plugins/rate-limit.js'
import playgroundRoutes from './routes/playground.js'
import serviceRoutes from './routes/service.js'
import operationRoutes from './routes/v1/operations.js'
import { swaggerOptions, swaggerUiPlugins } from './openapi.js'
import { AJV_OPTIONS } from './schemas/ajv.js'
import { formatSchemaErrors } from './schemas/validation.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
    limits: Limits
    /** False while starting and while draining: /ready answers 503. */
    accepting: boolean
  }
  interface FastifyRequest {
    /** Operand shapes, for the request's log line (never the data). */
    shapes?: Record<string, number[]>
    /** The error code answered, for the request's log line. */
    errorCode?: string
  }
}

/** Routes that answer even under pressure: probes, metrics, the docs and the playground's files. */
const ALWAYS_ANSWER = /^\/(health|ready|metrics|openapi\.json|docs|playground)(\/|$)/

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

export interface AppOptions {
  /** Where the log lines go (default: pino's synchronous stdout); the process passes its buffered one. */
  logStream?: DestinationStream
}

/**
 * How often Node checks open connections against the header and request time limits (its own
 * default, 30 s, would let a limit of 10 s run to 40): a quarter of the shorter limit, within
 * 50 ms and 1 s.
 */
export function connectionsCheckingInterval (config: Pick<Config, 'headersTimeoutMs' | 'requestTimeoutMs'>): number {
  return Math.max(50, Math.min(1000, Math.floor(Math.min(config.headersTimeoutMs, config.requestTimeoutMs) / 4)))
}

/** TRUST_PROXY as a hop count: the nearest `hops` proxies are trusted, whatever their addresses. */
function trustHops (hops: number): (address: string, hop: number) => boolean {
  return (_address, hop) => hop < hops
}

export async function buildApp (overrides: Partial<Config> = {}, options: AppOptions = {}): Promise<FastifyInstance> {
  const config: Config = { ...defaultConfig(), ...overrides }
  const app = Fastify({
    logger: {
      level: config.logLevel,
      stream: options.logStream,
      // request bodies are never logged; should one ever reach a log call, its tensors are cut out,
      // and so are the headers that carry API keys
      redact: {
        paths: ['body', 'req.body', 'request.body', 'payload', '*.data',
          '*.headers.authorization', '*.headers["x-api-key"]'],
        censor: '[redacted]'
      }
    },
    // one line per request, written in onResponse below (with the shapes, never the data)
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimitBytes,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    ajv: { customOptions: { ...AJV_OPTIONS } },
    return503OnClosing: true,
    // slow clients: headers, whole requests and idle keep-alive connections each have a time limit
    // (Node answers 408 and closes), checked often enough for the limits to hold within a second
    http: {
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      keepAliveTimeout: config.keepAliveTimeoutMs,
      connectionsCheckingInterval: connectionsCheckingInterval(config)
    },
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // the client's address (request.ip: rate limits, logs) from X-Forwarded-For, from trusted proxies only
    trustProxy: typeof config.trustProxy === 'number' ? trustHops(config.trustProxy) : config.trustProxy,
    schemaErrorFormatter: (errors, dataVar) => new Error(formatSchemaErrors(errors, dataVar))
  })

  app.decorate('config', config)
  // past MAX_CONNECTIONS open connections, Node closes each new one as it is accepted
  if (config.maxConnections > 0) app.server.maxConnections = config.maxConnections
  app.decorate('limits', { maxElements: config.maxElements, maxFlops: config.maxFlops, maxJsonReplyBytes: config.maxJsonReplyBytes, maxGraphNodes: config.maxGraphNodes })
  app.decorate('accepting', false)
  // (declared, so that every request object has the same shape: set on some requests only, they
  // would give Fastify's request objects several hidden classes)
  app.decorateRequest('shapes', undefined)
  app.decorateRequest('errorCode', undefined)

  // JSON only: without the text/plain parser, a text body is refused with 415
  app.removeContentTypeParser(['text/plain'])

  // (the per-request hooks take a callback rather than returning a promise: cheaper, for small requests)
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    done()
  })

  // while draining, every answer closes its connection, so no keep-alive client holds the close;
  // an answer given before the body was read waits for the rest of it first (src/linger.ts)
  app.addHook('onSend', (request, reply, payload, done) => {
    if (!app.accepting) reply.header('connection', 'close')
    if (!bodyPending(request.raw)) {
      done(null, payload)
      return
    }
    drainBody(request.raw, 4 * config.bodyLimitBytes).then((ended) => {
      if (!ended) reply.header('connection', 'close')
      done(null, payload)
    }, () => done(null, payload))
  })

  // The request's line is written by a child logger without the redaction pass: the line is built
  // here from the fields below alone (no body, no tensor data can reach it), and the redaction's
  // wildcard path cost a walk over every field of every line. Its reqId is written first, where
  // request.log's binding would put it, so the line is the same text.
  const requestLog = app.log.child({}, { redact: [] })
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url
    const line = {
      reqId: request.id,
      method: request.method,
      route: route ?? request.url.split('?')[0].slice(0, 200),
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 100) / 100,
      shapes: request.shapes,
      code: request.errorCode,
      // the API key by its short hash, never the key
      key: request.apiKey ?? undefined,
      // the client's address (from X-Forwarded-For only when the peer is a trusted proxy: TRUST_PROXY)
      client: request.ip
    }
    if (route !== undefined && ALWAYS_ANSWER.test(route) && reply.statusCode < 400) requestLog.debug(line, 'request')
    else requestLog.info(line, 'request')
    done()
  })

  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (isApiError(err)) {
      request.errorCode = err.code
      if (err.code === 'OVERLOADED') reply.header('retry-after', '1')
      return reply.code(err.statusCode).send(errorBody(err.statusCode, err.code, err.message))
    }
    const status = typeof err.statusCode === 'number' ? err.statusCode : 500
    if (status >= 400 && status < 500) {
      let message = err.message
      if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
        const type = String(request.headers['content-type'] ?? 'none').slice(0, 100)
        message = unsupportedMediaMessage(type)
      }
      request.errorCode = err.code ?? (err.validation !== undefined ? 'FST_ERR_VALIDATION' : 'BAD_REQUEST')
      return reply.code(status).send({
        statusCode: status,
        code: request.errorCode,
        error: STATUS_TEXT[status] ?? 'Bad Request',
        message
      })
    }
    request.errorCode = 'INTERNAL'
    request.log.error({ err }, 'request failed')
    return reply.code(500).send(errorBody(500, 'INTERNAL', internalMessage(request.id)))
  })

  // the methods of each path, for a 405 with Allow to a known path asked with another method
  const methodsOf = new Map<string, string[]>()
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) methodsOf.set(route.url, [...(methodsOf.get(route.url) ?? []), method])
  })

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]
    const allowed = methodsOf.get(path)
    if (allowed !== undefined) {
      request.errorCode = 'METHOD_NOT_ALLOWED'
      return reply.code(405).header('allow', allowed.join(', '))
        .send(errorBody(405, 'METHOD_NOT_ALLOWED', `${request.method} ${path} is not allowed: use ${allowed.join(' or ')}`))
    }
    return reply.code(404).send(errorBody(404, 'NOT_FOUND', `no route ${request.method} ${path}`))
  })

  // security headers (the content security policy covers /docs too) and CORS when configured
  await app.register(headersPlugin)
  // Content-Encoding of request bodies and of replies
  await app.register(compressPlugin)
  await app.register(swagger, swaggerOptions as Parameters<typeof swagger>[1])
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { docExpansion: 'list', deepLinking: true, tryItOutEnabled: true, persistAuthorization: false, plugins: swaggerUiPlugins as never }
  })
  await app.register(authPlugin)
  await app.register(metricsPlugin)
  await app.register(rateLimitPlugin)
  await app.register(underPressure, {
    maxEventLoopDelay: config.maxEventLoopDelayMs,
    maxRssBytes: config.maxRssBytes,
    pressureHandler: (request, reply, type) => {
      if (ALWAYS_ANSWER.test(request.url)) return // probes and metrics answer under pressure
      const reason = type === 'rssBytes' ? 'rss' : 'event_loop_delay'
      app.metrics.shed.inc({ reason })
      request.errorCode = 'OVERLOADED'
      reply.code(503).header('retry-after', '1')
      // a returned body is sent by under-pressure, and the route's handler does not run
      return {
        statusCode: 503,
        code: 'OVERLOADED',
        error: STATUS_TEXT[503],
        message: `the service is under pressure (${reason === 'rss' ? 'memory' : 'event-loop delay'} over its limit); retry shortly`
      } as unknown as undefined
    }
  })
  await app.register(poolPlugin, { config })
  await app.register(serviceRoutes)
  await app.register(playgroundRoutes)
  await app.register(operationRoutes)

  app.addHook('onReady', async () => {
    app.accepting = true
  })
  app.addHook('preClose', async () => {
    app.accepting = false
  })
  return app
}
