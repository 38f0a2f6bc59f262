/**
 * Prometheus metrics (prom-client, one registry per app): request durations by route and
 * status, the pool's queue depth and busy workers, compute time per operation, counters of
 * shed, timed-out and failed tasks, and the default process metrics. Served at GET /metrics.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

export interface Metrics {
  registry: Registry
  requestDuration: Histogram<'method' | 'route' | 'status_code'>
  computeDuration: Histogram<'op'>
  shed: Counter<'reason'>
  timedOut: Counter<'op'>
  failed: Counter<'op'>
  /** Set by the pool: how it reports its queue depth and busy workers at scrape time. */
  poolState: () => { queued: number, busy: number, workers: number }
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
    requestDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request duration by route and status',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry]
    }),
    computeDuration: new Histogram({
      name: 'tensor_compute_duration_seconds',
      help: 'Time a computation spent in the pool (queue wait included), by operation',
      labelNames: ['op'],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry]
    }),
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
    poolState: () => ({ queued: 0, busy: 0, workers: 0 })
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
  app.decorate('metrics', metrics)

  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched'
    metrics.requestDuration.observe({ method: request.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000)
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
