/**
 * The process: configuration, the app, listen, and a graceful drain on SIGTERM or SIGINT:
 * /ready turns 503, the listener closes (new connections are refused), idle keep-alive
 * connections are closed, in-flight requests finish, the pool closes, and the process exits 0.
 * Past SHUTDOWN_GRACE_MS, or on a second signal, it exits at once with 1. SIGHUP re-reads
 * API_KEYS_FILE.
 *
 * Log lines go to stdout through a buffered, asynchronous destination, so that no request waits
 * for its line to be written; the buffer is written out every second, and on every way out.
 */
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { buildApp } from './app.js'
import { type Config, loadConfig } from './config.js'

/** Log lines are held until this many bytes wait (or the next second), then written in one go. */
const LOG_BUFFER_BYTES = 4096
/** How long a line may wait in the buffer when traffic is light. */
const LOG_FLUSH_MS = 1000

type LogDestination = ReturnType<typeof pino.destination>

/** Writes out the log lines still held, synchronously: for the exits that cannot wait. */
function flushLogNow (log: LogDestination): void {
  try {
    log.flushSync()
  } catch {
    // nothing more can be done about a log that cannot be written
  }
}

/** Writes out the log lines still held, and waits for a write in flight. */
async function flushLog (log: LogDestination): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => { flushLogNow(log); resolve() }, 1000)
    log.flush(() => { clearTimeout(timer); resolve() })
  })
}

/** Starts the service with a configuration and installs the drain on signals. */
export async function start (config: Config): Promise<FastifyInstance> {
  const log = pino.destination({ dest: 1, sync: false, minLength: LOG_BUFFER_BYTES })
  const flushing = setInterval(() => {
    try {
      log.flush()
    } catch {
      // (a destination that cannot be written is not a reason to stop serving)
    }
  }, LOG_FLUSH_MS).unref()
  const app = await buildApp(config, { logStream: log })
  // with a key file, SIGHUP re-reads it; without one, SIGHUP drains as SIGTERM does
  const reloadOnHangup = config.apiKeysFile !== ''
  closeWithGrace({
    delay: config.shutdownGraceMs,
    skip: reloadOnHangup ? ['SIGHUP'] : [],
    logger: false,
    onSecondSignal: (signal) => {
      app.log.warn({ signal }, 'second signal: exiting now')
      flushLogNow(log)
    },
    onTimeout: (delay) => {
      app.log.error({ delay }, 'drain took longer than SHUTDOWN_GRACE_MS: exiting now')
      flushLogNow(log)
    }
  }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'closing after an unexpected error')
    else app.log.info({ signal }, 'draining')
    app.accepting = false
    app.server.closeIdleConnections()
    await app.close()
    app.log.info('drained')
    clearInterval(flushing)
    await flushLog(log)
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
