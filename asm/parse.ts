// AssemblyScript: finds the rows of numbers in a JSON text and parses them, so that JSON.parse is
// left only the structure. A row is an array of at least MIN_ROW JSON numbers and nothing else
// (`[1, -2.5e3, 0.1, ...]`); text inside strings is skipped, escapes included, exactly as JSON's
// lexer reads it. Each number becomes the float64 JSON.parse gives (correctly rounded), through
// the Eisel-Lemire algorithm (Daniel Lemire, "Number Parsing at a Gigabyte per Second", 2021; its
// 128-bit product always suffices: Mushtak and Lemire, "Fast Number Parsing Without Fallback",
// 2023). A row holding anything else, a number of more than 19 significant digits, or a number
// that is not valid JSON is left in the text for JSON.parse.

import { POW5_128 } from './number-tables'
import { mulHigh, umul128 } from './wide'

/** Rows shorter than this are left to JSON.parse (and no array of the schemas' own, at most 8 long, is a row). */
const MIN_ROW: i32 = 16

/** w · 10^q as the nearest float64 (w < 10^19, w != 0); NaN when the product cannot decide it. */
function eiselLemire (w: u64, q: i32): f64 {
  if (q < -342) return 0
  if (q > 308) return Infinity
  const lz = <i32>clz(w)
  w <<= <u64>lz
  const at = POW5_128 + (<usize>(q + 342) << 4)
  const tLo = load<u64>(at)
  const tHi = load<u64>(at, 8)
  let lo = umul128(w, tHi)
  let hi = mulHigh
  if ((hi & 0x1ff) === 0x1ff) {
    // the low half of the table can still carry into the bits kept
    umul128(w, tLo)
    const secondHi = mulHigh
    lo += secondHi
    if (secondHi > lo) hi++
  }
  if (lo === 0xffffffffffffffff && (q < -27 || q > 55)) return NaN // eslint-disable-line @typescript-eslint/no-loss-of-precision -- a u64 literal (AssemblyScript)
  const upperbit = <i32>(hi >> 63)
  let mantissa = hi >> <u64>(upperbit + 9)
  let power2 = (((152170 + 65536) * q) >> 16) + 63 + upperbit - lz + 1023
  if (power2 <= 0) {
    // subnormal
    if (-power2 + 1 >= 64) return 0
    mantissa >>= <u64>(-power2 + 1)
    mantissa += mantissa & 1
    mantissa >>= 1
    power2 = mantissa < (<u64>1 << 52) ? 0 : 1
    return reinterpret<f64>((<u64>power2 << 52) | (mantissa & ((<u64>1 << 52) - 1)))
  }
  // exactly halfway between two floats: round to even
  if (lo <= 1 && q >= -4 && q <= 23 && (mantissa & 3) === 1 && (mantissa << <u64>(upperbit + 9)) === hi) {
    mantissa &= ~(<u64>1)
  }
  mantissa += mantissa & 1
  mantissa >>= 1
  if (mantissa >= (<u64>2 << 52)) {
    mantissa = <u64>1 << 52
    power2++
  }
  if (power2 >= 0x7ff) return Infinity
  return reinterpret<f64>((<u64>power2 << 52) | (mantissa & ((<u64>1 << 52) - 1)))
}

function isDigit (c: u32): bool { return c - 0x30 < 10 }
function isSpace (c: u32): bool { return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 }

/** Whether the 8 bytes of v (little-endian) are all ASCII digits. */
function eightDigits (v: u64): bool {
  return (((v + 0x4646464646464646) | (v - 0x3030303030303030)) & 0x8080808080808080) === 0 // eslint-disable-line @typescript-eslint/no-loss-of-precision -- u64 literals (AssemblyScript)
}

/** The value of 8 ASCII digits read as a little-endian u64, by multiplication (Lemire's SWAR). */
function parseEight (v: u64): u64 {
  v -= 0x3030303030303030 // eslint-disable-line @typescript-eslint/no-loss-of-precision -- a u64 literal (AssemblyScript)
  v = v * 10 + (v >> 8)
  return (((v & 0x000000ff000000ff) * 0x000f424000000064) + (((v >> 16) & 0x000000ff000000ff) * 0x0000271000000001)) >> 32
}

/** Where the last parseNumber stopped (the byte after the number), or -1 when it failed. */
let numberEnd: i32 = 0

/** Parses the JSON number at text[i] (i < len); sets numberEnd (-1 if it is not one we take). */
function parseNumber (text: usize, i: i32, len: i32): f64 {
  let negative = false
  if (load<u8>(text + <usize>i) === 0x2d) {
    negative = true
    i++
  }
  if (i >= len) { numberEnd = -1; return 0 }
  let c = <u32>load<u8>(text + <usize>i)
  if (!isDigit(c)) { numberEnd = -1; return 0 }
  let w: u64 = 0
  let digits = 0 // significant digits taken into w
  let exp10: i32 = 0
  if (c === 0x30) {
    i++ // a leading 0 stands alone: "01" is not JSON (the next check refuses it)
    if (i < len && isDigit(<u32>load<u8>(text + <usize>i))) { numberEnd = -1; return 0 }
  } else {
    while (i + 8 <= len && digits + 8 <= 19) {
      const v = load<u64>(text + <usize>i)
      if (!eightDigits(v)) break
      w = w * 100000000 + parseEight(v)
      digits += 8
      i += 8
    }
    while (i < len) {
      c = <u32>load<u8>(text + <usize>i)
      if (!isDigit(c)) break
      if (digits < 19) {
        w = w * 10 + <u64>(c - 0x30)
        digits++
      } else {
        numberEnd = -1 // more than 19 significant digits: left to JSON.parse
        return 0
      }
      i++
    }
  }
  if (i < len && load<u8>(text + <usize>i) === 0x2e) {
    i++
    if (i >= len || !isDigit(<u32>load<u8>(text + <usize>i))) { numberEnd = -1; return 0 }
    if (w === 0) {
      // leading zeros of the fraction are not significant
      while (i < len && load<u8>(text + <usize>i) === 0x30) {
        exp10--
        i++
      }
    }
    while (i + 8 <= len && digits + 8 <= 19) {
      const v = load<u64>(text + <usize>i)
      if (!eightDigits(v)) break
      w = w * 100000000 + parseEight(v)
      digits += 8
      exp10 -= 8
      i += 8
    }
    while (i < len) {
      c = <u32>load<u8>(text + <usize>i)
      if (!isDigit(c)) break
      if (digits < 19) {
        w = w * 10 + <u64>(c - 0x30)
        digits++
        exp10--
      } else {
        numberEnd = -1
        return 0
      }
      i++
    }
  }
  if (i < len) {
    c = <u32>load<u8>(text + <usize>i)
    if (c === 0x65 || c === 0x45) {
      i++
      let expNegative = false
      if (i < len) {
        c = <u32>load<u8>(text + <usize>i)
        if (c === 0x2d || c === 0x2b) {
          expNegative = c === 0x2d
          i++
        }
      }
      if (i >= len || !isDigit(<u32>load<u8>(text + <usize>i))) { numberEnd = -1; return 0 }
      let e: i32 = 0
      while (i < len) {
        c = <u32>load<u8>(text + <usize>i)
        if (!isDigit(c)) break
        if (e < 100000) e = e * 10 + <i32>(c - 0x30)
        i++
      }
      exp10 += expNegative ? -e : e
    }
  }
  numberEnd = i
  const x: f64 = w === 0 ? 0 : eiselLemire(w, exp10)
  if (isNaN(x)) {
    numberEnd = -1
    return 0
  }
  return negative ? -x : x
}

/** The spans the last scanRows decoded, and where the last decodeSpan stopped (after the closing quote). */
let spanCount: i32 = 0
let spanEnd: i32 = 0

export function spansFound (): i32 {
  return spanCount
}

/** Base64 alphabet values by byte (standard alphabet), 255 for every other byte. */
const B64: usize = memory.data<u8>([
  255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
  255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
  255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 62, 255, 255, 255, 63,
  52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 255, 255, 255, 255, 255, 255,
  255, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
  15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 255, 255, 255, 255, 255,
  255, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
  41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 255, 255, 255, 255, 255,
  255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
  255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
  255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
  255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
  255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
  255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
  255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
  255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255
])

function b64 (c: u32): u32 { return <u32>load<u8>(B64 + <usize>c) }

/** Writes entry k of a table of four-i32 entries (a row's or a span's start, end, offset and count). */
function record (table: usize, k: i32, a: i32, b: i32, c: i32, d: i32): void {
  const r = table + (<usize>k << 4)
  store<i32>(r, a)
  store<i32>(r, b, 4)
  store<i32>(r, c, 8)
  store<i32>(r, d, 12)
}

/** Whether the string opening at q is the value of a key "data" (`"data"`, spaces, `:`, spaces before it). */
function isDataValue (text: usize, q: i32): bool {
  let k = q - 1
  while (k >= 0 && isSpace(<u32>load<u8>(text + <usize>k))) k--
  if (k < 0 || load<u8>(text + <usize>k) !== 0x3a) return false
  k--
  while (k >= 0 && isSpace(<u32>load<u8>(text + <usize>k))) k--
  // `"data"`, its opening quote not escaped (a key ending in `\"data` is left to JSON.parse)
  return k >= 6 && load<u8>(text + <usize>k) === 0x22 && load<u32>(text + <usize>(k - 4)) === 0x61746164 &&
    load<u8>(text + <usize>(k - 5)) === 0x22 && load<u8>(text + <usize>(k - 6)) !== 0x5c
}

/**
 * Decodes the string opening at q if it is strict base64 of minSpan to maxSpan characters: the
 * standard alphabet, a length that is a multiple of 4, '=' padding only at the end with the bits
 * past the last byte zero (the standard encoding of its bytes), no escapes or whitespace. Writes
 * its bytes to out and returns their count (spanEnd: the offset after the closing quote); -1 for
 * any other string, which is then left in the text.
 */
function decodeSpan (text: usize, q: i32, len: i32, out: usize, minSpan: i32, maxSpan: i32): i32 {
  const start = q + 1
  let i = start
  let o: usize = out
  // whole quanta of four alphabet characters
  while (i + 4 <= len) {
    const p = text + <usize>i
    const a = b64(<u32>load<u8>(p))
    const b = b64(<u32>load<u8>(p, 1))
    const c = b64(<u32>load<u8>(p, 2))
    const d = b64(<u32>load<u8>(p, 3))
    if ((a | b | c | d) > 63) break
    const v = (a << 18) | (b << 12) | (c << 6) | d
    store<u8>(o, <u8>(v >> 16))
    store<u8>(o, <u8>(v >> 8), 1)
    store<u8>(o, <u8>v, 2)
    o += 3
    i += 4
  }
  // a last padded quantum: xx== or xxx=, the bits past its bytes zero
  if (i + 4 <= len && load<u8>(text + <usize>(i + 3)) === 0x3d) {
    const p = text + <usize>i
    const a = b64(<u32>load<u8>(p))
    const b = b64(<u32>load<u8>(p, 1))
    const c2 = <u32>load<u8>(p, 2)
    if ((a | b) > 63) return -1
    if (c2 === 0x3d) {
      if ((b & 15) !== 0) return -1
      store<u8>(o, <u8>((a << 2) | (b >> 4)))
      o += 1
    } else {
      const c = b64(c2)
      if (c > 63 || (c & 3) !== 0) return -1
      const v = (a << 18) | (b << 12) | (c << 6)
      store<u8>(o, <u8>(v >> 16))
      store<u8>(o, <u8>(v >> 8), 1)
      o += 2
    }
    i += 4
  }
  if (i >= len || load<u8>(text + <usize>i) !== 0x22) return -1
  const chars = i - start
  if (chars < minSpan || chars > maxSpan) return -1
  spanEnd = i + 1
  return <i32>(o - out)
}

/**
 * Scans the JSON text at `text` (len bytes) for rows of numbers. Their values go to `values`
 * (at most maxValues float64); each row found writes four i32 to `rows` (at most maxRows): the
 * offset of its '[', the offset after its ']', the index of its first value and its count.
 * Returns the number of rows. Stops early (leaving the rest to JSON.parse) when a table is full.
 *
 * With maxSpans > 0 it also decodes the strings that are the value of a "data" key and strict
 * base64 (decodeSpan) to `spans`, back to back (at most len·3/4 bytes in all); each writes four i32
 * to spanTable: the offset of its opening quote, the offset after its closing one, the offset of its
 * bytes in `spans` and their count. spansFound() tells how many.
 */
export function scanRows (text: usize, len: i32, values: usize, maxValues: i32, rows: usize, maxRows: i32,
  spans: usize, spanTable: usize, maxSpans: i32, minSpan: i32, maxSpan: i32): i32 {
  let found = 0
  let count = 0 // values written
  let i = 0
  spanCount = 0
  let spanBytes: i32 = 0 // bytes decoded
  while (i < len) {
    const c = <u32>load<u8>(text + <usize>i)
    if (c === 0x22) {
      if (spanCount < maxSpans && isDataValue(text, i)) {
        const n = decodeSpan(text, i, len, spans + <usize>spanBytes, minSpan, maxSpan)
        if (n >= 0) {
          record(spanTable, spanCount, i, spanEnd, spanBytes, n)
          spanCount++
          spanBytes += n
          i = spanEnd
          continue
        }
      }
      // a string: to its closing quote, past escapes
      i++
      while (i < len) {
        const d = <u32>load<u8>(text + <usize>i)
        if (d === 0x5c) i += 2
        else if (d === 0x22) break
        else i++
      }
      i++
      continue
    }
    if (c !== 0x5b) {
      i++
      continue
    }
    // '[': a row if numbers and commas up to its ']'
    const start = i
    let j = i + 1
    let n = 0
    let ok = false
    while (j < len && isSpace(<u32>load<u8>(text + <usize>j))) j++
    while (j < len) {
      const d = <u32>load<u8>(text + <usize>j)
      if (d !== 0x2d && !isDigit(d)) break
      if (count + n >= maxValues) break
      const x = parseNumber(text, j, len)
      if (numberEnd < 0) break
      store<f64>(values + (<usize>(count + n) << 3), x)
      n++
      j = numberEnd
      while (j < len && isSpace(<u32>load<u8>(text + <usize>j))) j++
      if (j >= len) break
      const e = <u32>load<u8>(text + <usize>j)
      if (e === 0x5d) {
        ok = true
        j++
        break
      }
      if (e !== 0x2c) break
      j++
      while (j < len && isSpace(<u32>load<u8>(text + <usize>j))) j++
    }
    if (ok && n >= MIN_ROW) {
      if (found >= maxRows) return found
      record(rows, found, start, j, count, n)
      found++
      count += n
      i = j
    } else {
      i = start + 1 // not a row: read on from inside it
    }
  }
  return found
}
