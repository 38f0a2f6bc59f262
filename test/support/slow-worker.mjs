// With the pool's inlining off (inlineMaxFlops: 0): a worker whose operations (all but dot) first keep its thread busy for SLOW_WORKER_MS
// (default 1000), then compute the real result: long tasks of a known length for the
// load-shedding, deadline and drain tests, whatever the speed of the real kernels.
// dot stays fast, as the short task that follows a long one. With SLOW_WORKER_GATE=1 the busy
// loop watches the task's stop gate, as a task of many engine calls does (src/worker/gate.ts).
import { tsImport } from 'tsx/esm/api'

const real = await tsImport('../../src/worker/index.ts', import.meta.url)
const ms = Number(process.env.SLOW_WORKER_MS ?? 1000)
const watchGate = process.env.SLOW_WORKER_GATE === '1'

export const ping = real.ping

export function run (task) {
  if (task.operation !== 'dot') {
    const end = Date.now() + ms
    while (Date.now() < end) { // busy, as a long kernel is
      if (watchGate && task.gate !== undefined && Atomics.load(task.gate, 0) === 2) throw new Error('the task is being stopped')
    }
  }
  return real.run(task)
}
