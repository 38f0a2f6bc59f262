// AssemblyScript: 64 x 64 -> 128-bit multiplication (WebAssembly has no such instruction), for
// the number printing (format.ts) and parsing (parse.ts).

/** The high 64 bits of the last umul128. */
export let mulHigh: u64 = 0

/** The low 64 bits of a · b (the high ones in mulHigh). */
export function umul128 (a: u64, b: u64): u64 {
  const aLo = a & 0xffffffff
  const aHi = a >> 32
  const bLo = b & 0xffffffff
  const bHi = b >> 32
  const b00 = aLo * bLo
  const b01 = aLo * bHi
  const b10 = aHi * bLo
  const b11 = aHi * bHi
  const mid1 = b10 + (b00 >> 32)
  const mid2 = b01 + (mid1 & 0xffffffff)
  mulHigh = b11 + (mid1 >> 32) + (mid2 >> 32)
  return (mid2 << 32) | (b00 & 0xffffffff)
}
