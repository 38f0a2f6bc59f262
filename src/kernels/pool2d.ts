/**
 * 2-D pooling with torch.nn.functional.max_pool2d / avg_pool2d semantics, NCHW or NHWC, with or
 * without the batch dimension.
 *
 * - Output size per spatial dimension: floor((H + 2p − d·(k − 1) − 1 + (ceilMode ? s − 1 : 0)) / s) + 1,
 *   less one when ceilMode would start the last window past the input and its left padding
 *   (torch's pooling_output_shape).
 * - max: the largest value of the window's positions inside the input (padding never wins); the
 *   first maximal one in row-major order takes the gradient; a NaN wins and a later NaN replaces
 *   it, as in torch's CPU kernel; a window of -Infinity only gives -Infinity from its first position.
 * - avg: the sum over the window's positions inside the input, in doubles, divided by the window's
 *   size clipped to the padded input (countIncludePad, the default) or by its positions inside the
 *   input (countIncludePad false).
 */
import { invalidArgument, shapeMismatch } from '../errors.js'
import { checkFlops, elementCount, formatShape, pairOption, show } from './shape.js'
import type { FloatArray, Limits } from './types.js'

export type PoolKind = 'max' | 'avg'

export interface Pool2dParams {
  kind: PoolKind
  kernelSize: unknown
  stride?: unknown
  padding?: unknown
  dilation?: unknown
  ceilMode?: boolean
  countIncludePad?: boolean
  layout?: unknown
}

export interface Pool2dInfo {
  kind: PoolKind
  N: number
  C: number
  H: number
  W: number
  OH: number
  OW: number
  kh: number
  kw: number
  sh: number
  sw: number
  ph: number
  pw: number
  dh: number
  dw: number
  countIncludePad: boolean
  layout: 'NCHW' | 'NHWC'
  outShape: number[]
  outElements: number
  /** one operation per window position: outElements·kh·kw */
  flops: number
}

export interface Pool2dOperands { input: FloatArray, info: Pool2dInfo }

/** torch's pooling_output_shape for one spatial dimension. */
function outputSize (size: number, k: number, p: number, s: number, d: number, ceilMode: boolean): number {
  const span = size + 2 * p - d * (k - 1) - 1 + (ceilMode ? s - 1 : 0)
  let out = Math.floor(span / s) + 1
  if (ceilMode && (out - 1) * s >= size + p) out--
  return out
}

export function pool2dInfo (shape: number[], params: Pool2dParams, limits: Limits): Pool2dInfo {
  const { kind } = params
  if (kind !== 'max' && kind !== 'avg') throw invalidArgument(`kind must be "max" or "avg", got ${show(kind)}`)
  const layoutOpt: unknown = params.layout
  if (layoutOpt !== undefined && layoutOpt !== 'NCHW' && layoutOpt !== 'NHWC') {
    throw invalidArgument(`layout must be "NCHW" or "NHWC", got ${show(layoutOpt)}`)
  }
  const layout: 'NCHW' | 'NHWC' = layoutOpt ?? 'NCHW'
  if (params.kernelSize === undefined) throw invalidArgument('kernelSize is required: a positive integer or a pair [kh, kw]')
  const [kh, kw] = pairOption(params.kernelSize, 1, 1, 'kernelSize must be a positive integer or a pair [kh, kw] of positive integers')
  const [sh, sw] = pairOption(params.stride, 0, 1, 'stride must be a positive integer or a pair [sh, sw] of positive integers')
  const [ph, pw] = pairOption(params.padding, 0, 0, 'padding must be a non-negative integer or a pair [ph, pw] of non-negative integers')
  const [dh, dw] = pairOption(params.dilation, 1, 1, 'dilation must be a positive integer or a pair [dh, dw] of positive integers')
  if (kind === 'avg' && (dh !== 1 || dw !== 1)) throw invalidArgument(`dilation is for max pooling only (avg_pool2d has none), got ${show(params.dilation)}`)
  if (kind === 'max' && params.countIncludePad !== undefined) throw invalidArgument('countIncludePad is for avg pooling only')
  if (2 * ph > kh || 2 * pw > kw) {
    throw invalidArgument(`padding [${ph}, ${pw}] must be at most half of kernelSize [${kh}, ${kw}]`)
  }
  const strideH = params.stride === undefined ? kh : sh
  const strideW = params.stride === undefined ? kw : sw

  if (shape.length !== 3 && shape.length !== 4) {
    throw shapeMismatch(`input must have rank 3 or 4 (${layout === 'NCHW' ? '[N,C,H,W] or [C,H,W]' : '[N,H,W,C] or [H,W,C]'}), got ${formatShape(shape)}`)
  }
  elementCount(shape, 'input', limits)
  const batched = shape.length === 4
  const dims = batched ? shape : [1, ...shape]
  const [N, C, H, W] = layout === 'NCHW' ? dims : [dims[0], dims[3], dims[1], dims[2]]
  const ceilMode = params.ceilMode === true
  const OH = outputSize(H, kh, ph, strideH, dh, ceilMode)
  const OW = outputSize(W, kw, pw, strideW, dw, ceilMode)
  if (OH < 1 || OW < 1) {
    throw shapeMismatch(`the ${kh}x${kw} window (dilation [${dh}, ${dw}], padding [${ph}, ${pw}]) does not fit the input's ${H}x${W}: the output would be ${OH}x${OW}`)
  }
  const out = layout === 'NCHW' ? [N, C, OH, OW] : [N, OH, OW, C]
  const outShape = batched ? out : out.slice(1)
  const outElements = elementCount(outShape, 'the result', limits)
  const flops = outElements * kh * kw
  checkFlops(flops, `this ${kind} pooling`, limits)
  return {
    kind,
    N,
    C,
    H,
    W,
    OH,
    OW,
    kh,
    kw,
    sh: strideH,
    sw: strideW,
    ph,
    pw,
    dh,
    dw,
    countIncludePad: params.countIncludePad ?? true,
    layout,
    outShape,
    outElements,
    flops
  }
}

/**
 * Calls window(o, base, rows, cols, divisor) for each output element o: its window's positions
 * inside the input are base + r·rowStride + c·colStride for r in rows and c in cols (rows and cols
 * are input coordinates, already clipped), and divisor is avg's.
 */
function forEachWindow (
  info: Pool2dInfo,
  window: (o: number, plane: number, rowStride: number, colStride: number, h0: number, h1: number, w0: number, w1: number, divisor: number) => void
): void {
  const { N, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, layout, countIncludePad, kind } = info
  const nchw = layout === 'NCHW'
  const rowStride = nchw ? W : W * C
  const colStride = nchw ? 1 : C
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const plane = nchw ? (n * C + c) * H * W : n * H * W * C + c
      for (let oh = 0; oh < OH; oh++) {
        for (let ow = 0; ow < OW; ow++) {
          const o = nchw ? ((n * C + c) * OH + oh) * OW + ow : ((n * OH + oh) * OW + ow) * C + c
          let hs = oh * sh - ph
          let ws = ow * sw - pw
          if (kind === 'max') {
            // the window's first position inside the input, along its dilated grid
            const he = Math.min(hs + (kh - 1) * dh + 1, H)
            const we = Math.min(ws + (kw - 1) * dw + 1, W)
            while (hs < 0) hs += dh
            while (ws < 0) ws += dw
            window(o, plane, rowStride, colStride, hs, he, ws, we, 1)
          } else {
            let he = Math.min(hs + kh, H + ph)
            let we = Math.min(ws + kw, W + pw)
            const size = (he - hs) * (we - ws)
            hs = Math.max(hs, 0)
            ws = Math.max(ws, 0)
            he = Math.min(he, H)
            we = Math.min(we, W)
            window(o, plane, rowStride, colStride, hs, he, ws, we, countIncludePad ? size : (he - hs) * (we - ws))
          }
        }
      }
    }
  }
}

/**
 * The input position each max window takes its value from (as an index into input), or -1 for a
 * window whose dilated positions all fall in the padding (its value is -Infinity, with no gradient).
 */
function argmax (x: FloatArray, info: Pool2dInfo, visit: (o: number, at: number) => void): void {
  const { dh, dw } = info
  forEachWindow(info, (o, plane, rowStride, colStride, h0, h1, w0, w1) => {
    if (h0 >= h1 || w0 >= w1) return visit(o, -1)
    let best = -Infinity
    let at = plane + h0 * rowStride + w0 * colStride
    for (let h = h0; h < h1; h += dh) {
      for (let w = w0; w < w1; w += dw) {
        const i = plane + h * rowStride + w * colStride
        const v = x[i]
        if (v > best || Number.isNaN(v)) {
          best = v
          at = i
        }
      }
    }
    visit(o, at)
  })
}

/** Fills out with the pooled input. */
export function pool2d (out: FloatArray, x: FloatArray, info: Pool2dInfo): FloatArray {
  if (info.kind === 'max') {
    argmax(x, info, (o, at) => { out[o] = at < 0 ? -Infinity : x[at] })
    return out
  }
  forEachWindow(info, (o, plane, rowStride, colStride, h0, h1, w0, w1, divisor) => {
    let sum = 0
    for (let h = h0; h < h1; h++) for (let w = w0; w < w1; w++) sum += x[plane + h * rowStride + w * colStride]
    out[o] = sum / divisor
  })
  return out
}

/**
 * The gradient with respect to the input (dx zeroed, of the input's size): max pooling adds each
 * g[o] to its window's chosen position; avg pooling spreads g[o] / divisor over the window's
 * positions inside the input.
 */
export function pool2dInputGrad (dx: FloatArray, x: FloatArray, g: FloatArray, info: Pool2dInfo): void {
  if (info.kind === 'max') {
    // summed in doubles: overlapping windows may choose the same position
    const acc = new Float64Array(dx.length)
    argmax(x, info, (o, at) => { if (at >= 0) acc[at] += g[o] })
    dx.set(acc)
    return
  }
  const acc = new Float64Array(dx.length)
  forEachWindow(info, (o, plane, rowStride, colStride, h0, h1, w0, w1, divisor) => {
    const share = g[o] / divisor
    for (let h = h0; h < h1; h++) for (let w = w0; w < w1; w++) acc[plane + h * rowStride + w * colStride] += share
  })
  dx.set(acc)
}
