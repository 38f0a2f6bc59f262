/**
 * The plain TypeScript conv2d (direct loops, double-precision sums), kept as the reference the
 * fast (WebAssembly, implicit-GEMM) kernel is tested and benchmarked against.
 */
import type { Conv2dInfo } from '../conv2d.js'
import type { FloatArray } from '../types.js'

/**
 * Fills `out` (length info.outElements, in info.outShape's layout) with the convolution and
 * returns it. Sums in double precision; padded taps are skipped, except that a non-finite
 * weight over padding makes the output NaN, as PyTorch's 0 * Infinity does.
 */
export function conv2dReference (
  out: FloatArray,
  input: FloatArray,
  kernel: FloatArray,
  bias: FloatArray | null,
  info: Conv2dInfo
): FloatArray {
  if (info.outElements === 0) return out
  const bad = nonFiniteFilters(kernel, info)
  if (info.layout === 'NCHW') conv2dNCHW(out, input, kernel, bias, info, bad)
  else conv2dNHWC(out, input, kernel, bias, info, bad)
  return out
}

/** The first kernel tap index i (or j) whose position y0 + i*d is inside [0, size). */
function firstTap (y0: number, d: number): number {
  return y0 >= 0 ? 0 : Math.floor((d - 1 - y0) / d)
}

/** One past the last tap index below k whose position y0 + i*d is inside [0, size). */
function endTap (y0: number, d: number, size: number, k: number): number {
  if (y0 >= size) return 0
  const e = Math.floor((size - 1 - y0) / d) + 1
  return e < k ? e : k
}

/** Index of weight (k, c, i, j) in the kernel's layout. */
function weightIndex (info: Conv2dInfo, k: number, c: number, i: number, j: number): number {
  const Cg = info.C / info.groups
  return info.layout === 'NCHW'
    ? ((k * Cg + c) * info.kh + i) * info.kw + j
    : ((i * info.kw + j) * Cg + c) * info.K + k
}

/** Marks the filters that hold a NaN or an infinity; null (no allocation) when none does. */
function nonFiniteFilters (kernel: FloatArray, info: Conv2dInfo): Uint8Array | null {
  let bad: Uint8Array | null = null
  const perFilter = kernel.length / info.K
  for (let idx = 0; idx < kernel.length; idx++) {
    if (!Number.isFinite(kernel[idx])) {
      bad ??= new Uint8Array(info.K)
      bad[info.layout === 'NCHW' ? Math.floor(idx / perFilter) : idx % info.K] = 1
    }
  }
  return bad
}

/** True when filter k has a non-finite weight on a tap outside [iLo,iHi) x [jLo,jHi), i.e. over padding. */
function clippedNonFinite (kernel: FloatArray, info: Conv2dInfo, k: number,
  iLo: number, iHi: number, jLo: number, jHi: number): boolean {
  const Cg = info.C / info.groups
  for (let i = 0; i < info.kh; i++) {
    const rowInside = i >= iLo && i < iHi
    for (let j = 0; j < info.kw; j++) {
      if (rowInside && j >= jLo && j < jHi) continue
      for (let c = 0; c < Cg; c++) {
        if (!Number.isFinite(kernel[weightIndex(info, k, c, i, j)])) return true
      }
    }
  }
  return false
}

/**
 * NCHW: one output row at a time, summed into a double-precision scratch row. For each tap
 * (c, i, j) the run of output columns whose input column is inside the image is precomputed,
 * so the innermost loop walks a contiguous (stride sw) run of the input with no bounds tests.
 */
function conv2dNCHW (out: FloatArray, input: FloatArray, kernel: FloatArray, bias: FloatArray | null,
  info: Conv2dInfo, bad: Uint8Array | null): void {
  const { N, C, H, W, K, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft, groups } = info
  const Cg = C / groups
  const Kg = K / groups
  const plane = H * W
  const taps = kh * kw
  // Kernel column j reads input column ox*sw + xOff[j], inside the image for ox in [oxLo[j], oxHi[j]).
  const xOff = new Int32Array(kw)
  const oxLo = new Int32Array(kw)
  const oxHi = new Int32Array(kw)
  for (let j = 0; j < kw; j++) {
    xOff[j] = j * dw - padLeft
    oxLo[j] = firstTap(xOff[j], sw)
    oxHi[j] = endTap(xOff[j], sw, W, OW)
  }
  const row = new Float64Array(OW)
  let o = 0
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < groups; g++) {
      const inGroup = (n * C + g * Cg) * plane
      for (let kk = 0; kk < Kg; kk++) {
        const k = g * Kg + kk
        const wFilter = k * Cg * taps
        const b = bias === null ? 0 : bias[k]
        const strict = bad !== null && bad[k] === 1
        for (let oy = 0; oy < OH; oy++) {
          const y0 = oy * sh - padTop
          const iLo = firstTap(y0, dh)
          const iHi = endTap(y0, dh, H, kh)
          row.fill(b)
          for (let c = 0; c < Cg; c++) {
            const inC = inGroup + c * plane
            const wC = wFilter + c * taps
            for (let i = iLo; i < iHi; i++) {
              const inRow = inC + (y0 + i * dh) * W
              const wRow = wC + i * kw
              for (let j = 0; j < kw; j++) {
                const w = kernel[wRow + j]
                const hi = oxHi[j]
                let p = inRow + oxLo[j] * sw + xOff[j]
                for (let ox = oxLo[j]; ox < hi; ox++, p += sw) row[ox] += input[p] * w
              }
            }
          }
          if (strict) {
            for (let ox = 0; ox < OW; ox++) {
              const x0 = ox * sw - padLeft
              const jLo = firstTap(x0, dw)
              const jHi = endTap(x0, dw, W, kw)
              if ((iLo > 0 || iHi < kh || jLo > 0 || jHi < kw) &&
                clippedNonFinite(kernel, info, k, iLo, iHi, jLo, jHi)) row[ox] = NaN
            }
          }
          for (let ox = 0; ox < OW; ox++) out[o++] = row[ox]
        }
      }
    }
  }
}

function conv2dNHWC (out: FloatArray, input: FloatArray, kernel: FloatArray, bias: FloatArray | null,
  info: Conv2dInfo, bad: Uint8Array | null): void {
  const { N, C, H, W, K, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft, groups } = info
  const Cg = C / groups
  const Kg = K / groups
  const acc = new Float64Array(K) // one output pixel's K sums
  for (let n = 0; n < N; n++) {
    const inImage = n * H * W * C
    for (let oy = 0; oy < OH; oy++) {
      const y0 = oy * sh - padTop
      const iLo = firstTap(y0, dh)
      const iHi = endTap(y0, dh, H, kh)
      for (let ox = 0; ox < OW; ox++) {
        const x0 = ox * sw - padLeft
        const jLo = firstTap(x0, dw)
        const jHi = endTap(x0, dw, W, kw)
        if (bias === null) acc.fill(0)
        else for (let k = 0; k < K; k++) acc[k] = bias[k]
        for (let i = iLo; i < iHi; i++) {
          const inRow = inImage + (y0 + i * dh) * W * C
          for (let j = jLo; j < jHi; j++) {
            const inPixel = inRow + (x0 + j * dw) * C
            const wTap = (i * kw + j) * Cg * K
            for (let g = 0; g < groups; g++) {
              const inG = inPixel + g * Cg
              const kG = g * Kg
              for (let c = 0; c < Cg; c++) {
                const v = input[inG + c]
                const wC = wTap + c * K + kG
                for (let kk = 0; kk < Kg; kk++) acc[kG + kk] += v * kernel[wC + kk]
              }
            }
          }
        }
        if (bad !== null && (iLo > 0 || iHi < kh || jLo > 0 || jHi < kw)) {
          for (let k = 0; k < K; k++) {
            if (bad[k] === 1 && clippedNonFinite(kernel, info, k, iLo, iHi, jLo, jHi)) acc[k] = NaN
          }
        }
        const o = ((n * OH + oy) * OW + ox) * K
        for (let k = 0; k < K; k++) out[o + k] = acc[k]
      }
    }
  }
}
