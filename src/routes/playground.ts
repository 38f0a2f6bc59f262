/**
 * GET /playground: a page for people learning the operations (src/playground/), served by the
 * service itself with its script and styles, nothing from elsewhere, so it runs under the content
 * security policy (src/plugins/headers.ts). It calls the service's own routes with "explain": true.
 * The files are read once at start-up: from src/ under tsx, from dist/ (the build copies them) when compiled.
 */
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'

const FILES = {
  'playground.js': 'text/javascript; charset=utf-8',
  'playground.css': 'text/css; charset=utf-8'
} as const

export default async function playgroundRoutes (app: FastifyInstance): Promise<void> {
  const dir = new URL('../playground/', import.meta.url)
  const page = readFileSync(new URL('index.html', dir))
  app.get('/playground', { schema: { hide: true } }, async (request, reply) =>
    await reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(page))
  for (const [name, type] of Object.entries(FILES)) {
    const bytes = readFileSync(new URL(name, dir))
    app.get(`/playground/${name}`, { schema: { hide: true } }, async (request, reply) =>
      await reply.type(type).header('cache-control', 'no-cache').send(bytes))
  }
}
