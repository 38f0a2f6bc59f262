/** The source worker entry (used under vitest and tsx) exports every task of the compiled one. */
import { expect, it } from 'vitest'

it('src/worker/source-entry.mjs exports exactly what src/worker/index.ts exports', async () => {
  const entry = await import(new URL('../src/worker/source-entry.mjs', import.meta.url).href) as Record<string, unknown>
  const index = await import('../src/worker/index.js') as Record<string, unknown>
  const names = (m: Record<string, unknown>): string[] => Object.keys(m).filter(k => typeof m[k] === 'function').sort()
  expect(names(entry)).toEqual(names(index))
  expect(names(index)).toContain('attentionBackward')
})
