// AssemblyScript: float64 values written as JSON text, in the shortest form that reads back to the
// same value, exactly as JavaScript's String(x) writes it (ECMAScript Number::toString: the
// fewest digits, and of those the decimal nearest the value), with NaN and ±Infinity as the
// strings "NaN", "Infinity", "-Infinity" and -0 as 0. The digits come from Ryu (Ulf Adams,
// "Ryū: fast float-to-string conversion", PLDI 2018), transcribed from its reference d2s.c.

import { POW5_INV_SPLIT, POW5_SPLIT } from './number-tables'
import { mulHigh, umul128 } from './wide'

const POW5_INV_BITCOUNT: i32 = 125
const POW5_BITCOUNT: i32 = 125

// ceil(log2(5^e)) for e >= 1 (1 for e = 0); floor(log10(2^e)); floor(log10(5^e))
function pow5bits (e: i32): i32 { return <i32>((<u32>e * 1217359) >> 19) + 1 }
function log10Pow2 (e: i32): i32 { return <i32>((<u32>e * 78913) >> 18) }
function log10Pow5 (e: i32): i32 { return <i32>((<u32>e * 732923) >> 20) }

function pow5Factor (value: u64): i32 {
  let count = 0
  for (;;) {
    const q = value / 5
    if (value - 5 * q !== 0) break
    value = q
    count++
  }
  return count
}

function multipleOfPowerOf5 (value: u64, p: i32): bool { return pow5Factor(value) >= p }
function multipleOfPowerOf2 (value: u64, p: i32): bool { return (value & ((<u64>1 << <u64>p) - 1)) === 0 }

/** x / 10, by multiplication (a 64-bit division is many times slower). */
function div10 (x: u64): u64 {
  umul128(x, 0xcccccccccccccccd) // eslint-disable-line @typescript-eslint/no-loss-of-precision -- a u64 literal (AssemblyScript)
  return mulHigh >> 3
}

/** x / 100, by multiplication. */
function div100 (x: u64): u64 {
  umul128(x >> 2, 0x28f5c28f5c28f5c3) // eslint-disable-line @typescript-eslint/no-loss-of-precision -- a u64 literal (AssemblyScript)
  return mulHigh >> 2
}

/** (m · (hi·2^64 + lo)) >> j, for 64 < j < 128. */
function mulShift64 (m: u64, lo: u64, hi: u64, j: i32): u64 {
  const low1 = umul128(m, hi)
  const high1 = mulHigh
  umul128(m, lo)
  const high0 = mulHigh
  const sum = high0 + low1
  const high = sum < high0 ? high1 + 1 : high1
  const dist = <u64>(j - 64)
  return (high << (64 - dist)) | (sum >> dist)
}

/** The decimal exponent of the last d2d. */
let decimalExponent: i32 = 0

/** The shortest, nearest decimal digits of a positive finite float64 (exponent in decimalExponent). */
function d2d (ieeeMantissa: u64, ieeeExponent: i32): u64 {
  let e2: i32
  let m2: u64
  if (ieeeExponent === 0) {
    e2 = 1 - 1023 - 52 - 2
    m2 = ieeeMantissa
  } else {
    e2 = ieeeExponent - 1023 - 52 - 2
    m2 = (<u64>1 << 52) | ieeeMantissa
  }
  const acceptBounds = (m2 & 1) === 0
  const mv = 4 * m2
  const mmShift: u64 = ieeeMantissa !== 0 || ieeeExponent <= 1 ? 1 : 0
  let vr: u64
  let vp: u64
  let vm: u64
  let e10: i32
  let vmIsTrailingZeros = false
  let vrIsTrailingZeros = false
  if (e2 >= 0) {
    const q = log10Pow2(e2) - (e2 > 3 ? 1 : 0)
    e10 = q
    const k = POW5_INV_BITCOUNT + pow5bits(q) - 1
    const i = -e2 + q + k
    const at = POW5_INV_SPLIT + (<usize>q << 4)
    const lo = load<u64>(at)
    const hi = load<u64>(at, 8)
    vr = mulShift64(mv, lo, hi, i)
    vp = mulShift64(mv + 2, lo, hi, i)
    vm = mulShift64(mv - 1 - mmShift, lo, hi, i)
    if (q <= 21) {
      if (mv % 5 === 0) {
        vrIsTrailingZeros = multipleOfPowerOf5(mv, q)
      } else if (acceptBounds) {
        vmIsTrailingZeros = multipleOfPowerOf5(mv - 1 - mmShift, q)
      } else if (multipleOfPowerOf5(mv + 2, q)) {
        vp--
      }
    }
  } else {
    const q = log10Pow5(-e2) - (-e2 > 1 ? 1 : 0)
    e10 = q + e2
    const i = -e2 - q
    const k = pow5bits(i) - POW5_BITCOUNT
    const j = q - k
    const at = POW5_SPLIT + (<usize>i << 4)
    const lo = load<u64>(at)
    const hi = load<u64>(at, 8)
    vr = mulShift64(mv, lo, hi, j)
    vp = mulShift64(mv + 2, lo, hi, j)
    vm = mulShift64(mv - 1 - mmShift, lo, hi, j)
    if (q <= 1) {
      vrIsTrailingZeros = true
      if (acceptBounds) vmIsTrailingZeros = mmShift === 1
      else vp--
    } else if (q < 63) {
      vrIsTrailingZeros = multipleOfPowerOf2(mv, q)
    }
  }

  let removed: i32 = 0
  let lastRemovedDigit: u64 = 0
  let output: u64
  if (vmIsTrailingZeros || vrIsTrailingZeros) {
    // the general case (rare)
    for (;;) {
      const vpDiv10 = div10(vp)
      const vmDiv10 = div10(vm)
      if (vpDiv10 <= vmDiv10) break
      const vmMod10 = vm - 10 * vmDiv10
      const vrDiv10 = div10(vr)
      const vrMod10 = vr - 10 * vrDiv10
      vmIsTrailingZeros = vmIsTrailingZeros && vmMod10 === 0
      vrIsTrailingZeros = vrIsTrailingZeros && lastRemovedDigit === 0
      lastRemovedDigit = vrMod10
      vr = vrDiv10
      vp = vpDiv10
      vm = vmDiv10
      removed++
    }
    if (vmIsTrailingZeros) {
      for (;;) {
        const vmDiv10 = div10(vm)
        if (vm - 10 * vmDiv10 !== 0) break
        const vpDiv10 = div10(vp)
        const vrDiv10 = div10(vr)
        const vrMod10 = vr - 10 * vrDiv10
        vrIsTrailingZeros = vrIsTrailingZeros && lastRemovedDigit === 0
        lastRemovedDigit = vrMod10
        vr = vrDiv10
        vp = vpDiv10
        vm = vmDiv10
        removed++
      }
    }
    // round to even when the exact value ends in ...50..0
    if (vrIsTrailingZeros && lastRemovedDigit === 5 && vr % 2 === 0) lastRemovedDigit = 4
    output = vr + ((vr === vm && (!acceptBounds || !vmIsTrailingZeros)) || lastRemovedDigit >= 5 ? 1 : 0)
  } else {
    // the common case
    let roundUp = false
    const vpDiv100 = div100(vp)
    const vmDiv100 = div100(vm)
    if (vpDiv100 > vmDiv100) {
      const vrDiv100 = div100(vr)
      roundUp = vr - 100 * vrDiv100 >= 50
      vr = vrDiv100
      vp = vpDiv100
      vm = vmDiv100
      removed += 2
    }
    for (;;) {
      const vpDiv10 = div10(vp)
      const vmDiv10 = div10(vm)
      if (vpDiv10 <= vmDiv10) break
      const vrDiv10 = div10(vr)
      roundUp = vr - 10 * vrDiv10 >= 5
      vr = vrDiv10
      vp = vpDiv10
      vm = vmDiv10
      removed++
    }
    output = vr + (vr === vm || roundUp ? 1 : 0)
  }
  decimalExponent = e10 + removed
  return output
}

function decimalLength (v: u64): i32 {
  // v < 10^17
  if (v >= 10000000000000000) return 17
  if (v >= 1000000000000000) return 16
  if (v >= 100000000000000) return 15
  if (v >= 10000000000000) return 14
  if (v >= 1000000000000) return 13
  if (v >= 100000000000) return 12
  if (v >= 10000000000) return 11
  if (v >= 1000000000) return 10
  if (v >= 100000000) return 9
  if (v >= 10000000) return 8
  if (v >= 1000000) return 7
  if (v >= 100000) return 6
  if (v >= 10000) return 5
  if (v >= 1000) return 4
  if (v >= 100) return 3
  if (v >= 10) return 2
  return 1
}

/** "00", "01", ..., "99". */
const DIGIT_PAIRS: usize = memory.data<u8>([
  48, 48, 48, 49, 48, 50, 48, 51, 48, 52, 48, 53, 48, 54, 48, 55, 48, 56, 48, 57,
  49, 48, 49, 49, 49, 50, 49, 51, 49, 52, 49, 53, 49, 54, 49, 55, 49, 56, 49, 57,
  50, 48, 50, 49, 50, 50, 50, 51, 50, 52, 50, 53, 50, 54, 50, 55, 50, 56, 50, 57,
  51, 48, 51, 49, 51, 50, 51, 51, 51, 52, 51, 53, 51, 54, 51, 55, 51, 56, 51, 57,
  52, 48, 52, 49, 52, 50, 52, 51, 52, 52, 52, 53, 52, 54, 52, 55, 52, 56, 52, 57,
  53, 48, 53, 49, 53, 50, 53, 51, 53, 52, 53, 53, 53, 54, 53, 55, 53, 56, 53, 57,
  54, 48, 54, 49, 54, 50, 54, 51, 54, 52, 54, 53, 54, 54, 54, 55, 54, 56, 54, 57,
  55, 48, 55, 49, 55, 50, 55, 51, 55, 52, 55, 53, 55, 54, 55, 55, 55, 56, 55, 57,
  56, 48, 56, 49, 56, 50, 56, 51, 56, 52, 56, 53, 56, 54, 56, 55, 56, 56, 56, 57,
  57, 48, 57, 49, 57, 50, 57, 51, 57, 52, 57, 53, 57, 54, 57, 55, 57, 56, 57, 57
])

/** Writes the bytes of an ASCII string; returns the address after them. */
function writeAscii (p: usize, s: string): usize {
  for (let i = 0; i < s.length; i++) store<u8>(p + <usize>i, <u8>s.charCodeAt(i))
  return p + <usize>s.length
}

/** Writes `count` zeros. */
function writeZeros (p: usize, count: i32): usize {
  for (let i = 0; i < count; i++) store<u8>(p + <usize>i, 0x30)
  return p + <usize>count
}

/** Writes the decimal digits of v (v < 10^17, exactly `length` of them) ending just before `end`. */
function writeDigits (end: usize, v: u64, length: i32): void {
  let p = end
  let n = length
  if (v >= 100000000) {
    // the low 8 digits, then the rest (< 10^9) in 32-bit arithmetic
    const q = v / 100000000
    let lo = <u32>(v - q * 100000000)
    v = q
    for (let i = 0; i < 4; i++) {
      const d = lo % 100
      lo /= 100
      p -= 2
      store<u16>(p, load<u16>(DIGIT_PAIRS + (<usize>d << 1)))
    }
    n -= 8
  }
  let w = <u32>v
  while (n >= 2) {
    const d = w % 100
    w /= 100
    p -= 2
    store<u16>(p, load<u16>(DIGIT_PAIRS + (<usize>d << 1)))
    n -= 2
  }
  if (n === 1) store<u8>(p - 1, <u8>(0x30 + w))
}

/** Writes x as JSON text at p; returns the address after it (at most 25 bytes: "-0.0000012345678901234567"). */
function writeF64 (p: usize, x: f64): usize {
  if (isNaN(x)) return writeAscii(p, '"NaN"')
  if (x === Infinity) return writeAscii(p, '"Infinity"')
  if (x === -Infinity) return writeAscii(p, '"-Infinity"')
  if (x === 0) {
    store<u8>(p, 0x30)
    return p + 1
  }
  const bits = reinterpret<u64>(x)
  if (bits >> 63 !== 0) {
    store<u8>(p, 0x2d) // '-'
    p++
  }
  const digits = d2d(bits & ((<u64>1 << 52) - 1), <i32>((bits >> 52) & 0x7ff))
  const k = decimalLength(digits)
  const n = decimalExponent + k // x = 0.d1d2...dk · 10^n
  if (k <= n && n <= 21) {
    // an integer: the digits, then zeros
    writeDigits(p + <usize>k, digits, k)
    return writeZeros(p + <usize>k, n - k)
  }
  if (n > 0 && n <= 21) {
    // d1..dn . dn+1..dk
    writeDigits(p + <usize>(k + 1), digits, k)
    for (let i = 0; i < n; i++) store<u8>(p + <usize>i, load<u8>(p + <usize>(i + 1)))
    store<u8>(p + <usize>n, 0x2e)
    return p + <usize>(k + 1)
  }
  if (n > -6 && n <= 0) {
    // 0.000ddd
    p = writeAscii(p, '0.')
    p = writeZeros(p, -n)
    writeDigits(p + <usize>k, digits, k)
    return p + <usize>k
  }
  // d1.d2..dk e±(n-1)
  if (k === 1) {
    writeDigits(p + 1, digits, 1)
    p += 1
  } else {
    writeDigits(p + <usize>(k + 1), digits, k)
    store<u8>(p, load<u8>(p + 1))
    store<u8>(p + 1, 0x2e)
    p += <usize>(k + 1)
  }
  let e = n - 1
  store<u8>(p, 0x65) // 'e'
  store<u8>(p + 1, e < 0 ? 0x2d : 0x2b)
  p += 2
  if (e < 0) e = -e
  const el = decimalLength(<u64>e)
  writeDigits(p + <usize>el, <u64>e, el)
  return p + <usize>el
}

/**
 * Writes `rows` rows of `inner` float64 values from src as JSON text at dst: each row's values
 * separated by commas, rows back to back; the end offset (from dst) of row r goes to ends[r].
 * Returns the bytes written (at most 26 a value, its comma included).
 */
export function formatRowsF64 (src: usize, rows: i32, inner: i32, dst: usize, ends: usize): i32 {
  let p = dst
  let s = src
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < inner; j++) {
      if (j > 0) {
        store<u8>(p, 0x2c)
        p++
      }
      p = writeF64(p, load<f64>(s))
      s += 8
    }
    store<i32>(ends + (<usize>r << 2), <i32>(p - dst))
  }
  return <i32>(p - dst)
}
