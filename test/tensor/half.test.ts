/**
 * float16 and bfloat16: every one of the 65,536 bit patterns of each type read, rounded back and
 * printed; the ties between every pair of neighbours; and reference roundings from NumPy
 * (float64 -> float16) and PyTorch (float32 -> bfloat16), test/fixtures/generate_half.py.
 */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { bitsToFloat32, format16, fromBits16, type HalfDType, roundTo16, textOf, toBits16, toBits16Array } from '../../src/tensor/half.js'
import { bfloat, half } from '../helpers/safetensors.js'

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/half.json', import.meta.url), 'utf8')) as {
  f16_round: Array<[string, number]>
  bf16_round: Array<[number, number]>
  f16_repr: Array<[number, string]>
}

const REFERENCE: Record<HalfDType, (h: number) => number> = { float16: half, bfloat16: bfloat }
const INFINITY: Record<HalfDType, number> = { float16: 0x7c00, bfloat16: 0x7f80 }

for (const dtype of ['float16', 'bfloat16'] as const) {
  const value = REFERENCE[dtype]
  const isNaN16 = (h: number): boolean => (h & 0x7fff) > INFINITY[dtype]

  describe(`${dtype}: all 65,536 bit patterns`, () => {
    it('read as the value the format defines; rounded back to the same bits (NaN to a NaN); ±0 and ±Infinity kept', () => {
      const all = new Uint16Array(65536).map((_, h) => h)
      const read = bitsToFloat32(all, dtype)
      for (let h = 0; h < 65536; h++) {
        const v = value(h)
        expect(Object.is(fromBits16(h, dtype), v) || (Number.isNaN(v) && Number.isNaN(fromBits16(h, dtype)))).toBe(true)
        if (isNaN16(h)) {
          expect(read[h]).toBeNaN()
          expect(isNaN16(toBits16(v, dtype))).toBe(true)
          continue
        }
        expect(Object.is(read[h], v), `bits ${h.toString(16)}`).toBe(true)
        if (toBits16(v, dtype) !== h) expect.fail(`${dtype} ${h.toString(16)} (${v}) rounds back to ${toBits16(v, dtype).toString(16)}`)
      }
      expect(toBits16(-0, dtype)).toBe(0x8000)
      expect(toBits16(0, dtype)).toBe(0)
      expect(toBits16(-Infinity, dtype)).toBe(0x8000 | INFINITY[dtype])
      // the array forms agree with the scalar ones
      const finite = Array.from({ length: 65536 }, (_, h) => value(h)).filter(v => !Number.isNaN(v))
      const bits = toBits16Array(finite, dtype)
      finite.forEach((v, i) => expect(Object.is(fromBits16(bits[i], dtype), v)).toBe(true))
    })

    it('a value between two neighbours rounds to the nearer; an exact midpoint to the even one; past the largest, to Infinity', () => {
      for (let h = 0; h < INFINITY[dtype]; h++) {
        const lo = value(h)
        const next = h + 1 === INFINITY[dtype] ? 2 * value(h) - value(h - 1) : value(h + 1) // (a virtual next above the largest)
        const mid = (lo + next) / 2
        const even = h % 2 === 0 ? h : h + 1
        for (const sign of [1, -1]) {
          const s = sign < 0 ? 0x8000 : 0
          if (toBits16(sign * mid, dtype) !== (s | even)) expect.fail(`midpoint above ${h.toString(16)}: ${toBits16(sign * mid, dtype).toString(16)}`)
          if (toBits16(sign * (mid - (next - lo) / 1024), dtype) !== (s | h)) expect.fail(`below the midpoint above ${h.toString(16)}`)
          if (toBits16(sign * (mid + (next - lo) / 1024), dtype) !== (s | (h + 1))) expect.fail(`above the midpoint above ${h.toString(16)}`)
        }
      }
      // below half the smallest subnormal: zero, keeping the sign
      const tiny = value(1) / 2
      expect(toBits16(tiny, dtype)).toBe(0)
      expect(toBits16(-tiny, dtype)).toBe(0x8000)
      expect(toBits16(tiny * 1.0000001, dtype)).toBe(1)
      expect(toBits16(1e-320, dtype)).toBe(0)
      expect(toBits16(1e300, dtype)).toBe(INFINITY[dtype])
    })

    it('printed as the shortest decimal that reads back to the same bits (no decimal with fewer digits does)', () => {
      for (let h = 0; h < 65536; h++) {
        const v = value(h)
        const text = textOf(h, dtype)
        if (Number.isNaN(v)) {
          expect(text).toBe('"NaN"')
          continue
        }
        if (!Number.isFinite(v)) {
          expect(text).toBe(v > 0 ? '"Infinity"' : '"-Infinity"')
          continue
        }
        const x = JSON.parse(text) as number
        if (v === 0) {
          expect(text).toBe('0')
          continue
        }
        if (toBits16(x, dtype) !== h) expect.fail(`${dtype} ${h.toString(16)}: ${text} reads back as ${toBits16(x, dtype).toString(16)}`)
        // the significant digits of the text; every decimal of one digit fewer near v misses h
        const digits = x.toExponential().split('e')[0].replace('-', '').replace('.', '').length
        if (digits > 1) {
          const k = Math.floor(Math.log10(Math.abs(v))) - (digits - 2)
          const m = Math.floor(Math.abs(v) / 10 ** k)
          for (let c = m - 1; c <= m + 2; c++) {
            const candidate = Math.sign(v) * Number(`${c}e${k}`)
            if (toBits16(candidate, dtype) === h) expect.fail(`${dtype} ${h.toString(16)}: ${candidate} is shorter than ${text}`)
          }
        }
        expect(format16(v, dtype)).toBe(text)
      }
    })
  })
}

describe('against NumPy and PyTorch', () => {
  it(`float64 -> float16 as NumPy rounds (${fixtures.f16_round.length} values: midpoints, their neighbours, the range)`, () => {
    for (const [text, bits] of fixtures.f16_round) {
      if (toBits16(Number(text), 'float16') !== bits) expect.fail(`${text}: ${toBits16(Number(text), 'float16')} but NumPy gives ${bits}`)
    }
  })

  it(`float32 -> bfloat16 as PyTorch rounds (${fixtures.bf16_round.length} values), by the scalar and the array paths`, () => {
    const f32 = new Float32Array(new Uint32Array(fixtures.bf16_round.map(r => r[0])).buffer)
    const want = fixtures.bf16_round.map(r => r[1])
    f32.forEach((x, i) => expect(toBits16(x, 'bfloat16')).toBe(want[i]))
    const rounded = roundTo16(f32.slice(), 'bfloat16')
    rounded.forEach((x, i) => expect(x).toBe(bfloat(want[i])))
    // a NaN stays a NaN
    expect(roundTo16(new Float32Array([NaN]), 'bfloat16')[0]).toBeNaN()
  })

  it(`float16 printed as NumPy prints it (${fixtures.f16_repr.length} values)`, () => {
    for (const [bits, text] of fixtures.f16_repr) {
      const ours = textOf(bits, 'float16')
      expect(Number(ours), `${bits}: ${ours} against ${text}`).toBe(Number(text))
    }
  })

  it('float32 arrays round to float16 as the float64 path does', () => {
    const f32 = new Float32Array(new Uint32Array(fixtures.bf16_round.map(r => r[0])).buffer)
    const rounded = roundTo16(f32.slice(), 'float16')
    f32.forEach((x, i) => expect(Object.is(rounded[i], half(toBits16(x, 'float16'))) || Number.isNaN(x)).toBe(true))
  })
})
