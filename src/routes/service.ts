/** Health, readiness and the OpenAPI document. */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'

const Status = Type.Object({ status: Type.String() }, { additionalProperties: false })

export default async function serviceRoutes (app: FastifyInstance): Promise<void> {
  app.get('/health', {
    schema: { tags: ['service'], summary: 'Liveness: 200 while the process lives', response: { 200: Status } }
  }, async () => ({ status: 'ok' }))

  app.get('/ready', {
    schema: {
      tags: ['service'],
      summary: 'Readiness: 200 when the service can take work, 503 while starting or draining',
      response: { 200: Status, 503: Status }
    }
  }, async (request, reply) => {
    if (!app.accepting) return reply.code(503).send({ status: 'unavailable' })
    return { status: 'ready' }
  })

  app.get('/openapi.json', {
    schema: { hide: true }
  }, async () => app.swagger())
}
