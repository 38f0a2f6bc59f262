// A worker with faults on purpose, for the worker-fault tests:
// matmul throws, dot ends its thread, conv2d runs out of heap; the other operations are real.
import { tsImport } from 'tsx/esm/api'

const real = await tsImport('../../src/worker/index.ts', import.meta.url)

const FAULTS = {
  matmul () {
    throw new Error('kernel bug: /secret/path/kernel.ts line 42')
  },
  dot () {
    process.exit(3) // in a worker thread this ends the thread, not the process
  },
  conv2d () {
    const hoard = []
    for (;;) hoard.push(new Array(1e6).fill({ leak: hoard.length }))
  }
}

export const ping = real.ping

export function run (task) {
  return (FAULTS[task.operation] ?? real.run)(task)
}
