/**
 * The kernel pool: a piscina pool of worker threads (WORKERS), one task per worker.
 * `app.compute(name, task, transferList, reply)`:
 * - admits a task only while fewer than WORKERS + MAX_QUEUE are in flight, else 503 OVERLOADED
 *   (counted here, synchronously: piscina ignores maxQueue for tasks that carry a signal);
 * - stops it after TASK_TIMEOUT_MS (504 TIMEOUT) or when the client goes away — piscina
 *   terminates a worker whose task is aborted and starts a new one;
 * - turns a worker's failure (a throw, a crash, running out of memory) into a generic 500;
 * - resolves with the result moved back from the worker.
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
    filename: config.workerFile ?? WORKER_FILE,
    minThreads: config.workers,
    maxThreads: config.workers,
    concurrentTasksPerWorker: 1,
    idleTimeout: 60_000,
    resourceLimits: { maxOldGenerationSizeMb: config.workerHeapMb }
  })
  pool.on('error', (err: unknown) => app.log.error({ err }, 'worker thread failed'))
  let inFlight = 0
  const capacity = config.workers + config.maxQueue
  app.metrics.poolState = () => ({
    queued: pool.queueSize,
    busy: Math.min(inFlight, config.workers),
    workers: pool.threads.length
  })

  async function compute (name: string, task: object, transferList: ArrayBuffer[], reply: FastifyReply): Promise<unknown> {
    if (inFlight >= capacity) {
      app.metrics.shed.inc({ reason: 'queue' })
      throw new ApiError('OVERLOADED', `the service is at capacity (${config.workers} workers busy, ${config.maxQueue} tasks waiting); retry shortly`)
    }
    const controller = new AbortController()
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      controller.abort()
    }, config.taskTimeoutMs)
    // the client went away before its answer: stop its queued or running task
    const onClose = (): void => {
      if (!reply.raw.writableFinished) controller.abort()
    }
    reply.raw.once('close', onClose)
    inFlight++
    const started = process.hrtime.bigint()
    try {
      const result = await pool.run(task, { name, transferList, signal: controller.signal })
      app.metrics.computeDuration.observe({ op: name }, Number(process.hrtime.bigint() - started) / 1e9)
      return result
    } catch (err) {
      if (timedOut) {
        app.metrics.timedOut.inc({ op: name })
        throw new ApiError('TIMEOUT', `the computation ran past its time limit of ${config.taskTimeoutMs} ms and was stopped`)
      }
      if (!controller.signal.aborted) app.metrics.failed.inc({ op: name })
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

export default fp(poolPlugin, { name: 'kernel-pool', dependencies: ['metrics'] })
