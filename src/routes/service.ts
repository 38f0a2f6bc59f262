/** Health, readiness, the OpenAPI document, and / leading to the documentation. */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'

const Status = Type.Object({ status: Type.String({ maxLength: 32, pattern: '^[a-z]+$' }) }, { additionalProperties: false })

/** The only client errors of the probes: requests Node's HTTP parser refuses before any route runs. */
const ClientError = {
  type: 'null',
  description: 'A request Node\'s HTTP parser refuses before it reaches the service (400 for a malformed request line or header, ' +
    '431 for headers over 16 KiB), answered without a body'
}

export default async function serviceRoutes (app: FastifyInstance): Promise<void> {
  app.get('/health', {
    schema: {
      tags: ['service'],
      operationId: 'health',
      summary: 'Liveness: 200 while the process lives',
      description: 'Answers 200 {"status":"ok"} as long as the process runs, also while it drains. Needs no API key.',
      security: [],
      response: { 200: Status, '4xx': ClientError }
    }
  }, async () => ({ status: 'ok' }))

  app.get('/ready', {
    schema: {
      tags: ['service'],
      operationId: 'ready',
      summary: 'Readiness: 200 when the service can take work, 503 while starting or draining',
      description: 'Answers 200 {"status":"ready"} once every worker has started, and 503 {"status":"unavailable"} from the start of a drain. Needs no API key.',
      security: [],
      response: { 200: Status, '4xx': ClientError, 503: Status }
    }
  }, async (request, reply) => {
    if (!app.accepting) return reply.code(503).send({ status: 'unavailable' })
    return { status: 'ready' }
  })

  // the service's address in a browser opens its documentation
  app.get('/', { schema: { hide: true } }, async (request, reply) => await reply.redirect('/docs'))

  app.get('/openapi.json', {
    schema: { hide: true }
  }, async () => app.swagger())
}
