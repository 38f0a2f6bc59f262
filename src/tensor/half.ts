/**
 * The 16-bit floating-point types: IEEE-754 binary16 (`float16`) and bfloat16 (the top half of a
 * float32). Their values are held in Float32Array (every 16-bit value is exactly a float32) and
 * computed in float32; they are rounded to 16 bits when decoded and once more at the end, on the
 * result. Rounding is to nearest, ties to even, straight from the float64 (never through float32,
 * which would round twice). Printing gives the shortest decimal that reads back to the same
 * 16-bit value, as NumPy prints float16.
 */

export type HalfDType = 'float16' | 'bfloat16'

interface Format {
  /** Significand bits, the implicit one included. */
  p: number
  /** Smallest normal exponent. */
  emin: number
  emax: number
  bias: number
  nan: number
}

const FORMATS: Record<HalfDType, Format> = {
  float16: { p: 11, emin: -14, emax: 15, bias: 15, nan: 0x7e00 },
  bfloat16: { p: 8, emin: -126, emax: 127, bias: 127, nan: 0x7fc0 }
}

const f64 = new Float64Array(1)
const f64Hi = new Uint32Array(f64.buffer, 4, 1)

/** Round to nearest integer, ties to even (v >= 0, small enough that v - floor(v) is exact). */
function roundEven (v: number): number {
  const f = Math.floor(v)
  const d = v - f
  if (d > 0.5) return f + 1
  if (d < 0.5) return f
  return f % 2 === 0 ? f : f + 1
}

/** The 16-bit pattern nearest to x (ties to even); NaN gives the canonical quiet NaN. */
export function toBits16 (x: number, dtype: HalfDType): number {
  const { p, emin, emax, bias, nan } = FORMATS[dtype]
  if (x !== x) return nan // eslint-disable-line no-self-compare
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0
  const a = Math.abs(x)
  const infinity = sign | ((emax + bias + 1) << (p - 1))
  if (a === Infinity) return infinity
  f64[0] = a
  const biased = (f64Hi[0] >>> 20) & 0x7ff
  if (biased === 0) return sign // zero, or a float64 subnormal: far below half the smallest 16-bit subnormal
  let e = Math.max(biased - 1023, emin)
  // the significand in units of the last place at exponent e (exact: a power-of-two scaling)
  let m = roundEven(a * 2 ** (p - 1 - e))
  if (m === 2 ** p) {
    m >>>= 1
    e++
  }
  if (e > emax) return infinity
  if (m < 2 ** (p - 1)) return sign | m // subnormal (or zero)
  return sign | ((e + bias) << (p - 1)) | (m - 2 ** (p - 1))
}

/** The value of a 16-bit pattern. */
export function fromBits16 (h: number, dtype: HalfDType): number {
  if (dtype === 'bfloat16') {
    u32[0] = h << 16
    return f32[0]
  }
  return halfTable()[h]
}

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

let halfValues: Float32Array | undefined

/** Every float16 value, by its bits (256 KB, built on first use). */
function halfTable (): Float32Array {
  if (halfValues !== undefined) return halfValues
  const t = new Float32Array(65536)
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1
    const e = (h >>> 10) & 0x1f
    const m = h & 0x3ff
    t[h] = e === 0x1f
      ? (m === 0 ? sign * Infinity : NaN)
      : sign * (e === 0 ? m * 2 ** -24 : (1024 + m) * 2 ** (e - 25))
  }
  halfValues = t
  return t
}

/** 16-bit patterns (little-endian, as read from the wire) to their values. */
export function bitsToFloat32 (bits: Uint16Array, dtype: HalfDType, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  const n = bits.length
  if (dtype === 'bfloat16') {
    const o = new Uint32Array(out.buffer, out.byteOffset, n)
    for (let i = 0; i < n; i++) o[i] = bits[i] << 16
  } else {
    const t = halfTable()
    for (let i = 0; i < n; i++) out[i] = t[bits[i]]
  }
  return out
}

/** Values to their nearest 16-bit patterns. */
export function toBits16Array (data: ArrayLike<number>, dtype: HalfDType, out: Uint16Array = new Uint16Array(data.length)): Uint16Array {
  const n = data.length
  for (let i = 0; i < n; i++) out[i] = toBits16(data[i], dtype)
  return out
}

/** Rounds values to the 16-bit type, into a Float32Array (in place when data is one). */
export function roundTo16 (data: ArrayLike<number>, dtype: HalfDType, out: Float32Array = new Float32Array(data.length)): Float32Array {
  const n = data.length
  if (dtype === 'bfloat16' && data instanceof Float32Array) {
    // from float32, bfloat16's rounding is a carry into the top half (NaN kept quiet)
    const src = new Uint32Array(data.buffer, data.byteOffset, n)
    const o = new Uint32Array(out.buffer, out.byteOffset, n)
    for (let i = 0; i < n; i++) {
      const b = src[i]
      o[i] = (b & 0x7fffffff) > 0x7f800000 ? 0x7fc00000 : ((b + 0x7fff + ((b >>> 16) & 1)) & 0xffff0000) >>> 0
    }
    return out
  }
  if (dtype === 'bfloat16') {
    for (let i = 0; i < n; i++) out[i] = fromBits16(toBits16(data[i], dtype), dtype)
    return out
  }
  const t = halfTable()
  for (let i = 0; i < n; i++) out[i] = t[toBits16(data[i], dtype)]
  return out
}

const texts: Record<HalfDType, string[]> = { float16: new Array<string>(65536), bfloat16: new Array<string>(65536) }

/** |x| = m·2^e exactly (m, e integers), for a finite non-zero 16-bit value. */
function dyadic (x: number): [bigint, number] {
  let e = 0
  let m = Math.abs(x)
  while (!Number.isInteger(m)) {
    m *= 2
    e--
  }
  return [BigInt(m), e]
}

const pow = (b: bigint, n: number): bigint => b ** BigInt(Math.max(0, n))

/**
 * The shortest decimal that reads back (rounded to the type) to the same 16-bit value, and of
 * those the nearest to it (an exact tie: the even last digit, as NumPy prints). For each number of
 * digits p the two p-digit decimals around the value are the only candidates: the values that
 * read back to it form an interval around it. Exact, in integers.
 */
function shortest (h: number, dtype: HalfDType): string {
  const x = fromBits16(h, dtype)
  if (x !== x) return '"NaN"' // eslint-disable-line no-self-compare
  if (x === Infinity) return '"Infinity"'
  if (x === -Infinity) return '"-Infinity"'
  if (x === 0) return '0'
  const [m, e] = dyadic(x)
  const exp10 = Number(x.toExponential().split('e')[1])
  const sign = x < 0 ? '-' : ''
  for (let p = 1; p <= 9; p++) {
    const k = exp10 - (p - 1)
    // c = floor(|x| / 10^k), and |x| against (c + 1/2)·10^k, all scaled to integers
    const c = (m * pow(2n, e) * pow(10n, -k)) / (pow(2n, -e) * pow(10n, k))
    const twice = 2n * m * pow(2n, e) * pow(10n, -k)
    const half = (2n * c + 1n) * pow(10n, k) * pow(2n, -e)
    const order = twice < half || (twice === half && c % 2n === 0n) ? [c, c + 1n] : [c + 1n, c]
    for (const d of order) {
      const y = Number(`${sign}${d}e${k}`)
      if (toBits16(y, dtype) === h) return String(y)
    }
  }
  return String(x)
}

/** The JSON text of each 16-bit value, by its bits (each worked out on first use). */
export function textOf (h: number, dtype: HalfDType): string {
  const t = texts[dtype]
  return t[h] ?? (t[h] = shortest(h, dtype))
}

/** The JSON text of a value of the 16-bit type (already rounded to it). */
export function format16 (x: number, dtype: HalfDType): string {
  return textOf(toBits16(x, dtype), dtype)
}
