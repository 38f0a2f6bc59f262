/**
 * Prometheus metrics (prom-client, one registry per app): request durations by route and
 * status, the pool's queue depth and busy workers, compute time per operation, counters of
 * shed, timed-out and failed tasks, and the default process metrics. Served at GET /metrics.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { collectDefaultMetrics, Counter, Gauge, type Metric, Registry } from 'prom-client'
import { buffers } from '../tensor/buffers.js'

interface Series { labels: Record<string, string>, buckets: Float64Array, sum: number, count: number }
interface ExportedValue { labels: Record<string, string | number>, sharedLabels: Record<string, string>, value: number, metricName: string }

/**
 * A histogram for the per-request path, exposed in the same text as prom-client's Histogram.
 * prom-client's observe() copies, validates and hashes its labels object on every call (2.5% of
 * the main thread's time on a small request, two observations each); here a label set is looked
 * up by its values joined, and its series keeps its bucket counts in a typed array.
 */
export class FastHistogram<L extends string> {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  private series = new Map<string, Series>()

  constructor (readonly name: string, readonly help: string, readonly labelNames: readonly L[], readonly upperBounds: readonly number[], registry: Registry) {
    registry.registerMetric(this as unknown as Metric)
  }

  /** Counts one value for a label set given in labelNames' order. */
  observeValues (values: readonly string[], value: number): void {
    const key = values.length === 1 ? values[0] : values.join('\u0000')
    let s = this.series.get(key)
    if (s === undefined) {
      const labels: Record<string, string> = {}
      this.labelNames.forEach((n, i) => { labels[n] = values[i] })
      s = { labels, buckets: new Float64Array(this.upperBounds.length), sum: 0, count: 0 }
      this.series.set(key, s)
    }
    const bounds = this.upperBounds
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]) {
        s.buckets[i]++
        break
      }
    }
    s.sum += value
    s.count++
  }

  /** prom-client's signature: the label set as an object. */
  observe (labels: Record<L, string>, value: number): void {
    this.observeValues(this.labelNames.map(n => labels[n]), value)
  }

  reset (): void {
    this.series.clear()
  }

  /** The values as prom-client's Histogram gives them to the registry's text exposition. */
  getForPromString (): { name: string, help: string, type: string, aggregator: string, values: ExportedValue[] } {
    const values: ExportedValue[] = []
    for (const s of this.series.values()) {
      let acc = 0
      this.upperBounds.forEach((le, i) => {
        acc += s.buckets[i]
        values.push({ labels: { le }, sharedLabels: s.labels, value: acc, metricName: `${this.name}_bucket` })
      })
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_bucket` })
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum` })
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  /** The values as prom-client's Histogram gives them as JSON (each value with all its labels). */
  get (): { name: string, help: string, type: string, aggregator: string, values: Array<{ labels: Record<string, string | number>, value: number, metricName: string }> } {
    const data = this.getForPromString()
    return { ...data, values: data.values.map(({ labels, sharedLabels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } })) }
  }
}

export interface Metrics {
  registry: Registry
  requestDuration: FastHistogram<'method' | 'route' | 'status_code'>
  computeDuration: FastHistogram<'op'>
  shed: Counter<'reason'>
  timedOut: Counter<'op'>
  failed: Counter<'op'>
  workersStarted: Counter
  /** Set by the pool: how it reports its queue depth and busy workers at scrape time. */
  poolState: () => { queued: number, busy: number, workers: number }
  /** Set by the pool: seconds each worker thread has spent on tasks, by its thread id. */
  workerBusy: () => Map<number, number>
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

async function metricsPlugin (app: FastifyInstance): Promise<void> {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const metrics: Metrics = {
    registry,
    requestDuration: new FastHistogram('http_request_duration_seconds', 'HTTP request duration by route and status',
      ['method', 'route', 'status_code'], [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registry),
    computeDuration: new FastHistogram('tensor_compute_duration_seconds', 'Time a computation spent in the pool (queue wait included), by operation',
      ['op'], [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registry),
    shed: new Counter({
      name: 'tensor_requests_shed_total',
      help: 'Requests refused with 503: the work queue was full (queue) or the process under pressure (event_loop_delay, rss)',
      labelNames: ['reason'],
      registers: [registry]
    }),
    timedOut: new Counter({
      name: 'tensor_tasks_timed_out_total',
      help: 'Computations stopped at TASK_TIMEOUT_MS, by operation',
      labelNames: ['op'],
      registers: [registry]
    }),
    failed: new Counter({
      name: 'tensor_tasks_failed_total',
      help: 'Computations that failed in their worker (a throw, a crash, out of memory), by operation',
      labelNames: ['op'],
      registers: [registry]
    }),
    workersStarted: new Counter({
      name: 'tensor_workers_started_total',
      help: 'Worker threads started: the pool\'s own, then each replacement of one that crashed or was terminated (a task stopped outside the engine)',
      registers: [registry]
    }),
    poolState: () => ({ queued: 0, busy: 0, workers: 0 }),
    workerBusy: () => new Map()
  }
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'tensor_pool_queue_depth',
    help: 'Tasks waiting for a worker',
    registers: [registry],
    collect () { this.set(metrics.poolState().queued) }
  })
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'tensor_pool_busy_workers',
    help: 'Workers computing a task',
    registers: [registry],
    collect () { this.set(metrics.poolState().busy) }
  })
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'tensor_pool_workers',
    help: 'Worker threads in the pool',
    registers: [registry],
    collect () { this.set(metrics.poolState().workers) }
  })
  // eslint-disable-next-line no-new
  new Counter({
    name: 'tensor_worker_busy_seconds_total',
    help: 'Time each worker thread has spent running tasks (its utilisation is the rate of this)',
    labelNames: ['worker'],
    registers: [registry],
    collect () {
      this.reset()
      for (const [worker, seconds] of metrics.workerBusy()) this.inc({ worker: String(worker) }, seconds)
    }
  })
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'tensor_buffer_pool_bytes',
    help: 'Bytes of recycled buffers the main thread keeps for the next requests (BUFFER_POOL_BYTES caps it)',
    registers: [registry],
    collect () { this.set(buffers.stats().freeBytes) }
  })
  app.decorate('metrics', metrics)

  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched'
    metrics.requestDuration.observeValues([request.method, route, String(reply.statusCode)], reply.elapsedTime / 1000)
    done()
  })

  app.get('/metrics', {
    schema: { tags: ['service'], summary: 'Prometheus metrics (text exposition format)', hide: true },
    // METRICS_REQUIRE_KEY: an API key as for the operations
    ...(app.config.metricsRequireKey ? { onRequest: app.requireApiKey } : {})
  }, async (request, reply) => {
    reply.type(registry.contentType)
    return await registry.metrics()
  })
}

export default fp(metricsPlugin, { name: 'metrics', dependencies: ['auth'] })
