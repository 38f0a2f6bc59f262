import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { erf, erfc } from '../../src/kernels/erf.js'

const { rows } = JSON.parse(readFileSync(new URL('../fixtures/erf.json', import.meta.url), 'utf8')) as { rows: Array<[number, number, number]> }

function relErr (got: number, want: number): number {
  if (want === 0) return Math.abs(got)
  return Math.abs(got - want) / Math.abs(want)
}

describe('erf / erfc against C libm', () => {
  it(`erf is within 2e-15 relative on ${rows.length} points in [-30, 30]`, () => {
    let worst = 0
    for (const [x, e] of rows) worst = Math.max(worst, relErr(erf(x), e))
    expect(worst).toBeLessThan(2e-15)
  })

  it('erfc is within 5e-15 relative, including its far tail', () => {
    let worst = 0
    for (const [x, , c] of rows) worst = Math.max(worst, relErr(erfc(x), c))
    expect(worst).toBeLessThan(5e-15)
  })

  it('handles the special values', () => {
    expect(erf(0)).toBe(0)
    expect(erf(Infinity)).toBe(1)
    expect(erf(-Infinity)).toBe(-1)
    expect(erfc(Infinity)).toBe(0)
    expect(erfc(-Infinity)).toBe(2)
    expect(erf(NaN)).toBeNaN()
    expect(erfc(NaN)).toBeNaN()
  })
})
