/**
 * The gradients of conv2d (cross-correlation with stride, padding, dilation and groups), per
 * image and group on the forward's column matrix: with colsT the [OH·OW, C/groups·kh·kw] patches
 * of the image and G the group's [K/groups, OH·OW] output gradient, dkernel += G·colsT and the
 * patches' gradient Gᵀ·kernel is added back onto the image (col2im): two GEMMs on the engine (or
 * WebAssembly for small work). dbias is Σ G. NHWC operands are made planar first and the
 * gradients put back in their layout; padded taps get no gradient.
 */
import type { BackwardTask, GradOutputs } from '../../operations/backward.js'
import type { Conv2dTask } from '../../worker/tasks.js'
import { conv2d } from '../conv2d.js'
import { gemm } from '../matmul.js'
import { allocate, type FloatArray } from '../types.js'
import { addInto, transposeBlocks } from './common.js'

/** [N, A, B, C] → [N, C, A, B] (NHWC → NCHW), into out. */
function permute (x: FloatArray, N: number, A: number, Bd: number, C: number, out: FloatArray): FloatArray {
  // x as N blocks of [A·B, C], each transposed
  for (let n = 0; n < N; n++) out.set(transposeBlocks(x, n * A * Bd * C, 1, A * Bd, C), n * A * Bd * C)
  return out
}

export function conv2dBackward ({ dtype, forward, g, wrt }: BackwardTask<Conv2dTask>, outs: GradOutputs): void {
  const { input, kernel, bias, info } = forward
  if (outs.result !== undefined) conv2d(outs.result, input, kernel, bias, info)
  const { N, C, H, W, K, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft, groups } = info
  const nhwc = info.layout === 'NHWC'
  const dInputOut = wrt.includes('input') ? outs['grads.input'] : undefined
  const dKernelOut = wrt.includes('kernel') ? outs['grads.kernel'] : undefined
  const dBias = wrt.includes('bias') ? outs['grads.bias'] : undefined
  const P = OH * OW
  const Cg = C / groups
  const Kg = K / groups
  const CKK = Cg * kh * kw
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
  if ((dInputOut === undefined && dKernelOut === undefined) || P === 0 || N === 0 || CKK === 0 || Kg === 0) return
  const X = nhwc ? permute(input, N, H, W, C, allocate(dtype, input.length)) : input
  // the kernel as [K, C/groups·kh·kw], columns in the order (c, i, j) of the patches
  const hwio = (k: number, c: number, i: number, j: number): number => ((i * kw + j) * Cg + c) * K + k
  let Wc = kernel
  if (nhwc) {
    Wc = allocate(dtype, K * CKK)
    for (let k = 0; k < K; k++) {
      for (let c = 0; c < Cg; c++) for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) Wc[k * CKK + (c * kh + i) * kw + j] = kernel[hwio(k, c, i, j)]
    }
  }
  const dX = dInputOut === undefined ? null : nhwc ? allocate(dtype, input.length) : dInputOut
  const dW = dKernelOut === undefined ? null : nhwc ? allocate(dtype, K * CKK) : dKernelOut
  const colsT = allocate(dtype, P * CKK)
  const dCols = dX === null ? null : allocate(dtype, P * CKK)
  const scratch = dW === null || N === 1 ? null : allocate(dtype, Kg * CKK)
  for (let n = 0; n < N; n++) {
    for (let gi = 0; gi < groups; gi++) {
      const xBase = (n * C + gi * Cg) * H * W
      const gBase = (n * K + gi * Kg) * P
      const wBase = gi * Kg * CKK
      if (dW !== null) {
        im2colT(colsT, X, xBase, Cg, H, W, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft)
        if (scratch === null) {
          gemm(dW, wBase, G, gBase, colsT, 0, Kg, P, CKK)
        } else {
          gemm(scratch, 0, G, gBase, colsT, 0, Kg, P, CKK)
          addInto(dW, wBase, scratch, 0, Kg * CKK)
        }
      }
      if (dX !== null && dCols !== null) {
        gemm(dCols, 0, transposeBlocks(G, gBase, 1, Kg, P), 0, Wc, wBase, P, Kg, CKK)
        col2imT(dX, xBase, dCols, Cg, H, W, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft)
      }
    }
  }
  if (nhwc && dX !== null && dInputOut !== undefined) {
    // [N, C, H, W] → [N, H, W, C]
    for (let n = 0; n < N; n++) dInputOut.set(transposeBlocks(dX, n * C * H * W, 1, C, H * W), n * C * H * W)
  }
  if (nhwc && dW !== null && dKernelOut !== undefined) {
    for (let k = 0; k < K; k++) {
      for (let c = 0; c < Cg; c++) for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) dKernelOut[hwio(k, c, i, j)] = dW[k * CKK + (c * kh + i) * kw + j]
    }
  }
}

/** colsT[p, (c·kh + i)·kw + j] = x[c, oy·sh − padTop + i·dh, ox·sw − padLeft + j·dw] (0 in the padding), p = oy·OW + ox. */
function im2colT (
  colsT: FloatArray, x: FloatArray, xBase: number, Cg: number, H: number, W: number, kh: number, kw: number,
  OH: number, OW: number, sh: number, sw: number, dh: number, dw: number, padTop: number, padLeft: number
): void {
  const CKK = Cg * kh * kw
  for (let oy = 0; oy < OH; oy++) {
    for (let ox = 0; ox < OW; ox++) {
      const row = (oy * OW + ox) * CKK
      let col = 0
      for (let c = 0; c < Cg; c++) {
        const plane = xBase + c * H * W
        for (let i = 0; i < kh; i++) {
          const y = oy * sh - padTop + i * dh
          if (y < 0 || y >= H) {
            colsT.fill(0, row + col, row + col + kw)
            col += kw
            continue
          }
          const line = plane + y * W
          for (let j = 0; j < kw; j++) {
            const xx = ox * sw - padLeft + j * dw
            colsT[row + col++] = xx < 0 || xx >= W ? 0 : x[line + xx]
          }
        }
      }
    }
  }
}

/** The transpose of im2colT: each patch entry's gradient added onto the image pixel it came from. */
function col2imT (
  dx: FloatArray, xBase: number, colsT: FloatArray, Cg: number, H: number, W: number, kh: number, kw: number,
  OH: number, OW: number, sh: number, sw: number, dh: number, dw: number, padTop: number, padLeft: number
): void {
  const CKK = Cg * kh * kw
  for (let oy = 0; oy < OH; oy++) {
    for (let ox = 0; ox < OW; ox++) {
      const row = (oy * OW + ox) * CKK
      let col = 0
      for (let c = 0; c < Cg; c++) {
        const plane = xBase + c * H * W
        for (let i = 0; i < kh; i++) {
          const y = oy * sh - padTop + i * dh
          if (y < 0 || y >= H) {
            col += kw
            continue
          }
          const line = plane + y * W
          for (let j = 0; j < kw; j++) {
            const xx = ox * sw - padLeft + j * dw
            if (xx >= 0 && xx < W) dx[line + xx] += colsT[row + col]
            col++
          }
        }
      }
    }
  }
}
