// With the pool's inlining off (inlineMaxFlops: 0): a worker whose operations (all but dot) first keep its thread busy for SLOW_WORKER_MS
// (default 1000), then compute the real result: long tasks of a known length for the
// load-shedding, deadline and drain tests, whatever the speed of the real kernels.
// dot stays fast, as the short task that follows a long one.
import { tsImport } from 'tsx/esm/api'

const real = await tsImport('../../src/worker/index.ts', import.meta.url)
const ms = Number(process.env.SLOW_WORKER_MS ?? 1000)

function slow (fn) {
  return (task) => {
    const end = Date.now() + ms
    while (Date.now() < end) { /* busy, as a long kernel is */ }
    return fn(task)
  }
}

export const ping = real.ping
export const matmul = slow(real.matmul)
export const dot = real.dot
export const linear = slow(real.linear)
export const conv2d = slow(real.conv2d)
export const attention = slow(real.attention)
