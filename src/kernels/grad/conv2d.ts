/**
 * The gradients of conv2d (cross-correlation with stride, padding, dilation and groups):
 * - dkernel: per image and group, the output gradient G [K/groups, OH·OW] times the transposed
 *   column matrix cols [C/groups·kh·kw, OH·OW] of the image's patches (one GEMM, the
 *   transposition fused into it on the engine);
 * - dinput: the transposed convolution: in float32 the engine's ConvTranspose where the forward
 *   would use the engine; else computed by the forward kernel: the output gradient spread by the stride (zeros between),
 *   convolved with the kernel flipped and its channels swapped, padded by the dilated kernel's
 *   extent less the forward padding. Padding wider than the dilated kernel, which that cannot
 *   express, takes the column matrix instead: kernelᵀ·G added back onto the image (col2im);
 * - dbias: Σ of the output gradient over images and positions.
 * NHWC operands are made planar first and the gradients put back in their layout.
 */
import { conv2d, type Conv2dInfo, type Conv2dOperands } from '../conv2d.js'
import { convTransposable, engineConvTranspose, useEngine } from '../ort/kernels.js'
import { checkElements } from '../shape.js'
import { allocate, type DType, type FloatArray, type GradArrays, kernelDtype, type Limits, type WireDType } from '../types.js'
import { addInto, productT, transposeBlocks } from './common.js'

/** [N, A, B, C] → [N, C, A, B] (NHWC → NCHW), into out. */
function permute (x: FloatArray, N: number, A: number, Bd: number, C: number, out: FloatArray): FloatArray {
  for (let n = 0; n < N; n++) out.set(transposeBlocks(x, n * A * Bd * C, 1, A * Bd, C), n * A * Bd * C)
  return out
}

/** The padding below and right of the input that the forward's last window reaches (negative: rows it never reads). */
function farPadding (info: Conv2dInfo): [number, number] {
  const { H, W, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft } = info
  return [(OH - 1) * sh + dh * (kh - 1) + 1 - H - padTop, (OW - 1) * sw + dw * (kw - 1) + 1 - W - padLeft]
}

/** Whether the transposed convolution expresses this forward: no side padded wider than the dilated kernel. */
function transposable (info: Conv2dInfo): boolean {
  const eh = info.dh * (info.kh - 1) + 1
  const ew = info.dw * (info.kw - 1) + 1
  const [pb, pr] = farPadding(info)
  return info.padTop <= eh - 1 && info.padLeft <= ew - 1 && pb <= eh - 1 && pr <= ew - 1
}

/** The intermediates of the backward, counted against MAX_ELEMENTS before computing. */
export function conv2dBackwardCheck (info: Conv2dInfo, wrt: string[], limits: Limits): void {
  const { N, K, H, W, kh, kw, OH, OW, sh, sw, groups } = info
  if (info.outElements === 0) return
  if (wrt.includes('input') && transposable(info)) {
    checkElements(N * K * ((OH - 1) * sh + 1) * ((OW - 1) * sw + 1), 'the conv2d output gradient spread by the stride', limits)
    checkElements(K / groups * kh * kw * H * W, 'the conv2d input gradient\'s column buffer (K/groups·kh·kw x H·W)', limits)
  }
  if (wrt.includes('kernel')) checkElements(N * OH * OW * kh * kw, 'the conv2d kernel gradient\'s column buffer (N·OH·OW x kh·kw)', limits)
}

export function conv2dBackward (wire: WireDType, forward: Conv2dOperands, g: FloatArray, outs: GradArrays<'input' | 'kernel' | 'bias'>): void {
  const dtype = kernelDtype(wire) // (float16 and bfloat16 are computed in float32)
  const { input, kernel, bias, info } = forward
  if (outs.result !== undefined) conv2d(outs.result, input, kernel, bias, info)
  const { N, C, H, W, K, kh, kw, OH, OW, groups } = info
  const nhwc = info.layout === 'NHWC'
  const { input: dInput, kernel: dKernel, bias: dBias } = outs.grads
  const P = OH * OW
  // planar gradient [N, K, OH, OW]
  const G = nhwc ? permute(g, N, OH, OW, K, allocate(dtype, g.length)) : g
  if (dBias !== undefined) {
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        const o = (n * K + k) * P
        let s = 0
        for (let p = 0; p < P; p++) s += G[o + p]
        dBias[k] += s
      }
    }
  }
  if ((dInput === undefined && dKernel === undefined) || P === 0 || N === 0 || C === 0 || K === 0) return
  const X = nhwc ? permute(input, N, H, W, C, allocate(dtype, input.length)) : input
  // the kernel as [K, C/groups, kh, kw]
  const Cg = C / groups
  const hwio = (k: number, c: number, i: number, j: number): number => ((i * kw + j) * Cg + c) * K + k
  let Wk = kernel
  if (nhwc) {
    Wk = allocate(dtype, kernel.length)
    for (let k = 0; k < K; k++) {
      for (let c = 0; c < Cg; c++) for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) Wk[((k * Cg + c) * kh + i) * kw + j] = kernel[hwio(k, c, i, j)]
    }
  }
  const dX = dInput === undefined ? null : nhwc ? allocate(dtype, input.length) : dInput
  const dW = dKernel === undefined ? null : nhwc ? allocate(dtype, kernel.length) : dKernel
  const transposed = transposable(info)
  if (dX !== null && dX instanceof Float32Array && G instanceof Float32Array && Wk instanceof Float32Array &&
    useEngine(info.flops / 2) && convTransposable(info)) {
    engineConvTranspose(dX, G, Wk, info)
    if (dW !== null) columnGradients(null, dW, X, G, Wk, info, dtype)
  } else {
    if (dX !== null && transposed) inputGradient(dX, G, Wk, info, dtype)
    if (dW !== null || (dX !== null && !transposed)) columnGradients(transposed ? null : dX, dW, X, G, Wk, info, dtype)
  }
  if (nhwc && dX !== null && dInput !== undefined) {
    for (let n = 0; n < N; n++) dInput.set(transposeBlocks(dX, n * C * H * W, 1, C, H * W), n * C * H * W)
  }
  if (nhwc && dW !== null && dKernel !== undefined) {
    for (let k = 0; k < K; k++) {
      for (let c = 0; c < Cg; c++) for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) dKernel[hwio(k, c, i, j)] = dW[((k * Cg + c) * kh + i) * kw + j]
    }
  }
}

/** dX [N, C, H, W] = the transposed convolution of G [N, K, OH, OW] with W [K, C/groups, kh, kw]. */
function inputGradient (dX: FloatArray, G: FloatArray, Wk: FloatArray, info: Conv2dInfo, dtype: DType): void {
  const { N, C, H, W, K, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft, groups } = info
  const Cg = C / groups
  const Kg = K / groups
  // G spread by the stride: [N, K, (OH-1)·sh + 1, (OW-1)·sw + 1], zeros between
  const OHu = (OH - 1) * sh + 1
  const OWu = (OW - 1) * sw + 1
  let Gu = G
  if (sh !== 1 || sw !== 1) {
    Gu = allocate(dtype, N * K * OHu * OWu)
    for (let p = 0; p < N * K; p++) {
      for (let y = 0; y < OH; y++) for (let x = 0; x < OW; x++) Gu[(p * OHu + y * sh) * OWu + x * sw] = G[(p * OH + y) * OW + x]
    }
  }
  // the kernel flipped, its channels swapped within each group: [C, K/groups, kh, kw]
  const Wt = allocate(dtype, C * Kg * kh * kw)
  for (let gi = 0; gi < groups; gi++) {
    for (let c = 0; c < Cg; c++) {
      for (let kk = 0; kk < Kg; kk++) {
        const src = ((gi * Kg + kk) * Cg + c) * kh * kw
        const dst = ((gi * Cg + c) * Kg + kk) * kh * kw
        for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) Wt[dst + (kh - 1 - i) * kw + (kw - 1 - j)] = Wk[src + i * kw + j]
      }
    }
  }
  conv2d(dX, Gu, Wt, null, { layout: 'NCHW', batched: true, N, C: K, H: OHu, W: OWu, K: C, kh, kw, OH: H, OW: W, sh: 1, sw: 1, dh, dw, padTop: dh * (kh - 1) - padTop, padLeft: dw * (kw - 1) - padLeft, groups, hasBias: false, outShape: [N, C, H, W], outElements: N * C * H * W, flops: 2 * N * C * H * W * Kg * kh * kw })
}

/**
 * dW (and, for padding the transposed convolution cannot express, dX), planar, from the column
 * matrix of each image and group: cols [C/groups·kh·kw, OH·OW]; dW += G·colsᵀ; dX += col2im(Wᵀ·G).
 */
function columnGradients (dX: FloatArray | null, dW: FloatArray | null, X: FloatArray, G: FloatArray, Wk: FloatArray, info: Conv2dInfo, dtype: DType): void {
  const { N, C, H, W, K, kh, kw, OH, OW, groups } = info
  const P = OH * OW
  const Cg = C / groups
  const Kg = K / groups
  const CKK = Cg * kh * kw
  const cols = dW === null ? null : columns(dtype, CKK * P, 0)
  const dCols = dX === null ? null : columns(dtype, CKK * P, 1)
  const scratch = dW === null || N === 1 ? null : allocate(dtype, Kg * CKK)
  for (let n = 0; n < N; n++) {
    for (let gi = 0; gi < groups; gi++) {
      const xBase = (n * C + gi * Cg) * H * W
      const gBase = (n * K + gi * Kg) * P
      const wBase = gi * Kg * CKK
      if (dW !== null && cols !== null) {
        im2col(cols, X, xBase, Cg, info)
        if (scratch === null) {
          productT(dW, wBase, G, gBase, false, cols, 0, true, 1, Kg, P, CKK)
        } else {
          productT(scratch, 0, G, gBase, false, cols, 0, true, 1, Kg, P, CKK)
          addInto(dW, wBase, scratch, 0, Kg * CKK)
        }
      }
      if (dX !== null && dCols !== null) {
        productT(dCols, 0, Wk, wBase, true, G, gBase, false, 1, CKK, Kg, P)
        col2im(dX, xBase, dCols, Cg, info)
      }
    }
  }
}

/** Column matrices of at most this many elements are kept for the thread's next request. */
const KEEP_COLUMNS = 1 << 22
const kept: Array<FloatArray | null> = [null, null]

/**
 * A column matrix of n elements (every element is written before it is read): the thread's kept one
 * when it is large enough and of the type, else a new one, kept when not too large. A fresh
 * multi-megabyte array costs its page faults on every request.
 */
function columns (dtype: DType, n: number, slot: number): FloatArray {
  const k = kept[slot]
  if (k !== null && k.length >= n && (k instanceof Float32Array) === (dtype !== 'float64')) return k.subarray(0, n)
  const fresh = allocate(dtype, n)
  if (n <= KEEP_COLUMNS) kept[slot] = fresh
  return fresh
}

/** The output columns [x0, x1) whose tap at horizontal offset `off` falls inside the image. */
function inside (off: number, W: number, OW: number, sw: number): [number, number] {
  const x0 = Math.min(OW, Math.max(0, Math.ceil(-off / sw)))
  const x1 = Math.max(x0, Math.min(OW, Math.floor((W - 1 - off) / sw) + 1))
  return [x0, x1]
}

/** cols[(c·kh + i)·kw + j, oy·OW + ox] = x[c, oy·sh − padTop + i·dh, ox·sw − padLeft + j·dw], 0 in the padding. */
function im2col (cols: FloatArray, x: FloatArray, xBase: number, Cg: number, info: Conv2dInfo): void {
  const { H, W, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft } = info
  let row = 0
  for (let c = 0; c < Cg; c++) {
    const plane = xBase + c * H * W
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const off = j * dw - padLeft
        const [x0, x1] = inside(off, W, OW, sw)
        for (let oy = 0; oy < OH; oy++) {
          const y = oy * sh - padTop + i * dh
          const o = (row * OH + oy) * OW
          if (y < 0 || y >= H) {
            cols.fill(0, o, o + OW)
            continue
          }
          const line = plane + y * W + off
          if (x0 > 0) cols.fill(0, o, o + x0)
          if (sw === 1) {
            cols.set(x.subarray(line + x0, line + x1), o + x0)
          } else {
            for (let ox = x0; ox < x1; ox++) cols[o + ox] = x[line + ox * sw]
          }
          if (x1 < OW) cols.fill(0, o + x1, o + OW)
        }
        row++
      }
    }
  }
}

/** The transpose of im2col: each column entry's gradient added onto the image pixel it came from. */
function col2im (dx: FloatArray, xBase: number, cols: FloatArray, Cg: number, info: Conv2dInfo): void {
  const { H, W, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft } = info
  let row = 0
  for (let c = 0; c < Cg; c++) {
    const plane = xBase + c * H * W
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const off = j * dw - padLeft
        const [x0, x1] = inside(off, W, OW, sw)
        for (let oy = 0; oy < OH; oy++) {
          const y = oy * sh - padTop + i * dh
          if (y < 0 || y >= H) continue
          const line = plane + y * W + off
          const o = (row * OH + oy) * OW
          for (let ox = x0; ox < x1; ox++) dx[line + ox * sw] += cols[o + ox]
        }
        row++
      }
    }
  }
}
