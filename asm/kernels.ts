// AssemblyScript source of the WebAssembly SIMD kernels (src/kernels/wasm/kernels.ts holds the
// compiled module; rebuild with `npm run build:wasm`). Not TypeScript: `i32`, `usize`, `v128`
// and the SIMD builtins are AssemblyScript's.
//
// Memory: the host (src/kernels/wasm/runtime.ts) owns all linear memory from heapBase() up; it
// copies operands in, passes byte addresses, and copies results out. Nothing here allocates.
// Strides and counts are in elements, addresses in bytes.
//
// GEMM: C[m x n] (= or +=) A[m x k] · B[k x n], GotoBLAS/BLIS style: B is packed in KC x NC
// blocks of NR-column panels, A in MC x KC blocks of MR-row panels, and a register-tiled MR x NR
// micro-kernel (f32: 4 x 8 in f32x4; f64: 4 x 4 in f64x2) accumulates with mul + add (baseline
// WebAssembly SIMD has no fused multiply-add). Edge tiles are computed from zero-padded panels
// into a scratch tile and only their valid part is written back. The packing routines can also
// read A or B as the virtual im2col matrix of a convolution (implicit GEMM: the column buffer
// is never built). Matrix-vector shapes and tiny products skip the packing.
//
// The micro-kernel's k loop is deliberately not unrolled: V8's TurboFan hoists all loads of an
// unrolled body, runs out of the 16 xmm registers and spills accumulators (measured: slower).
// Taller tiles (5 x 8, 6 x 8) spill the same way. As it is, one k step is 6 loads and 16 SIMD
// mul/add, and the loop runs near the machine's issue width.
//
// Also here: the attention kernel (GEMM, a fused scale/mask/softmax row pass with a SIMD exp,
// GEMM), the conv2d driver, and dot products.

// ---- blocking ----

const MR: i32 = 4
const NR_F32: i32 = 8
const NR_F64: i32 = 4
const KC: i32 = 256
const MC: i32 = 64
const NC: i32 = 1024

// workspace layout (bytes): packed A block, packed B block, one edge tile
const PACK_A_BYTES: usize = <usize>(MC * KC * 8)
const PACK_B_BYTES: usize = <usize>(KC * NC * 8)
const TILE_BYTES: usize = 256

/** Where the host's memory may start (64-byte aligned). */
export function heapBase (): usize {
  return (__heap_base + 63) & ~(<usize>63) // eslint-disable-line camelcase
}

/** Bytes of workspace every GEMM call needs at its `work` address. */
export function workBytes (): usize {
  return PACK_A_BYTES + PACK_B_BYTES + TILE_BYTES
}

// ---- operand sources ----

/** A or B is a plain strided matrix. */
const SRC_STRIDED: i32 = 0
/**
 * B is the im2col matrix of a planar (C x H x W) image: rows taps (c, i, j), columns output
 * pixels (oy, ox). NCHW convolutions.
 */
const SRC_IM2COL_NCHW: i32 = 1
/**
 * A is the transposed im2col matrix of a planar image: rows output pixels, columns taps (i, j, c).
 * NHWC convolutions (the image is made planar first).
 */
const SRC_IM2COL_NHWC: i32 = 2

// convolution geometry for the im2col sources (set by convSetup)
let cvH: i32 = 0
let cvW: i32 = 0
let cvOW: i32 = 0
let cvSh: i32 = 1
let cvSw: i32 = 1
let cvPt: i32 = 0
let cvPl: i32 = 0
/** Largest tap displacement (rows, columns): (kh-1)·dh, (kw-1)·dw. */
let cvSpanY: i32 = 0
let cvSpanX: i32 = 0
/**
 * Three i32 tables of `depth` entries, one per tap p (an im2col row for NCHW, column for NHWC):
 * the element offset of its input from the window's top-left input element in the planar image,
 * and the tap's row and column displacement (for the bounds tests at the image border).
 */
let cvOff: usize = 0
let cvTY: usize = 0
let cvTX: usize = 0

/** Bytes of tap tables a convolution with this depth (C/groups·kh·kw) needs. */
export function tapBytes (depth: i32): usize {
  return <usize>depth * 12
}

function convSetup (nhwc: i32, Cg: i32, H: i32, W: i32, kh: i32, kw: i32, OW: i32,
  sh: i32, sw: i32, dh: i32, dw: i32, padTop: i32, padLeft: i32, taps: usize): void {
  cvH = H
  cvW = W
  cvOW = OW
  cvSh = sh
  cvSw = sw
  cvPt = padTop
  cvPl = padLeft
  cvSpanY = (kh - 1) * dh
  cvSpanX = (kw - 1) * dw
  const depth = Cg * kh * kw
  cvOff = taps
  cvTY = taps + <usize>depth * 4
  cvTX = cvTY + <usize>depth * 4
  // NCHW taps in the kernel's (c, i, j) order, NHWC in its (i, j, c) order
  for (let c: i32 = 0; c < Cg; c++) {
    for (let i: i32 = 0; i < kh; i++) {
      for (let j: i32 = 0; j < kw; j++) {
        const p = nhwc !== 0 ? (i * kw + j) * Cg + c : (c * kh + i) * kw + j
        const at = <usize>p << 2
        store<i32>(cvOff + at, (c * H + i * dh) * W + j * dw)
        store<i32>(cvTY + at, i * dh)
        store<i32>(cvTX + at, j * dw)
      }
    }
  }
}

// ---- packing ----

/**
 * Packs rows [0, kc) x columns [0, nc) of B (starting at row p0, column q0 of the source) into
 * NR-column panels: panel t holds kc rows of NR elements (columns past nc are zeros).
 */
function packB<T> (kind: i32, kc: i32, nc: i32, b: usize, rs: i32, cs: i32, p0: i32, q0: i32, dst: usize): void {
  const NR: i32 = sizeof<T>() === 4 ? NR_F32 : NR_F64
  const es: usize = sizeof<T>()
  for (let jr: i32 = 0; jr < nc; jr += NR) {
    const nr = min(NR, nc - jr)
    let d = dst + <usize>(jr * kc) * es
    if (kind === SRC_STRIDED) {
      const src = b + (<usize>p0 * <usize>rs + <usize>(q0 + jr) * <usize>cs) * es
      if (nr === NR && cs === 1) {
        const step = <usize>rs * es
        let s = src
        for (let p: i32 = 0; p < kc; p++) {
          v128.store(d, v128.load(s))
          v128.store(d, v128.load(s, 16), 16)
          s += step
          d += 32
        }
      } else if (rs === 1) {
        // column-contiguous source (e.g. a transposed operand): walk down each column
        for (let j: i32 = 0; j < NR; j++) {
          let o = d + <usize>j * es
          if (j < nr) {
            let s = src + <usize>j * <usize>cs * es
            for (let p: i32 = 0; p < kc; p++) {
              store<T>(o, load<T>(s))
              s += es
              o += 32
            }
          } else {
            for (let p: i32 = 0; p < kc; p++) {
              store<T>(o, <T>0)
              o += 32
            }
          }
        }
      } else {
        for (let p: i32 = 0; p < kc; p++) {
          const row = src + <usize>p * <usize>rs * es
          for (let j: i32 = 0; j < NR; j++) {
            store<T>(d + <usize>j * es, j < nr ? load<T>(row + <usize>j * <usize>cs * es) : <T>0)
          }
          d += 32
        }
      }
    } else {
      packIm2colPanel<T>(NR, kc, nr, b, p0, q0 + jr, d)
    }
  }
}

/**
 * One panel of the im2col matrix of a planar image: for taps p0..p0+kc, the values at the output
 * pixels q0..q0+nr (nr <= wd; missing pixels are zeros), wd elements per tap. It is a B panel of
 * an NCHW convolution (wd = NR) or an A panel of an NHWC one (wd = MR): the same layout.
 */
function packIm2colPanel<T> (wd: i32, kc: i32, nr: i32, img: usize, p0: i32, q0: i32, dst: usize): void {
  const es: usize = sizeof<T>()
  const step: usize = <usize>wd * es
  const H = cvH
  const W = cvW
  const OW = cvOW
  const sw = cvSw
  const oy0 = q0 / OW
  const ox0 = q0 - oy0 * OW
  const yb = oy0 * cvSh - cvPt
  const xb = ox0 * sw - cvPl
  const pb = <usize>p0 << 2
  let off = cvOff + pb
  let ty = cvTY + pb
  let tx = cvTX + pb
  let d = dst
  if (nr === wd && ox0 + wd <= OW) {
    // the panel's pixels are one run of an output row
    if (sw === 1 && yb >= 0 && yb + cvSpanY < H && xb >= 0 && xb + cvSpanX + wd <= W) {
      // ... and every tap of every pixel is inside the image: plain copies
      const base = img + (<usize>yb * <usize>W + <usize>xb) * es
      if (step === 32) {
        for (let p: i32 = 0; p < kc; p++) {
          const s = base + <usize>load<i32>(off) * es
          v128.store(d, v128.load(s))
          v128.store(d, v128.load(s, 16), 16)
          off += 4
          d += 32
        }
      } else {
        for (let p: i32 = 0; p < kc; p++) {
          v128.store(d, v128.load(base + <usize>load<i32>(off) * es))
          off += 4
          d += 16
        }
      }
      return
    }
    for (let p: i32 = 0; p < kc; p++) {
      const y = yb + load<i32>(ty)
      if (y < 0 || y >= H) {
        memory.fill(d, 0, step)
      } else {
        const s = img + (<usize>(yb * W + xb) + <usize>load<i32>(off)) * es
        let x = xb + load<i32>(tx)
        for (let t: i32 = 0; t < wd; t++) {
          store<T>(d + <usize>t * es, x >= 0 && x < W ? load<T>(s + <usize>(t * sw) * es) : <T>0)
          x += sw
        }
      }
      off += 4
      ty += 4
      tx += 4
      d += step
    }
    return
  }
  // the panel wraps to the next output row, or is the last, partial one
  for (let p: i32 = 0; p < kc; p++) {
    const dy = load<i32>(ty)
    const dx = load<i32>(tx)
    const o = <usize>load<i32>(off)
    let oy = oy0
    let ox = ox0
    for (let t: i32 = 0; t < wd; t++) {
      let v: T = <T>0
      if (t < nr) {
        const y = oy * cvSh - cvPt
        const x = ox * sw - cvPl
        if (y + dy >= 0 && y + dy < H && x + dx >= 0 && x + dx < W) {
          v = load<T>(img + (<usize>(y * W + x) + o) * es)
        }
        if (++ox === OW) {
          ox = 0
          oy++
        }
      }
      store<T>(d + <usize>t * es, v)
    }
    off += 4
    ty += 4
    tx += 4
    d += step
  }
}

/**
 * Packs rows [0, mc) x columns [0, kc) of A (from row r0, column p0 of the source) into MR-row
 * panels: panel t holds kc columns of MR elements (rows past mc are zeros).
 */
function packA<T> (kind: i32, mc: i32, kc: i32, a: usize, rs: i32, cs: i32, r0: i32, p0: i32, dst: usize): void {
  const es: usize = sizeof<T>()
  const pstep: usize = <usize>MR * es
  for (let ir: i32 = 0; ir < mc; ir += MR) {
    const mr = min(MR, mc - ir)
    const d = dst + <usize>(ir * kc) * es
    if (kind === SRC_STRIDED) {
      for (let r: i32 = 0; r < MR; r++) {
        let o = d + <usize>r * es
        if (r < mr) {
          let s = a + (<usize>(r0 + ir + r) * <usize>rs + <usize>p0 * <usize>cs) * es
          const step = <usize>cs * es
          for (let p: i32 = 0; p < kc; p++) {
            store<T>(o, load<T>(s))
            s += step
            o += pstep
          }
        } else {
          for (let p: i32 = 0; p < kc; p++) {
            store<T>(o, <T>0)
            o += pstep
          }
        }
      }
    } else {
      packIm2colPanel<T>(MR, kc, mr, a, p0, r0 + ir, d)
    }
  }
}

// ---- micro-kernels ----

/**
 * C[4 x 8] (= or += when acc) A-panel[kc x 4]ᵀ · B-panel[kc x 8], f32. c is the tile's address,
 * ldc its row stride in bytes.
 */
function kernelF32 (kc: i32, a: usize, b: usize, c: usize, ldc: usize, acc: i32): void {
  let c00 = f32x4.splat(0)
  let c01 = f32x4.splat(0)
  let c10 = f32x4.splat(0)
  let c11 = f32x4.splat(0)
  let c20 = f32x4.splat(0)
  let c21 = f32x4.splat(0)
  let c30 = f32x4.splat(0)
  let c31 = f32x4.splat(0)
  for (let p: i32 = 0; p < kc; p++) {
    const b0 = v128.load(b)
    const b1 = v128.load(b, 16)
    let av = v128.load32_splat(a)
    c00 = f32x4.add(c00, f32x4.mul(av, b0))
    c01 = f32x4.add(c01, f32x4.mul(av, b1))
    av = v128.load32_splat(a, 4)
    c10 = f32x4.add(c10, f32x4.mul(av, b0))
    c11 = f32x4.add(c11, f32x4.mul(av, b1))
    av = v128.load32_splat(a, 8)
    c20 = f32x4.add(c20, f32x4.mul(av, b0))
    c21 = f32x4.add(c21, f32x4.mul(av, b1))
    av = v128.load32_splat(a, 12)
    c30 = f32x4.add(c30, f32x4.mul(av, b0))
    c31 = f32x4.add(c31, f32x4.mul(av, b1))
    a += 16
    b += 32
  }
  const r1 = c + ldc
  const r2 = r1 + ldc
  const r3 = r2 + ldc
  if (acc !== 0) {
    c00 = f32x4.add(v128.load(c), c00)
    c01 = f32x4.add(v128.load(c, 16), c01)
    c10 = f32x4.add(v128.load(r1), c10)
    c11 = f32x4.add(v128.load(r1, 16), c11)
    c20 = f32x4.add(v128.load(r2), c20)
    c21 = f32x4.add(v128.load(r2, 16), c21)
    c30 = f32x4.add(v128.load(r3), c30)
    c31 = f32x4.add(v128.load(r3, 16), c31)
  }
  v128.store(c, c00)
  v128.store(c, c01, 16)
  v128.store(r1, c10)
  v128.store(r1, c11, 16)
  v128.store(r2, c20)
  v128.store(r2, c21, 16)
  v128.store(r3, c30)
  v128.store(r3, c31, 16)
}

/** C[4 x 4] (= or += when acc) A-panel[kc x 4]ᵀ · B-panel[kc x 4], f64. */
function kernelF64 (kc: i32, a: usize, b: usize, c: usize, ldc: usize, acc: i32): void {
  let c00 = f64x2.splat(0)
  let c01 = f64x2.splat(0)
  let c10 = f64x2.splat(0)
  let c11 = f64x2.splat(0)
  let c20 = f64x2.splat(0)
  let c21 = f64x2.splat(0)
  let c30 = f64x2.splat(0)
  let c31 = f64x2.splat(0)
  for (let p: i32 = 0; p < kc; p++) {
    const b0 = v128.load(b)
    const b1 = v128.load(b, 16)
    let av = v128.load64_splat(a)
    c00 = f64x2.add(c00, f64x2.mul(av, b0))
    c01 = f64x2.add(c01, f64x2.mul(av, b1))
    av = v128.load64_splat(a, 8)
    c10 = f64x2.add(c10, f64x2.mul(av, b0))
    c11 = f64x2.add(c11, f64x2.mul(av, b1))
    av = v128.load64_splat(a, 16)
    c20 = f64x2.add(c20, f64x2.mul(av, b0))
    c21 = f64x2.add(c21, f64x2.mul(av, b1))
    av = v128.load64_splat(a, 24)
    c30 = f64x2.add(c30, f64x2.mul(av, b0))
    c31 = f64x2.add(c31, f64x2.mul(av, b1))
    a += 32
    b += 32
  }
  const r1 = c + ldc
  const r2 = r1 + ldc
  const r3 = r2 + ldc
  if (acc !== 0) {
    c00 = f64x2.add(v128.load(c), c00)
    c01 = f64x2.add(v128.load(c, 16), c01)
    c10 = f64x2.add(v128.load(r1), c10)
    c11 = f64x2.add(v128.load(r1, 16), c11)
    c20 = f64x2.add(v128.load(r2), c20)
    c21 = f64x2.add(v128.load(r2, 16), c21)
    c30 = f64x2.add(v128.load(r3), c30)
    c31 = f64x2.add(v128.load(r3, 16), c31)
  }
  v128.store(c, c00)
  v128.store(c, c01, 16)
  v128.store(r1, c10)
  v128.store(r1, c11, 16)
  v128.store(r2, c20)
  v128.store(r2, c21, 16)
  v128.store(r3, c30)
  v128.store(r3, c31, 16)
}

// ---- GEMM driver ----

// lane-generic vector helpers (f32x4 for f32, f64x2 for f64)
function vzero (): v128 {
  return i32x4.splat(0)
}

function vsplat<T> (x: T): v128 {
  return sizeof<T>() === 4 ? f32x4.splat(<f32>x) : f64x2.splat(<f64>x)
}

function vmuladd<T> (acc: v128, x: v128, y: v128): v128 {
  return sizeof<T>() === 4 ? f32x4.add(acc, f32x4.mul(x, y)) : f64x2.add(acc, f64x2.mul(x, y))
}

function vadd<T> (x: v128, y: v128): v128 {
  return sizeof<T>() === 4 ? f32x4.add(x, y) : f64x2.add(x, y)
}

function vsum<T> (x: v128): T {
  if (sizeof<T>() === 4) {
    return <T>((f32x4.extract_lane(x, 0) + f32x4.extract_lane(x, 1)) + (f32x4.extract_lane(x, 2) + f32x4.extract_lane(x, 3)))
  }
  return <T>(f64x2.extract_lane(x, 0) + f64x2.extract_lane(x, 1))
}

/**
 * y[j] (= or += when acc) Σ_p x[p·xs] · B[p·rsb + j], j < n: a row vector times a matrix whose
 * rows are contiguous (m = 1). Walks B row by row (sequential reads), accumulating into y in
 * blocks of columns that stay in L1.
 */
function rowTimesMatrix<T> (n: i32, k: i32, x: usize, xs: i32, b: usize, rsb: i32, y: usize, acc: i32): void {
  const es: usize = sizeof<T>()
  const L: i32 = 16 / <i32>es
  const JB: i32 = 2048
  const xstep = <usize>xs * es
  const bstep = <usize>rsb * es
  for (let j0: i32 = 0; j0 < n; j0 += JB) {
    const nb = min(JB, n - j0)
    const yb = y + <usize>j0 * es
    if (acc === 0) memory.fill(yb, 0, <usize>nb * es)
    let row = b + <usize>j0 * es
    let xp = x
    for (let p: i32 = 0; p < k; p++) {
      const xs1 = load<T>(xp)
      const xv = vsplat<T>(xs1)
      let j: i32 = 0
      for (; j + 2 * L <= nb; j += 2 * L) {
        const o = <usize>j * es
        v128.store(yb + o, vmuladd<T>(v128.load(yb + o), xv, v128.load(row + o)))
        v128.store(yb + o, vmuladd<T>(v128.load(yb + o, 16), xv, v128.load(row + o, 16)), 16)
      }
      for (; j < nb; j++) {
        const o = <usize>j * es
        store<T>(yb + o, load<T>(yb + o) + xs1 * load<T>(row + o))
      }
      row += bstep
      xp += xstep
    }
  }
}

/**
 * y[i·ys] (= or += when acc) Σ_p A[i·rsa + p] · x[p], i < m: a matrix whose rows are contiguous
 * times a contiguous vector (n = 1, or m = 1 against a transposed operand): one dot product a row.
 */
function matrixTimesVector<T> (m: i32, k: i32, a: usize, rsa: i32, x: usize, y: usize, ys: i32, acc: i32): void {
  const es: usize = sizeof<T>()
  const L: i32 = 16 / <i32>es
  for (let i: i32 = 0; i < m; i++) {
    const ap = a + <usize>i * <usize>rsa * es
    let s0 = vzero()
    let s1 = vzero()
    let p: i32 = 0
    for (; p + 2 * L <= k; p += 2 * L) {
      const o = <usize>p * es
      s0 = vmuladd<T>(s0, v128.load(ap + o), v128.load(x + o))
      s1 = vmuladd<T>(s1, v128.load(ap + o, 16), v128.load(x + o, 16))
    }
    let s: T = vsum<T>(vadd<T>(s0, s1))
    for (; p < k; p++) s += load<T>(ap + <usize>p * es) * load<T>(x + <usize>p * es)
    const yp = y + <usize>i * <usize>ys * es
    store<T>(yp, acc !== 0 ? load<T>(yp) + s : s)
  }
}

/** C (= or +=) A·B by the definition, for products too small to pay for packing. */
function gemmSmall<T> (m: i32, n: i32, k: i32, a: usize, rsa: i32, csa: i32, b: usize, rsb: i32, csb: i32,
  c: usize, ldc: i32, acc: i32): void {
  const es: usize = sizeof<T>()
  for (let i: i32 = 0; i < m; i++) {
    for (let j: i32 = 0; j < n; j++) {
      let s: T = 0
      let ap = a + <usize>i * <usize>rsa * es
      let bp = b + <usize>j * <usize>csb * es
      for (let p: i32 = 0; p < k; p++) {
        s += load<T>(ap) * load<T>(bp)
        ap += <usize>csa * es
        bp += <usize>rsb * es
      }
      const cp = c + (<usize>i * <usize>ldc + <usize>j) * es
      store<T>(cp, acc !== 0 ? load<T>(cp) + s : s)
    }
  }
}

/**
 * C = A·B (acc = 0) or C += A·B (acc = 1). A is m x k read from `a` (kind aKind: strided with
 * element strides rsa, csa, or NHWC im2col), B is k x n (strided rsb, csb, or NCHW im2col),
 * C is m x n with row stride ldc. `work` is workBytes() of scratch.
 */
function gemm<T> (m: i32, n: i32, k: i32,
  aKind: i32, a: usize, rsa: i32, csa: i32,
  bKind: i32, b: usize, rsb: i32, csb: i32,
  c: usize, ldc: i32, acc: i32, work: usize): void {
  const NR: i32 = sizeof<T>() === 4 ? NR_F32 : NR_F64
  const es: usize = sizeof<T>()
  if (m <= 0 || n <= 0) return
  const ldcb = <usize>ldc * es
  if (k <= 0) {
    if (acc === 0) {
      for (let i: i32 = 0; i < m; i++) memory.fill(c + <usize>i * ldcb, 0, <usize>n * es)
    }
    return
  }
  if (aKind === SRC_STRIDED && bKind === SRC_STRIDED) {
    // matrix-vector shapes and tiny products skip the packing
    if (n === 1 && csa === 1 && rsb === 1) {
      matrixTimesVector<T>(m, k, a, rsa, b, c, ldc, acc)
      return
    }
    if (m === 1 && csb === 1) {
      rowTimesMatrix<T>(n, k, a, csa, b, rsb, c, acc)
      return
    }
    if (m === 1 && rsb === 1 && csa === 1) {
      matrixTimesVector<T>(n, k, b, csb, a, c, 1, acc)
      return
    }
    if (m * n * k <= 256) {
      gemmSmall<T>(m, n, k, a, rsa, csa, b, rsb, csb, c, ldc, acc)
      return
    }
  }
  const pa = work
  const pb = work + PACK_A_BYTES
  const tile = pb + PACK_B_BYTES
  for (let jc: i32 = 0; jc < n; jc += NC) {
    const nc = min(NC, n - jc)
    for (let pc: i32 = 0; pc < k; pc += KC) {
      const kc = min(KC, k - pc)
      const beta = pc === 0 ? acc : 1
      packB<T>(bKind, kc, nc, b, rsb, csb, pc, jc, pb)
      for (let ic: i32 = 0; ic < m; ic += MC) {
        const mc = min(MC, m - ic)
        packA<T>(aKind, mc, kc, a, rsa, csa, ic, pc, pa)
        for (let jr: i32 = 0; jr < nc; jr += NR) {
          const nr = min(NR, nc - jr)
          const bp = pb + <usize>(jr * kc) * es
          for (let ir: i32 = 0; ir < mc; ir += MR) {
            const mr = min(MR, mc - ir)
            const ap = pa + <usize>(ir * kc) * es
            const cp = c + <usize>(ic + ir) * ldcb + <usize>(jc + jr) * es
            if (mr === MR && nr === NR) {
              if (sizeof<T>() === 4) kernelF32(kc, ap, bp, cp, ldcb, beta)
              else kernelF64(kc, ap, bp, cp, ldcb, beta)
            } else {
              const tb = <usize>NR * es
              if (sizeof<T>() === 4) kernelF32(kc, ap, bp, tile, tb, 0)
              else kernelF64(kc, ap, bp, tile, tb, 0)
              for (let r: i32 = 0; r < mr; r++) {
                const crow = cp + <usize>r * ldcb
                const trow = tile + <usize>r * tb
                for (let j: i32 = 0; j < nr; j++) {
                  const o = crow + <usize>j * es
                  const t = load<T>(trow + <usize>j * es)
                  store<T>(o, beta !== 0 ? load<T>(o) + t : t)
                }
              }
            }
          }
        }
      }
    }
  }
}

export function gemmF32 (m: i32, n: i32, k: i32, a: usize, rsa: i32, csa: i32, b: usize, rsb: i32, csb: i32,
  c: usize, ldc: i32, acc: i32, work: usize): void {
  gemm<f32>(m, n, k, SRC_STRIDED, a, rsa, csa, SRC_STRIDED, b, rsb, csb, c, ldc, acc, work)
}

export function gemmF64 (m: i32, n: i32, k: i32, a: usize, rsa: i32, csa: i32, b: usize, rsb: i32, csb: i32,
  c: usize, ldc: i32, acc: i32, work: usize): void {
  gemm<f64>(m, n, k, SRC_STRIDED, a, rsa, csa, SRC_STRIDED, b, rsb, csb, c, ldc, acc, work)
}

/**
 * `batches` products C[t] = A[t]·B[t] of row-major m x k and k x n blocks: A[t] starts at element
 * offset aOffs[t] (i32 array) of `a`, B[t] at bOffs[t] of `b`; C[t] at t·m·n of `c`.
 */
function gemmBatch<T> (batches: i32, m: i32, n: i32, k: i32, a: usize, aOffs: usize, b: usize, bOffs: usize, c: usize, work: usize): void {
  const es: usize = sizeof<T>()
  const blk = <usize>m * <usize>n * es
  for (let t: i32 = 0; t < batches; t++) {
    const ao = <usize>load<u32>(aOffs + (<usize>t << 2))
    const bo = <usize>load<u32>(bOffs + (<usize>t << 2))
    gemm<T>(m, n, k, SRC_STRIDED, a + ao * es, k, 1, SRC_STRIDED, b + bo * es, n, 1, c + <usize>t * blk, n, 0, work)
  }
}

export function gemmBatchF32 (batches: i32, m: i32, n: i32, k: i32, a: usize, aOffs: usize, b: usize, bOffs: usize, c: usize, work: usize): void {
  gemmBatch<f32>(batches, m, n, k, a, aOffs, b, bOffs, c, work)
}

export function gemmBatchF64 (batches: i32, m: i32, n: i32, k: i32, a: usize, aOffs: usize, b: usize, bOffs: usize, c: usize, work: usize): void {
  gemmBatch<f64>(batches, m, n, k, a, aOffs, b, bOffs, c, work)
}

// ---- conv2d ----

/**
 * conv2d of N images as implicit GEMMs, one per image and group, reading the im2col matrix straight
 * from the planar image while packing. NCHW (nhwc = 0): out[k, pixel] = kernel[k, (c,i,j)] ·
 * im2col[(c,i,j), pixel]. NHWC (nhwc = 1): each image is first made planar in `planar` (C·H·W
 * elements of scratch), then out[pixel, k] = im2colᵀ[pixel, (i,j,c)] · kernel[(i,j,c), k]. Padding
 * taps read as 0, so a non-finite weight over padding gives NaN (0·∞), as PyTorch does. bias = 0
 * means none. taps: tapBytes(C/groups·kh·kw) of scratch.
 */
function conv2d<T> (nhwc: i32, N: i32, C: i32, H: i32, W: i32, K: i32, kh: i32, kw: i32, OH: i32, OW: i32,
  sh: i32, sw: i32, dh: i32, dw: i32, padTop: i32, padLeft: i32, groups: i32,
  input: usize, kernel: usize, bias: usize, out: usize, work: usize, taps: usize, planar: usize): void {
  const es: usize = sizeof<T>()
  const Cg = C / groups
  const Kg = K / groups
  const P = OH * OW
  const HW = H * W
  const depth = Cg * kh * kw
  convSetup(nhwc, Cg, H, W, kh, kw, OW, sh, sw, dh, dw, padTop, padLeft, taps)
  const acc = bias !== 0 ? 1 : 0
  for (let n: i32 = 0; n < N; n++) {
    let img = input + <usize>n * <usize>C * <usize>HW * es
    const o = out + <usize>n * <usize>K * <usize>P * es
    if (nhwc !== 0) {
      // HWC -> CHW
      for (let c: i32 = 0; c < C; c++) {
        let s = img + <usize>c * es
        let d = planar + <usize>c * <usize>HW * es
        for (let q: i32 = 0; q < HW; q++) {
          store<T>(d, load<T>(s))
          s += <usize>C * es
          d += es
        }
      }
      img = planar
    }
    if (bias !== 0 && nhwc !== 0) {
      // out[pixel, k] = bias[k]: every pixel gets the bias row
      for (let q: i32 = 0; q < P; q++) memory.copy(o + <usize>q * <usize>K * es, bias, <usize>K * es)
    } else if (bias !== 0) {
      for (let k: i32 = 0; k < K; k++) {
        const bv = load<T>(bias + <usize>k * es)
        const row = o + <usize>k * <usize>P * es
        for (let q: i32 = 0; q < P; q++) store<T>(row + <usize>q * es, bv)
      }
    }
    for (let g: i32 = 0; g < groups; g++) {
      const planes = img + <usize>(g * Cg) * <usize>HW * es
      if (nhwc !== 0) {
        gemm<T>(P, Kg, depth,
          SRC_IM2COL_NHWC, planes, 0, 0,
          SRC_STRIDED, kernel + <usize>(g * Kg) * es, K, 1,
          o + <usize>(g * Kg) * es, K, acc, work)
      } else {
        gemm<T>(Kg, P, depth,
          SRC_STRIDED, kernel + <usize>(g * Kg) * <usize>depth * es, depth, 1,
          SRC_IM2COL_NCHW, planes, 0, 0,
          o + <usize>(g * Kg) * <usize>P * es, P, acc, work)
      }
    }
  }
}

export function conv2dF32 (nhwc: i32, N: i32, C: i32, H: i32, W: i32, K: i32, kh: i32, kw: i32, OH: i32, OW: i32,
  sh: i32, sw: i32, dh: i32, dw: i32, padTop: i32, padLeft: i32, groups: i32,
  input: usize, kernel: usize, bias: usize, out: usize, work: usize, taps: usize, planar: usize): void {
  conv2d<f32>(nhwc, N, C, H, W, K, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft, groups, input, kernel, bias, out, work, taps, planar)
}

export function conv2dF64 (nhwc: i32, N: i32, C: i32, H: i32, W: i32, K: i32, kh: i32, kw: i32, OH: i32, OW: i32,
  sh: i32, sw: i32, dh: i32, dw: i32, padTop: i32, padLeft: i32, groups: i32,
  input: usize, kernel: usize, bias: usize, out: usize, work: usize, taps: usize, planar: usize): void {
  conv2d<f64>(nhwc, N, C, H, W, K, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft, groups, input, kernel, bias, out, work, taps, planar)
}

// ---- attention ----

const LOG2E_F: f32 = 1.442695041
const LN2_HI_F: f32 = 0.693359375
const LN2_LO_F: f32 = -2.12194440e-4
/** 1.5·2^23: adding it rounds a float of magnitude below 2^22 to an integer, left in the low mantissa bits. */
const ROUNDER_F: f32 = 12582912.0

/**
 * e^x on four f32 lanes (Cephes expf: range reduction by ln 2, degree-6 polynomial; ~1 ulp).
 * Exactly 0 below ln(FLT_MIN) (so a −∞ score gets weight 0), NaN stays NaN; only used on x <= 0.
 */
function expF32x4 (x: v128): v128 {
  const tiny = f32x4.lt(x, f32x4.splat(-87.33654))
  const t = f32x4.add(f32x4.mul(x, f32x4.splat(LOG2E_F)), f32x4.splat(ROUNDER_F))
  const n = f32x4.sub(t, f32x4.splat(ROUNDER_F))
  let r = f32x4.sub(x, f32x4.mul(n, f32x4.splat(LN2_HI_F)))
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(LN2_LO_F)))
  let y = f32x4.splat(1.9875691500e-4)
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(1.3981999507e-3))
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(8.3334519073e-3))
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(4.1665795894e-2))
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(1.6666665459e-1))
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(5.0000001201e-1))
  y = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(y, r), r), r), f32x4.splat(1))
  // 2^n for n in [-126, 0]: the exponent field (n + 127) << 23, from t's low bits; tiny lanes become 0
  const pow2 = i32x4.shl(i32x4.add(t, i32x4.splat(127)), 23)
  return v128.andnot(f32x4.mul(y, pow2), tiny)
}

/**
 * Scales one score row (and applies the mask and the causal limit: keys from `visible` on are
 * removed), then turns it into softmax weights in place: zeros for a row that attends to nothing
 * (every score −∞), NaN everywhere for a row with a NaN or +∞ score, as the reference does.
 */
function softmaxRow<T> (row: usize, Lk: i32, scale: T, visible: i32, maskKind: i32, mrow: usize, mcol: i32): void {
  const es: usize = sizeof<T>()
  const ninf: T = <T>(-Infinity)
  let mx: T = ninf
  let nan = false
  if (sizeof<T>() === 4 && maskKind === 0) {
    // no mask: scale the visible scores (tracking their maximum and any NaN); hidden ones are −∞
    for (let j: i32 = visible; j < Lk; j++) store<f32>(row + <usize>j * 4, -Infinity)
    const sv = f32x4.splat(<f32>scale)
    let mv = f32x4.splat(-Infinity)
    let nv = i32x4.splat(0)
    let j: i32 = 0
    for (; j + 4 <= visible; j += 4) {
      const p = row + <usize>j * 4
      const v = f32x4.mul(v128.load(p), sv)
      v128.store(p, v)
      mv = f32x4.pmax(mv, v)
      nv = v128.or(nv, f32x4.ne(v, v))
    }
    nan = v128.any_true(nv)
    const m2 = f32x4.pmax(mv, i32x4.shuffle(mv, mv, 2, 3, 0, 1))
    const m1 = f32x4.pmax(m2, i32x4.shuffle(m2, m2, 1, 0, 3, 2))
    mx = <T>f32x4.extract_lane(m1, 0)
    for (; j < visible; j++) {
      const p = row + <usize>j * 4
      const x = load<f32>(p) * <f32>scale
      store<f32>(p, x)
      const xt: T = <T>x
      if (xt > mx) mx = xt
      else if (isNaN(x)) nan = true
    }
  } else {
    const mes: usize = maskKind === 1 ? 1 : es
    for (let j: i32 = 0; j < Lk; j++) {
      const p = row + <usize>j * es
      const m = mrow + <usize>j * <usize>mcol * mes
      let x: T
      if (j >= visible || (maskKind === 1 && load<u8>(m) === 0)) {
        x = ninf
      } else {
        x = load<T>(p) * scale
        if (maskKind === 2) x += load<T>(m)
      }
      store<T>(p, x)
      if (x > mx) mx = x
      else if (isNaN(x)) nan = true
    }
  }
  if (nan || mx === <T>Infinity) {
    for (let j: i32 = 0; j < Lk; j++) store<T>(row + <usize>j * es, <T>NaN)
    return
  }
  if (mx === ninf) {
    memory.fill(row, 0, <usize>Lk * es)
    return
  }
  // e^(s - max), their sum, then the division
  let j: i32 = 0
  if (sizeof<T>() === 4) {
    const mv = f32x4.splat(<f32>mx)
    let sv = f32x4.splat(0)
    for (; j + 4 <= Lk; j += 4) {
      const p = row + <usize>j * 4
      const e = expF32x4(f32x4.sub(v128.load(p), mv))
      v128.store(p, e)
      sv = f32x4.add(sv, e)
    }
    let sum = (f32x4.extract_lane(sv, 0) + f32x4.extract_lane(sv, 1)) + (f32x4.extract_lane(sv, 2) + f32x4.extract_lane(sv, 3))
    for (; j < Lk; j++) {
      const p = row + <usize>j * 4
      const e = f32x4.extract_lane(expF32x4(f32x4.splat(load<f32>(p) - <f32>mx)), 0)
      store<f32>(p, e)
      sum += e
    }
    const inv: f32 = 1 / sum
    const iv = f32x4.splat(inv)
    for (j = 0; j + 4 <= Lk; j += 4) {
      const p = row + <usize>j * 4
      v128.store(p, f32x4.mul(v128.load(p), iv))
    }
    for (; j < Lk; j++) {
      const p = row + <usize>j * 4
      store<f32>(p, load<f32>(p) * inv)
    }
  } else {
    let sum: T = 0
    for (; j < Lk; j++) {
      const p = row + <usize>j * es
      const e = <T>Math.exp(<f64>(load<T>(p) - mx))
      store<T>(p, e)
      sum += e
    }
    for (j = 0; j < Lk; j++) {
      const p = row + <usize>j * es
      store<T>(p, load<T>(p) / sum)
    }
  }
}

/** 1 when every one of the count elements at p is finite (x·0 is 0 exactly for those). */
function allFinite<T> (p: usize, count: i32): i32 {
  const es: usize = sizeof<T>()
  const L: i32 = sizeof<T>() === 4 ? 4 : 2
  let z = f32x4.splat(0)
  let j: i32 = 0
  for (; j + L <= count; j += L) {
    const v = v128.load(p + <usize>j * es)
    if (sizeof<T>() === 4) z = f32x4.add(z, f32x4.mul(v, f32x4.splat(0)))
    else z = f64x2.add(z, f64x2.mul(v, f64x2.splat(0)))
  }
  let s: T = 0
  for (; j < count; j++) s += load<T>(p + <usize>j * es) * <T>0
  if (sizeof<T>() === 4) {
    s += f32x4.extract_lane(z, 0) + f32x4.extract_lane(z, 1) + f32x4.extract_lane(z, 2) + f32x4.extract_lane(z, 3)
  } else {
    s += <T>(f64x2.extract_lane(z, 0) + f64x2.extract_lane(z, 1))
  }
  return s === 0 ? 1 : 0
}

/**
 * One batch of attention: s = q·kᵀ (Lq x Lk), scaled, masked and softmaxed row by row in place
 * (s then holds the weights), o = s·v (Lq x Ev). maskKind: 0 none, 1 bool (u8, 0 = removed),
 * 2 additive (same type as the data); element (i, j) of the mask is at mask + i·mRow + j·mCol.
 * A weight of exactly 0 contributes nothing, so a non-finite value row behind it does not leak.
 */
function attention<T> (Lq: i32, Lk: i32, E: i32, Ev: i32, q: usize, k: usize, v: usize, scale: T,
  causal: i32, maskKind: i32, mask: usize, mRow: i32, mCol: i32, s: usize, o: usize, work: usize): void {
  const es: usize = sizeof<T>()
  if (Lq <= 0) return
  gemm<T>(Lq, Lk, E, SRC_STRIDED, q, E, 1, SRC_STRIDED, k, 1, E, s, Lk, 0, work)
  const mes: usize = maskKind === 1 ? 1 : es
  for (let i: i32 = 0; i < Lq; i++) {
    const visible = causal !== 0 && i + 1 < Lk ? i + 1 : Lk
    softmaxRow<T>(s + <usize>i * <usize>Lk * es, Lk, scale, visible, maskKind, mask + <usize>i * <usize>mRow * mes, mCol)
  }
  if (Ev <= 0) return
  if (allFinite<T>(v, Lk * Ev) !== 0) {
    gemm<T>(Lq, Ev, Lk, SRC_STRIDED, s, Lk, 1, SRC_STRIDED, v, Ev, 1, o, Ev, 0, work)
    return
  }
  // a value row holds NaN or ±∞: sum only the rows with a non-zero weight
  for (let i: i32 = 0; i < Lq; i++) {
    const orow = o + <usize>i * <usize>Ev * es
    memory.fill(orow, 0, <usize>Ev * es)
    for (let j: i32 = 0; j < Lk; j++) {
      const w = load<T>(s + (<usize>i * <usize>Lk + <usize>j) * es)
      if (w === 0) continue
      const vrow = v + <usize>j * <usize>Ev * es
      for (let c: i32 = 0; c < Ev; c++) {
        const p = orow + <usize>c * es
        store<T>(p, load<T>(p) + w * load<T>(vrow + <usize>c * es))
      }
    }
  }
}

/**
 * B batches of attention. Batch t reads query/key/value/mask at the element offsets qOffs[t],
 * kOffs[t], vOffs[t], mOffs[t] (i32 arrays; mOffs unused without a mask), writes its weights at
 * s + t·sStride elements (sStride 0: one scratch block reused) and its output at o + t·Lq·Ev.
 */
function attentionBatch<T> (B: i32, Lq: i32, Lk: i32, E: i32, Ev: i32,
  q: usize, qOffs: usize, k: usize, kOffs: usize, v: usize, vOffs: usize, scale: T, causal: i32,
  maskKind: i32, mask: usize, mOffs: usize, mRow: i32, mCol: i32, s: usize, sStride: i32, o: usize, work: usize): void {
  const es: usize = sizeof<T>()
  const mes: usize = maskKind === 1 ? 1 : es
  for (let t: i32 = 0; t < B; t++) {
    const tt = <usize>t << 2
    const mp = maskKind !== 0 ? mask + <usize>load<u32>(mOffs + tt) * mes : 0
    attention<T>(Lq, Lk, E, Ev,
      q + <usize>load<u32>(qOffs + tt) * es,
      k + <usize>load<u32>(kOffs + tt) * es,
      v + <usize>load<u32>(vOffs + tt) * es,
      scale, causal, maskKind, mp, mRow, mCol,
      s + <usize>t * <usize>sStride * es,
      o + <usize>t * <usize>Lq * <usize>Ev * es, work)
  }
}

export function attentionF32 (B: i32, Lq: i32, Lk: i32, E: i32, Ev: i32,
  q: usize, qOffs: usize, k: usize, kOffs: usize, v: usize, vOffs: usize, scale: f64, causal: i32,
  maskKind: i32, mask: usize, mOffs: usize, mRow: i32, mCol: i32, s: usize, sStride: i32, o: usize, work: usize): void {
  attentionBatch<f32>(B, Lq, Lk, E, Ev, q, qOffs, k, kOffs, v, vOffs, <f32>scale, causal, maskKind, mask, mOffs, mRow, mCol, s, sStride, o, work)
}

export function attentionF64 (B: i32, Lq: i32, Lk: i32, E: i32, Ev: i32,
  q: usize, qOffs: usize, k: usize, kOffs: usize, v: usize, vOffs: usize, scale: f64, causal: i32,
  maskKind: i32, mask: usize, mOffs: usize, mRow: i32, mCol: i32, s: usize, sStride: i32, o: usize, work: usize): void {
  attentionBatch<f64>(B, Lq, Lk, E, Ev, q, qOffs, k, kOffs, v, vOffs, scale, causal, maskKind, mask, mOffs, mRow, mCol, s, sStride, o, work)
}

// ---- dot ----

/** Σ a[i]·b[i] over f32 data, each product formed exactly in f64 and summed in f64. */
export function dotF32 (n: i32, a: usize, b: usize): f64 {
  let s0 = f64x2.splat(0)
  let s1 = f64x2.splat(0)
  let i: i32 = 0
  for (; i + 4 <= n; i += 4) {
    const off = <usize>i << 2
    const x = v128.load(a + off)
    const y = v128.load(b + off)
    s0 = f64x2.add(s0, f64x2.mul(f64x2.promote_low_f32x4(x), f64x2.promote_low_f32x4(y)))
    const xh = i32x4.shuffle(x, x, 2, 3, 0, 1)
    const yh = i32x4.shuffle(y, y, 2, 3, 0, 1)
    s1 = f64x2.add(s1, f64x2.mul(f64x2.promote_low_f32x4(xh), f64x2.promote_low_f32x4(yh)))
  }
  const v = f64x2.add(s0, s1)
  let s = f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1)
  for (; i < n; i++) {
    const off = <usize>i << 2
    s += <f64>load<f32>(a + off) * <f64>load<f32>(b + off)
  }
  return s
}

export function dotF64 (n: i32, a: usize, b: usize): f64 {
  let s0 = f64x2.splat(0)
  let s1 = f64x2.splat(0)
  let i: i32 = 0
  for (; i + 4 <= n; i += 4) {
    const off = <usize>i << 3
    s0 = f64x2.add(s0, f64x2.mul(v128.load(a + off), v128.load(b + off)))
    s1 = f64x2.add(s1, f64x2.mul(v128.load(a + off, 16), v128.load(b + off, 16)))
  }
  const v = f64x2.add(s0, s1)
  let s = f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1)
  for (; i < n; i++) {
    const off = <usize>i << 3
    s += load<f64>(a + off) * load<f64>(b + off)
  }
  return s
}

// ---- elementwise (float32) ----
// Each is one correctly rounded float32 operation per element, hence the float64 loops' values
// rounded to float32 (src/kernels/unary.ts, binary.ts): for +, −, ·, / and sqrt, rounding the
// double result once more to float32 gives the same value.

/** o[i] = op(x[i]) for n float32 values (o may be x); op: 0 neg, 1 abs, 2 sqrt, 3 square, 4 reciprocal, 5 relu (x < 0 ? 0 : x). */
export function unaryF32 (op: i32, n: i32, x: usize, o: usize): void {
  const n4 = n & ~3
  const zero = f32x4.splat(0)
  const one = f32x4.splat(1)
  if (op === 0) {
    for (let i: i32 = 0; i < n4; i += 4) v128.store(o + (<usize>i << 2), f32x4.neg(v128.load(x + (<usize>i << 2))))
  } else if (op === 1) {
    for (let i: i32 = 0; i < n4; i += 4) v128.store(o + (<usize>i << 2), f32x4.abs(v128.load(x + (<usize>i << 2))))
  } else if (op === 2) {
    for (let i: i32 = 0; i < n4; i += 4) v128.store(o + (<usize>i << 2), f32x4.sqrt(v128.load(x + (<usize>i << 2))))
  } else if (op === 3) {
    for (let i: i32 = 0; i < n4; i += 4) {
      const v = v128.load(x + (<usize>i << 2))
      v128.store(o + (<usize>i << 2), f32x4.mul(v, v))
    }
  } else if (op === 4) {
    for (let i: i32 = 0; i < n4; i += 4) v128.store(o + (<usize>i << 2), f32x4.div(one, v128.load(x + (<usize>i << 2))))
  } else {
    for (let i: i32 = 0; i < n4; i += 4) {
      const v = v128.load(x + (<usize>i << 2))
      v128.store(o + (<usize>i << 2), v128.bitselect(zero, v, f32x4.lt(v, zero)))
    }
  }
  for (let i: i32 = n4; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2))
    const r: f32 = op === 0 ? -v : op === 1 ? abs<f32>(v) : op === 2 ? sqrt<f32>(v) : op === 3 ? v * v : op === 4 ? <f32>1 / v : v < 0 ? <f32>0 : v
    store<f32>(o + (<usize>i << 2), r)
  }
}

/** o[i] = a[i] op b[i] for n float32 values (o may be a or b); op: 0 add, 1 sub, 2 mul, 3 div. */
export function binaryF32 (op: i32, n: i32, a: usize, b: usize, o: usize): void {
  const n4 = n & ~3
  if (op === 0) {
    for (let i: i32 = 0; i < n4; i += 4) { const p = <usize>i << 2; v128.store(o + p, f32x4.add(v128.load(a + p), v128.load(b + p))) }
  } else if (op === 1) {
    for (let i: i32 = 0; i < n4; i += 4) { const p = <usize>i << 2; v128.store(o + p, f32x4.sub(v128.load(a + p), v128.load(b + p))) }
  } else if (op === 2) {
    for (let i: i32 = 0; i < n4; i += 4) { const p = <usize>i << 2; v128.store(o + p, f32x4.mul(v128.load(a + p), v128.load(b + p))) }
  } else {
    for (let i: i32 = 0; i < n4; i += 4) { const p = <usize>i << 2; v128.store(o + p, f32x4.div(v128.load(a + p), v128.load(b + p))) }
  }
  for (let i: i32 = n4; i < n; i++) {
    const p = <usize>i << 2
    const x = load<f32>(a + p)
    const y = load<f32>(b + p)
    store<f32>(o + p, op === 0 ? x + y : op === 1 ? x - y : op === 2 ? x * y : x / y)
  }
}

// ---- row sums (reduce) ----

/**
 * For each of `rows` rows of n float32 values at x, adds Σ (x − m)^power (power 1 or 2; m the row's
 * float64 at center, or 0 when center is 0) to the row's four float64 accumulators at acc (column
 * j % 4 into the j % 4-th, the last n % 4 values into the first), in doubles exactly as
 * src/kernels/reduce.ts sums a row, so that summing a row in pieces of multiples of 4 gives its sums.
 */
export function rowSumsF32 (rows: i32, n: i32, x: usize, power: i32, center: usize, acc: usize): void {
  const n4 = n & ~3
  for (let r: i32 = 0; r < rows; r++) {
    const row = x + ((<usize>r * <usize>n) << 2)
    const a = acc + (<usize>r << 5)
    const m = center === 0 ? 0.0 : load<f64>(center + (<usize>r << 3))
    const mv = f64x2.splat(m)
    let s01 = v128.load(a)
    let s23 = v128.load(a, 16)
    if (power === 1) {
      for (let j: i32 = 0; j < n4; j += 4) {
        const v = v128.load(row + (<usize>j << 2))
        s01 = f64x2.add(s01, f64x2.sub(f64x2.promote_low_f32x4(v), mv))
        s23 = f64x2.add(s23, f64x2.sub(f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1)), mv))
      }
    } else {
      for (let j: i32 = 0; j < n4; j += 4) {
        const v = v128.load(row + (<usize>j << 2))
        const d01 = f64x2.sub(f64x2.promote_low_f32x4(v), mv)
        const d23 = f64x2.sub(f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1)), mv)
        s01 = f64x2.add(s01, f64x2.mul(d01, d01))
        s23 = f64x2.add(s23, f64x2.mul(d23, d23))
      }
    }
    let s0 = f64x2.extract_lane(s01, 0)
    for (let j: i32 = n4; j < n; j++) {
      const d = <f64>load<f32>(row + (<usize>j << 2)) - m
      s0 += power === 1 ? d : d * d
    }
    v128.store(a, f64x2.replace_lane(s01, 0, s0))
    v128.store(a, s23, 16)
  }
}

/**
 * For `rows` rows of w float32 values at x, adds (x[r,c] − m[c])^power (power 1 or 2; m the float64
 * values at center, or 0 when center is 0) to the float64 accumulator acc[c], row after row: the
 * sums of columns in the order src/kernels/reduce.ts adds them, so the same sums.
 */
export function colSumsF32 (rows: i32, w: i32, x: usize, power: i32, center: usize, acc: usize): void {
  const w4 = w & ~3
  for (let r: i32 = 0; r < rows; r++) {
    const row = x + ((<usize>r * <usize>w) << 2)
    for (let c: i32 = 0; c < w4; c += 4) {
      const v = v128.load(row + (<usize>c << 2))
      let d01 = f64x2.promote_low_f32x4(v)
      let d23 = f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1))
      if (center !== 0) {
        const m = center + (<usize>c << 3)
        d01 = f64x2.sub(d01, v128.load(m))
        d23 = f64x2.sub(d23, v128.load(m, 16))
      }
      if (power === 2) {
        d01 = f64x2.mul(d01, d01)
        d23 = f64x2.mul(d23, d23)
      }
      const a = acc + (<usize>c << 3)
      v128.store(a, f64x2.add(v128.load(a), d01))
      v128.store(a, f64x2.add(v128.load(a, 16), d23), 16)
    }
    for (let c: i32 = w4; c < w; c++) {
      const d = <f64>load<f32>(row + (<usize>c << 2)) - (center === 0 ? 0.0 : load<f64>(center + (<usize>c << 3)))
      const a = acc + (<usize>c << 3)
      store<f64>(a, load<f64>(a) + (power === 1 ? d : d * d))
    }
  }
}

/**
 * Each of `rows` rows of n float32 values at x: its maximum (max 1) or minimum as a float64 at out[r],
 * by WebAssembly's f32.max and f32.min (NaN when any value is NaN; +0 over −0 for the maximum, −0 for
 * the minimum), so in any order the same value; an empty row gives −∞ (minimum: +∞).
 */
export function rowExtremesF32 (rows: i32, n: i32, x: usize, max: i32, out: usize): void {
  const n16 = n & ~15
  const n4 = n & ~3
  const start: f32 = max !== 0 ? -Infinity : Infinity
  for (let r: i32 = 0; r < rows; r++) {
    const row = x + ((<usize>r * <usize>n) << 2)
    // four accumulators: each f32x4.max waits on the one before it
    let m0 = f32x4.splat(start)
    let m1 = m0
    let m2 = m0
    let m3 = m0
    if (max !== 0) {
      for (let j: i32 = 0; j < n16; j += 16) {
        const p = row + (<usize>j << 2)
        m0 = f32x4.max(m0, v128.load(p))
        m1 = f32x4.max(m1, v128.load(p, 16))
        m2 = f32x4.max(m2, v128.load(p, 32))
        m3 = f32x4.max(m3, v128.load(p, 48))
      }
      for (let j: i32 = n16; j < n4; j += 4) m0 = f32x4.max(m0, v128.load(row + (<usize>j << 2)))
    } else {
      for (let j: i32 = 0; j < n16; j += 16) {
        const p = row + (<usize>j << 2)
        m0 = f32x4.min(m0, v128.load(p))
        m1 = f32x4.min(m1, v128.load(p, 16))
        m2 = f32x4.min(m2, v128.load(p, 32))
        m3 = f32x4.min(m3, v128.load(p, 48))
      }
      for (let j: i32 = n16; j < n4; j += 4) m0 = f32x4.min(m0, v128.load(row + (<usize>j << 2)))
    }
    const mv = max !== 0 ? f32x4.max(f32x4.max(m0, m1), f32x4.max(m2, m3)) : f32x4.min(f32x4.min(m0, m1), f32x4.min(m2, m3))
    let m: f32 = start
    for (let l: i32 = 0; l < 4; l++) {
      const v = l === 0 ? f32x4.extract_lane(mv, 0) : l === 1 ? f32x4.extract_lane(mv, 1) : l === 2 ? f32x4.extract_lane(mv, 2) : f32x4.extract_lane(mv, 3)
      m = max !== 0 ? <f32>Math.max(m, v) : <f32>Math.min(m, v)
    }
    for (let j: i32 = n4; j < n; j++) {
      const v = load<f32>(row + (<usize>j << 2))
      m = max !== 0 ? <f32>Math.max(m, v) : <f32>Math.min(m, v)
    }
    store<f64>(out + (<usize>r << 3), <f64>m)
  }
}

/**
 * For `rows` rows of w float32 values at x, folds each column into the float32 running maximum (max 1)
 * or minimum at acc[c], by f32x4.max / f32x4.min (rowExtremesF32's rules).
 */
export function colExtremesF32 (rows: i32, w: i32, x: usize, max: i32, acc: usize): void {
  const w4 = w & ~3
  for (let r: i32 = 0; r < rows; r++) {
    const row = x + ((<usize>r * <usize>w) << 2)
    if (max !== 0) {
      for (let c: i32 = 0; c < w4; c += 4) {
        const a = acc + (<usize>c << 2)
        v128.store(a, f32x4.max(v128.load(a), v128.load(row + (<usize>c << 2))))
      }
    } else {
      for (let c: i32 = 0; c < w4; c += 4) {
        const a = acc + (<usize>c << 2)
        v128.store(a, f32x4.min(v128.load(a), v128.load(row + (<usize>c << 2))))
      }
    }
    for (let c: i32 = w4; c < w; c++) {
      const a = acc + (<usize>c << 2)
      const v = load<f32>(row + (<usize>c << 2))
      store<f32>(a, max !== 0 ? <f32>Math.max(load<f32>(a), v) : <f32>Math.min(load<f32>(a), v))
    }
  }
}

// ---- layer_norm ----

/** The float32 rounding of lo (lanes 0, 1) and hi (lanes 2, 3), as one f32x4. */
function demote2 (lo: v128, hi: v128): v128 {
  return i32x4.shuffle(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5)
}

/**
 * layer_norm of `rows` rows of n float32 values at x, in doubles exactly as src/kernels/layer-norm.ts
 * computes it (the same sums in the same order, so the same values): each row's mean and biased
 * variance from its values less its first, then (x − mean)·rstd·w[j] + b[j] rounded to float32 at o
 * (o may be x). w and b are n float32 values each, or 0 when absent.
 */
export function layerNormF32 (rows: i32, n: i32, x: usize, w: usize, b: usize, eps: f64, o: usize): void {
  const n4 = n & ~3
  for (let r: i32 = 0; r < rows; r++) {
    const row = x + ((<usize>r * <usize>n) << 2)
    const out = o + ((<usize>r * <usize>n) << 2)
    const x0 = <f64>load<f32>(row)
    const c = f64x2.splat(x0)
    // lanes: s01 holds the sums of columns j % 4 = 0 and 1, s23 of 2 and 3 (the loop's four accumulators)
    let s01 = f64x2.splat(0)
    let s23 = f64x2.splat(0)
    let q01 = f64x2.splat(0)
    let q23 = f64x2.splat(0)
    for (let j: i32 = 0; j < n4; j += 4) {
      const v = v128.load(row + (<usize>j << 2))
      const d01 = f64x2.sub(f64x2.promote_low_f32x4(v), c)
      const d23 = f64x2.sub(f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1)), c)
      s01 = f64x2.add(s01, d01)
      s23 = f64x2.add(s23, d23)
      q01 = f64x2.add(q01, f64x2.mul(d01, d01))
      q23 = f64x2.add(q23, f64x2.mul(d23, d23))
    }
    let s0 = f64x2.extract_lane(s01, 0)
    let q0 = f64x2.extract_lane(q01, 0)
    for (let j: i32 = n4; j < n; j++) {
      const d = <f64>load<f32>(row + (<usize>j << 2)) - x0
      s0 += d
      q0 += d * d
    }
    const dm = ((s0 + f64x2.extract_lane(s01, 1)) + (f64x2.extract_lane(s23, 0) + f64x2.extract_lane(s23, 1))) / <f64>n
    const variance = max<f64>(0, ((q0 + f64x2.extract_lane(q01, 1)) + (f64x2.extract_lane(q23, 0) + f64x2.extract_lane(q23, 1))) / <f64>n - dm * dm)
    const mean = x0 + dm
    const rstd = 1 / sqrt<f64>(variance + eps)
    const m = f64x2.splat(mean)
    const s = f64x2.splat(rstd)
    for (let j: i32 = 0; j < n4; j += 4) {
      const off = <usize>j << 2
      const v = v128.load(row + off)
      let y01 = f64x2.mul(f64x2.sub(f64x2.promote_low_f32x4(v), m), s)
      let y23 = f64x2.mul(f64x2.sub(f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1)), m), s)
      if (w !== 0) {
        const wv = v128.load(w + off)
        y01 = f64x2.mul(y01, f64x2.promote_low_f32x4(wv))
        y23 = f64x2.mul(y23, f64x2.promote_low_f32x4(i32x4.shuffle(wv, wv, 2, 3, 0, 1)))
      }
      if (b !== 0) {
        const bv = v128.load(b + off)
        y01 = f64x2.add(y01, f64x2.promote_low_f32x4(bv))
        y23 = f64x2.add(y23, f64x2.promote_low_f32x4(i32x4.shuffle(bv, bv, 2, 3, 0, 1)))
      }
      v128.store(out + off, demote2(y01, y23))
    }
    for (let j: i32 = n4; j < n; j++) {
      const off = <usize>j << 2
      let y = (<f64>load<f32>(row + off) - mean) * rstd
      if (w !== 0) y *= <f64>load<f32>(w + off)
      if (b !== 0) y += <f64>load<f32>(b + off)
      store<f32>(out + off, <f32>y)
    }
  }
}

// ---- JSON text ----

export { formatRowsF64 } from './format'
export { scanRows, spansFound } from './parse'
