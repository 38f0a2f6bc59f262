/**
 * The process: configuration, the app, listen, and a graceful close on SIGTERM/SIGINT
 * (readiness turns 503, in-flight requests finish, the pool closes; a second signal exits at once).
 */
import { buildApp } from './app.js'
import { loadConfig } from './config.js'

async function main (): Promise<void> {
  let config
  try {
    config = loadConfig()
  } catch (err) {
    process.stderr.write(`configuration error: ${(err as Error).message}\n`)
    process.exit(1)
  }
  const app = await buildApp(config)
  let closing = false
  const shutdown = (signal: string): void => {
    if (closing) {
      app.log.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    closing = true
    app.log.info({ signal }, 'draining')
    app.server.closeIdleConnections()
    app.close().then(() => process.exit(0), (err: unknown) => {
      app.log.error({ err }, 'error while closing')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
  await app.listen({ port: config.port, host: config.host })
}

main().catch((err: unknown) => {
  process.stderr.write(`failed to start: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
