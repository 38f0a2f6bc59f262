/** The worker's entry points, and the table they dispatch through. */
import { expect, it } from 'vitest'
import { FORWARD, OPERATIONS } from '../src/operations/index.js'

it('src/worker/source-entry.mjs exports exactly what src/worker/index.ts exports', async () => {
  const entry = await import(new URL('../src/worker/source-entry.mjs', import.meta.url).href) as Record<string, unknown>
  const index = await import('../src/worker/index.js') as Record<string, unknown>
  const names = (m: Record<string, unknown>): string[] => Object.keys(m).filter(k => typeof m[k] === 'function').sort()
  expect(names(entry)).toEqual(names(index))
  // one entry for every operation (it dispatches through OPERATIONS), one for a raw body, and the start-up ping
  expect(names(index)).toEqual(['ping', 'request', 'run'])
})

it('every operation is in OPERATIONS under its own name, and each route once', () => {
  for (const [key, op] of Object.entries(OPERATIONS)) expect(op.name).toBe(key)
  const routes = Object.values(OPERATIONS).map(op => op.path ?? op.name)
  expect(new Set(routes).size).toBe(routes.length)
  // (every forward operation has its backward; the others, the optimizer's step and graphs, have none)
  expect(routes.filter(r => r.endsWith('/backward'))).toEqual(FORWARD.map(f => `${OPERATIONS[f].path ?? f}/backward`))
  expect(Object.keys(OPERATIONS).filter(n => !n.endsWith('Backward') && !(FORWARD as string[]).includes(n))).toEqual(['optimizerStep', 'graph'])
})
