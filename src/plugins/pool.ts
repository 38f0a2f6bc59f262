/**
 * The kernel pool: a piscina pool of worker threads (WORKERS), one task per worker.
 * `app.compute(name, task, transferList, reply)` admits a task only while fewer than
 * WORKERS + MAX_QUEUE are in flight (503 OVERLOADED past that), stops it after TASK_TIMEOUT_MS
 * (504 TIMEOUT; piscina terminates the worker and starts a new one) or when the client goes
 * away, and resolves with the result moved back from the worker.
 */
import type { FastifyInstance, FastifyReply } from 'fastify'
import fp from 'fastify-plugin'
import { Piscina } from 'piscina'
import type { Config } from '../config.js'
import { ApiError } from '../errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    compute: (name: string, task: object, transferList: ArrayBuffer[], reply: FastifyReply) => Promise<unknown>
    pool: Piscina
  }
}

/** From the TypeScript sources (vitest, tsx) the worker loads through a tsx shim; compiled, directly. */
const WORKER_FILE = import.meta.url.endsWith('.ts')
  ? new URL('../worker/source-entry.mjs', import.meta.url).href
  : new URL('../worker/index.js', import.meta.url).href

export interface PoolOptions {
  config: Config
}

async function poolPlugin (app: FastifyInstance, { config }: PoolOptions): Promise<void> {
  const pool = new Piscina({
    filename: WORKER_FILE,
    minThreads: config.workers,
    maxThreads: config.workers,
    concurrentTasksPerWorker: 1,
    idleTimeout: 60_000
  })
  pool.on('error', (err: unknown) => app.log.error({ err }, 'worker thread failed'))
  let inFlight = 0
  const capacity = config.workers + config.maxQueue

  async function compute (name: string, task: object, transferList: ArrayBuffer[], reply: FastifyReply): Promise<unknown> {
    if (inFlight >= capacity) {
      throw new ApiError('OVERLOADED', `the service is at capacity (${config.workers} workers busy, ${config.maxQueue} tasks waiting); retry shortly`)
    }
    const controller = new AbortController()
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      controller.abort()
    }, config.taskTimeoutMs)
    const onClose = (): void => {
      if (!reply.raw.writableFinished) controller.abort()
    }
    reply.raw.once('close', onClose)
    inFlight++
    try {
      return await pool.run(task, { name, transferList, signal: controller.signal })
    } catch (err) {
      if (timedOut) throw new ApiError('TIMEOUT', `the computation ran past its time limit of ${config.taskTimeoutMs} ms and was stopped`)
      throw err
    } finally {
      inFlight--
      clearTimeout(timer)
      reply.raw.off('close', onClose)
    }
  }

  app.decorate('pool', pool)
  app.decorate('compute', compute)
  app.addHook('onClose', async () => {
    await pool.close()
  })
}

export default fp(poolPlugin, { name: 'kernel-pool' })
