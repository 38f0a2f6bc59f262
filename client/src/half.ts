/**
 * The 16-bit floating-point types as the client holds them: the bits of each value in a
 * Uint16Array, IEEE-754 binary16 (`float16`) or bfloat16 (the top half of a float32).
 */

export type HalfDType = 'float16' | 'bfloat16'

const FORMATS: Record<HalfDType, { p: number, emin: number, emax: number, bias: number, nan: number }> = {
  float16: { p: 11, emin: -14, emax: 15, bias: 15, nan: 0x7e00 },
  bfloat16: { p: 8, emin: -126, emax: 127, bias: 127, nan: 0x7fc0 }
}

const scratch = new DataView(new ArrayBuffer(8))

/** Round to the nearest integer, ties to even (v >= 0). */
function roundEven (v: number): number {
  const f = Math.floor(v)
  const d = v - f
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f
}

/** The 16-bit pattern nearest to x (round to nearest, ties to even); NaN gives the quiet NaN. */
function bitsOf (x: number, dtype: HalfDType): number {
  const { p, emin, emax, bias, nan } = FORMATS[dtype]
  if (Number.isNaN(x)) return nan
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0
  const a = Math.abs(x)
  const infinity = sign | ((emax + bias + 1) << (p - 1))
  if (a === Infinity) return infinity
  scratch.setFloat64(0, a)
  const biased = (scratch.getUint32(0) >>> 20) & 0x7ff
  if (biased === 0) return sign // zero, or a float64 subnormal: far below every 16-bit value
  let e = Math.max(biased - 1023, emin)
  let m = roundEven(a * 2 ** (p - 1 - e)) // the significand in units of the last place at exponent e
  if (m === 2 ** p) {
    m /= 2
    e++
  }
  if (e > emax) return infinity
  if (m < 2 ** (p - 1)) return sign | m // subnormal (or zero)
  return sign | ((e + bias) << (p - 1)) | (m - 2 ** (p - 1))
}

/** The value of a 16-bit pattern. */
function valueOf (h: number, dtype: HalfDType): number {
  if (dtype === 'bfloat16') {
    scratch.setUint32(0, h << 16)
    return scratch.getFloat32(0)
  }
  const sign = (h & 0x8000) !== 0 ? -1 : 1
  const e = (h >>> 10) & 0x1f
  const m = h & 0x3ff
  if (e === 0) return sign * m * 2 ** -24
  if (e === 31) return m === 0 ? sign * Infinity : NaN
  return sign * (1024 + m) * 2 ** (e - 25)
}

/** Numbers as float16 or bfloat16 bits, each rounded to the nearest 16-bit value (ties to even). */
export function toHalf (values: ArrayLike<number>, dtype: HalfDType): Uint16Array {
  const out = new Uint16Array(values.length)
  for (let i = 0; i < values.length; i++) out[i] = bitsOf(values[i], dtype)
  return out
}

/** The values of float16 or bfloat16 bits (each exactly a float32). */
export function fromHalf (bits: ArrayLike<number>, dtype: HalfDType): Float32Array {
  const out = new Float32Array(bits.length)
  for (let i = 0; i < bits.length; i++) out[i] = valueOf(bits[i], dtype)
  return out
}
