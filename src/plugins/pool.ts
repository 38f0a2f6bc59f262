/**
 * The kernel pool: a piscina pool of worker threads (WORKERS), one task per worker.
 * `app.compute(name, task, transferList, reply)`:
 * - runs it when a worker is free, lets it wait while fewer than MAX_QUEUE wait, else refuses it
 *   with 503 OVERLOADED (counted here, synchronously: piscina ignores maxQueue for tasks that
 *   carry a signal);
 * - stops it TASK_TIMEOUT_MS after it reached its worker (504 TIMEOUT), or when the client goes
 *   away: its next engine call throws, and a task still running STOP_GRACE_MS later has its
 *   worker terminated (piscina starts a new one);
 * - turns a worker's failure (a throw, a crash, running out of memory) into a generic 500;
 * - resolves with the result moved back from the worker.
 * `app.computeRequest(task, reply)` does the same for a whole request given as its raw body
 * (parsed, validated, computed and encoded in one worker: src/worker/request.ts).
 */
import type { FastifyInstance, FastifyReply } from 'fastify'
import fp from 'fastify-plugin'
import { Piscina } from 'piscina'
import type { Config } from '../config.js'
import { ApiError } from '../errors.js'
import { buffers } from '../tensor/buffers.js'
import { closeGate, type Gate, newGate } from '../worker/gate.js'
import type { RequestOutcome, RequestTask } from '../worker/request.js'
import { OPERATIONS, type OperationName } from '../operations/index.js'
import { runOperation, type TaskBase } from '../operations/spec.js'
import type { ReplySpec } from '../tensor/encode.js'

interface Job { name: string, task: object, transferList: ArrayBuffer[] }

declare module 'fastify' {
  interface FastifyInstance {
    compute: (name: OperationName, task: TaskBase, transferList: ArrayBuffer[], reply: FastifyReply) => Promise<unknown>
    /** A whole request from its raw body, in a worker (src/worker/request.ts). */
    computeRequest: (task: RequestTask, reply: FastifyReply) => Promise<RequestOutcome>
    /** True while every worker is busy and the queue is full: new work would be refused. */
    poolFull: () => boolean
    pool: Piscina
  }
}

/** From the TypeScript sources (vitest, tsx) the worker loads through a tsx shim; compiled, directly. */
const WORKER_FILE = import.meta.url.endsWith('.ts')
  ? new URL('../worker/source-entry.mjs', import.meta.url).href
  : new URL('../worker/index.js', import.meta.url).href

/** 503 OVERLOADED: every worker busy and the queue full. */
export const overloaded = (config: Pick<Config, 'workers' | 'maxQueue'>): ApiError =>
  new ApiError('OVERLOADED', `the service is at capacity (${config.workers} workers busy, ${config.maxQueue} tasks waiting); retry shortly`)

export const timeout = (config: Pick<Config, 'taskTimeoutMs'>): ApiError =>
  new ApiError('TIMEOUT', `the computation ran past its time limit of ${config.taskTimeoutMs} ms and was stopped`)

const cancelled = (): ApiError => new ApiError('CANCELLED', 'the client closed the connection; its task was stopped')

export interface PoolOptions {
  config: Config
}

/**
 * How long a stopped task (its client gone, or past its deadline) may take to end on its own
 * once its gate is closed, before its worker is terminated.
 */
export const STOP_GRACE_MS = 50

/** Slots of the busy-time table, one per worker thread by its id (modulo). */
export const BUSY_SLOTS = 64

async function poolPlugin (app: FastifyInstance, { config }: PoolOptions): Promise<void> {
  // seconds each worker spent on tasks, written by the workers (src/worker/index.ts), read by /metrics
  const busy = new Float64Array(new SharedArrayBuffer(8 * BUSY_SLOTS))
  /** The worker threads started, the last BUSY_SLOTS of them: a stopped worker's total stays reported. */
  const started: number[] = []
  app.metrics.workerBusy = () => new Map(started.map(id => [id, busy[id % BUSY_SLOTS]]))
  const pool = new Piscina({
    filename: config.workerFile ?? WORKER_FILE,
    minThreads: config.workers,
    maxThreads: config.workers,
    concurrentTasksPerWorker: 1,
    idleTimeout: 60_000,
    resourceLimits: { maxOldGenerationSizeMb: config.workerHeapMb },
    workerData: { bufferPoolBytes: config.bufferPoolBytes, busy: busy.buffer }
  })
  buffers.setCap(config.bufferPoolBytes)
  pool.on('error', (err: unknown) => app.log.error({ err }, 'worker thread failed'))
  // Admission is counted here: a task runs when a started worker is free, else waits in this
  // FIFO (at most MAX_QUEUE), else is refused. So piscina never queues, its maxQueue (ignored
  // for tasks with a signal) does not matter, and TASK_TIMEOUT_MS starts when the task reaches
  // a worker — not while it waits, nor while a replacement worker starts up.
  let ready = 0
  let running = 0
  /** The stop gates of the tasks on the workers. */
  const onWorkers = new Set<Gate>()
  const waiting: Array<{ go: () => void }> = []
  app.metrics.poolState = () => ({ queued: waiting.length, busy: running, workers: ready })
  pool.on('workerCreate', (worker: { id: number }) => { // emitted once a worker can take tasks
    if (started.push(worker.id) > BUSY_SLOTS) started.shift()
    app.metrics.workersStarted.inc()
    ready++
    dispatch()
  })
  pool.on('workerDestroy', () => { ready-- })

  function dispatch (): void {
    while (running < ready && waiting.length > 0) {
      running++
      waiting.shift()?.go()
    }
  }

  /** Resolves when the caller may run a task on a worker; rejects if aborted while waiting. */
  async function acquire (signal: AbortSignal): Promise<void> {
    if (running < ready && waiting.length === 0) {
      running++
      return
    }
    if (waiting.length >= config.maxQueue) {
      app.metrics.shed.inc({ reason: 'queue' })
      throw overloaded(config)
    }
    await new Promise<void>((resolve, reject) => {
      const entry = { go: resolve }
      waiting.push(entry)
      signal.addEventListener('abort', () => {
        const i = waiting.indexOf(entry)
        if (i >= 0) {
          waiting.splice(i, 1)
          reject(signal.reason)
        }
      }, { once: true })
    })
  }

  /** Frees the worker for the next waiting task. */
  function release (): void {
    running--
    dispatch()
  }

  /** Tiny work on the main thread: cheaper than a worker's round trip. */
  function runInline (name: OperationName, task: TaskBase): unknown {
    const started = process.hrtime.bigint()
    const result = runOperation(OPERATIONS[name], task, (task as { reply?: ReplySpec }).reply)
    app.metrics.computeDuration.observe({ op: name }, Number(process.hrtime.bigint() - started) / 1e9)
    return result
  }

  async function compute (name: OperationName, task: TaskBase, transferList: ArrayBuffer[], reply: FastifyReply): Promise<unknown> {
    const flops = task.info.flops
    if (flops <= config.inlineMaxFlops) return runInline(name, task)
    // the worker's one entry runs it through the same table (src/worker/index.ts)
    ;(task as TaskBase & { operation?: OperationName }).operation = name
    return await onPool(name, reply, (idle) => {
      if (name === 'matmul' && config.splitMinFlops > 0 && flops >= config.splitMinFlops && waiting.length === 0 && idle > 0) {
        // both (all) cores on one request, only with workers idle and nobody waiting: the idle
        // workers' slots are held while one worker computes on as many engine threads
        ;(task as { threads?: number }).threads = idle + 1
        return { job: { name: 'run', task, transferList }, slots: idle + 1 }
      }
      return { job: { name: 'run', task, transferList }, slots: 1 }
    })
  }

  async function computeRequest (task: RequestTask, reply: FastifyReply): Promise<RequestOutcome> {
    const transferList = task.into === undefined ? [task.body.buffer as ArrayBuffer] : [task.body.buffer as ArrayBuffer, task.into]
    return await onPool(task.op, reply, (idle) => {
      // a matmul big enough for the whole pool comes back prepared only if there are idle workers
      const splitMinFlops = idle > 0 && waiting.length === 0 ? task.splitMinFlops : 0
      return { job: { name: 'request', task: { ...task, splitMinFlops }, transferList }, slots: 1 }
    }) as RequestOutcome
  }

  /**
   * Runs the planned job on the pool once admitted: the plan is made after admission, knowing
   * how many other workers are idle, and holds `slots` workers' places (the job's own and those
   * whose cores its threads use).
   */
  async function onPool (op: OperationName, reply: FastifyReply, plan: (idle: number) => { job: Job, slots: number }): Promise<unknown> {
    // the client went away before its answer: stop its waiting or running task
    const gone = new AbortController()
    const onClose = (): void => {
      if (!reply.raw.writableFinished) gone.abort()
    }
    reply.raw.once('close', onClose)
    try {
      await acquire(gone.signal)
    } catch (err) {
      reply.raw.off('close', onClose)
      if (gone.signal.aborted) throw cancelled()
      throw err
    }
    const { job, slots } = plan(ready - running)
    running += slots - 1
    // stopping a task: first its gate is closed (gate.ts; waiting while the worker is inside the
    // native engine), so that its next engine call throws and the task ends on its own, keeping its
    // worker; a task still running STOP_GRACE_MS later (a long loop outside the engine) has its
    // worker terminated, which piscina replaces
    const gate = newGate()
    onWorkers.add(gate)
    const controller = new AbortController()
    let grace: NodeJS.Timeout | undefined
    let settled = false
    const terminate = (): void => { if (!settled) grace = setTimeout(() => controller.abort(), STOP_GRACE_MS) }
    const abort = (): void => { closeGate(gate).then(terminate, terminate) }
    gone.signal.addEventListener('abort', abort, { once: true })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      abort()
    }, config.taskTimeoutMs)
    const started = process.hrtime.bigint()
    try {
      ;(job.task as { gate?: Gate }).gate = gate // (the task objects are the request's own)
      const result = await pool.run(job.task, { name: job.name, transferList: job.transferList, signal: controller.signal })
      // a deadline or a disconnect that came during an engine run waits for the run's end (gate.ts),
      // and the result may come back first: the task was stopped all the same
      if (timedOut || gone.signal.aborted) throw new Error('stopped')
      app.metrics.computeDuration.observe({ op }, Number(process.hrtime.bigint() - started) / 1e9)
      return result
    } catch (err) {
      if (timedOut) {
        app.metrics.timedOut.inc({ op })
        throw timeout(config)
      }
      if (gone.signal.aborted) throw cancelled()
      if (!controller.signal.aborted) app.metrics.failed.inc({ op })
      throw err
    } finally {
      settled = true
      clearTimeout(timer)
      clearTimeout(grace)
      gone.signal.removeEventListener('abort', abort)
      reply.raw.off('close', onClose)
      onWorkers.delete(gate)
      for (let i = 0; i < slots; i++) release()
    }
  }

  // the app is ready once every worker has loaded its module: a first task's deadline then
  // measures its computation, not the worker's start-up
  app.addHook('onReady', async () => {
    await Promise.all(Array.from({ length: config.workers }, async () => await pool.run(null, { name: 'ping' })))
  })

  app.decorate('pool', pool)
  app.decorate('poolFull', () => running >= ready && waiting.length >= config.maxQueue)
  app.decorate('compute', compute)
  app.decorate('computeRequest', computeRequest)
  app.addHook('onClose', async () => {
    // onClose runs once the requests in flight have been answered: nothing of value is left running,
    // but a cancelled task may still be inside an engine run, and closing terminates its worker
    await Promise.all(Array.from(onWorkers, closeGate))
    await pool.close({ force: true })
  })
}

export default fp(poolPlugin, { name: 'kernel-pool', dependencies: ['metrics'] })
