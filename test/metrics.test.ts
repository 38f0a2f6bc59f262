/**
 * The request path's histograms (src/plugins/metrics.ts) give the same Prometheus text and JSON
 * as prom-client's own Histogram fed the same observations.
 */
import { Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { FastHistogram } from '../src/plugins/metrics.js'

const BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

describe('FastHistogram', () => {
  it('the same exposition as prom-client\'s Histogram, over label sets, bucket edges and values past the last bucket', async () => {
    const theirs = new Registry()
    const ours = new Registry()
    const reference = new Histogram({ name: 'h_seconds', help: 'a "help" \\ text', labelNames: ['method', 'route', 'status_code'], buckets: BUCKETS, registers: [theirs] })
    const fast = new FastHistogram('h_seconds', 'a "help" \\ text', ['method', 'route', 'status_code'], BUCKETS, ours)
    const single = new Histogram({ name: 'op_seconds', help: 'by op', labelNames: ['op'], buckets: BUCKETS, registers: [theirs] })
    const fastSingle = new FastHistogram('op_seconds', 'by op', ['op'], BUCKETS, ours)
    const routes = ['/v1/matmul', '/v1/dot', 'unmatched', '/a "quoted"\\path']
    let seed = 7
    const random = (): number => { seed = (seed * 16807) % 2147483647; return seed / 2147483647 }
    for (let i = 0; i < 2000; i++) {
      const value = i % 50 === 0 ? BUCKETS[i % BUCKETS.length] : i % 97 === 0 ? 100 : random() ** 3 * 2
      const labels = { method: i % 7 === 0 ? 'GET' : 'POST', route: routes[i % routes.length], status_code: String([200, 400, 503][i % 3]) }
      reference.observe(labels, value)
      if (i % 2 === 0) fast.observe(labels, value)
      else fast.observeValues([labels.method, labels.route, labels.status_code], value)
      single.observe({ op: routes[i % 2] }, value)
      fastSingle.observe({ op: routes[i % 2] }, value)
    }
    expect(await ours.metrics()).toBe(await theirs.metrics())
    // (as JSON, prom-client also gives each value its exemplar, which the service never sets)
    const withoutExemplars = (metrics: Array<{ values: object[] }>): unknown =>
      metrics.map(m => ({ ...m, values: m.values.map(v => ({ ...v, exemplar: undefined })) }))
    expect(withoutExemplars(await ours.getMetricsAsJSON())).toEqual(withoutExemplars(await theirs.getMetricsAsJSON()))
    fast.reset()
    reference.reset()
    expect(await ours.metrics()).toBe(await theirs.metrics())
  })
})
