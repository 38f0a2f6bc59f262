/**
 * The process: configuration, the app, listen, and a graceful drain on SIGTERM or SIGINT:
 * /ready turns 503, the listener closes (new connections are refused), idle keep-alive
 * connections are closed, in-flight requests finish, the pool closes, and the process exits 0.
 * Past SHUTDOWN_GRACE_MS, or on a second signal, it exits at once with 1. SIGHUP re-reads
 * API_KEYS_FILE.
 */
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { type Config, loadConfig } from './config.js'

/** Starts the service with a configuration and installs the drain on signals. */
export async function start (config: Config): Promise<FastifyInstance> {
  const app = await buildApp(config)
  // with a key file, SIGHUP re-reads it; without one, SIGHUP drains as SIGTERM does
  const reloadOnHangup = config.apiKeysFile !== ''
  closeWithGrace({
    delay: config.shutdownGraceMs,
    skip: reloadOnHangup ? ['SIGHUP'] : [],
    logger: false,
    onSecondSignal: (signal) => app.log.warn({ signal }, 'second signal: exiting now'),
    onTimeout: (delay) => app.log.error({ delay }, 'drain took longer than SHUTDOWN_GRACE_MS: exiting now')
  }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'closing after an unexpected error')
    else app.log.info({ signal }, 'draining')
    app.accepting = false
    app.server.closeIdleConnections()
    await app.close()
    app.log.info('drained')
  })
  if (reloadOnHangup) process.on('SIGHUP', () => { app.reloadApiKeys() })
  await app.listen({ port: config.port, host: config.host })
  return app
}

async function main (): Promise<void> {
  let config: Config
  try {
    config = loadConfig()
  } catch (err) {
    process.stderr.write(`configuration error: ${(err as Error).message}\n`)
    process.exit(1)
  }
  await start(config)
}

// run when started as the program (node dist/server.js, also through a symlink), not when imported
if (process.argv[1] !== undefined && realpathSync(fileURLToPath(import.meta.url)) === realpathSync(process.argv[1])) {
  main().catch((err: unknown) => {
    process.stderr.write(`failed to start: ${(err as Error).message}\n`)
    process.exit(1)
  })
}
