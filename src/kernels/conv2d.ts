/**
 * 2-D convolution with torch.nn.functional.conv2d semantics: cross-correlation (no kernel
 * flip), stride, zero padding ("valid", "same" or explicit), dilation and groups, in NCHW
 * (kernel [K, C/groups, kh, kw]) or NHWC (kernel [kh, kw, C/groups, K], TensorFlow's HWIO).
 *
 * `conv2dInfo` validates everything from shapes and options alone (before any allocation);
 * `conv2d` is the pure loop, trusting the info it is given. Pure: no node:* imports.
 */
import { invalidArgument, shapeMismatch } from '../errors.js'
import { checkElements, checkFlops, elementCount, formatShape, isIntAtLeast, pairOption, show } from './shape.js'
import type { FloatArray, Limits } from './types.js'
import { allFinite, engineConv2d, useEngine } from './ort/kernels.js'
import { begin, computesInF32, end } from './wasm/runtime.js'

export interface Conv2dOperands { input: FloatArray, kernel: FloatArray, bias: FloatArray | null, info: Conv2dInfo }

export interface Conv2dParams {
  /** int or [sh, sw]; default 1 */
  stride?: number | number[]
  /** default 'valid'; int or [ph, pw] (symmetric per axis) */
  padding?: 'valid' | 'same' | number | number[]
  /** int or pair; default 1 */
  dilation?: number | number[]
  /** default 1 */
  groups?: number
  /** default 'NCHW' */
  layout?: 'NCHW' | 'NHWC'
}

export interface Conv2dInfo {
  layout: 'NCHW' | 'NHWC'
  /** false when the input was rank 3 (unbatched) */
  batched: boolean
  N: number
  C: number
  H: number
  W: number
  K: number
  kh: number
  kw: number
  OH: number
  OW: number
  sh: number
  sw: number
  dh: number
  dw: number
  /** bottom/right padding are implied by OH/OW */
  padTop: number
  padLeft: number
  groups: number
  hasBias: boolean
  /** [N,K,OH,OW] / [K,OH,OW] (NCHW) or [N,OH,OW,K] / [OH,OW,K] (NHWC) */
  outShape: number[]
  outElements: number
  /** 2*N*K*OH*OW*(C/groups)*kh*kw */
  flops: number
}

export function conv2dInfo (
  inputShape: number[],
  kernelShape: number[],
  biasShape: number[] | null,
  params: Conv2dParams,
  limits: Limits
): Conv2dInfo {
  // Options on their own.
  const layoutOpt: unknown = params.layout
  if (layoutOpt !== undefined && layoutOpt !== 'NCHW' && layoutOpt !== 'NHWC') {
    throw invalidArgument(`layout must be "NCHW" or "NHWC", got ${show(layoutOpt)}`)
  }
  const layout: 'NCHW' | 'NHWC' = layoutOpt ?? 'NCHW'
  const [sh, sw] = pairOption(params.stride, 1, 1,
    'stride must be a positive integer or a pair [sh, sw] of positive integers')
  const [dh, dw] = pairOption(params.dilation, 1, 1,
    'dilation must be a positive integer or a pair [dh, dw] of positive integers')
  const paddingOpt: unknown = params.padding
  const same = paddingOpt === 'same'
  let ph = 0
  let pw = 0
  if (!same && paddingOpt !== 'valid') {
    [ph, pw] = pairOption(paddingOpt, 0, 0,
      'padding must be "valid", "same", a non-negative integer or a pair [ph, pw] of non-negative integers')
  }
  const groupsOpt: unknown = params.groups
  if (groupsOpt !== undefined && !isIntAtLeast(groupsOpt, 1)) {
    throw invalidArgument(`groups must be a positive integer, got ${show(groupsOpt)}`)
  }
  const groups = groupsOpt ?? 1
  if (same && (sh !== 1 || sw !== 1)) {
    throw invalidArgument(`padding "same" needs stride 1, got stride ${show(params.stride)}`)
  }

  // Ranks, then the operands' own sizes.
  const nchw = layout === 'NCHW'
  const rank = inputShape.length
  if (rank !== 3 && rank !== 4) {
    const want = nchw ? 'rank 4 [N,C,H,W] or rank 3 [C,H,W]' : 'rank 4 [N,H,W,C] or rank 3 [H,W,C]'
    throw shapeMismatch(`input must have ${want} (layout ${layout}), got input ${formatShape(inputShape)} of rank ${rank}`)
  }
  if (kernelShape.length !== 4) {
    const want = nchw ? '[K,C/groups,kh,kw]' : '[kh,kw,C/groups,K]'
    throw shapeMismatch(
      `kernel must have rank 4 ${want} (layout ${layout}), got kernel ${formatShape(kernelShape)} of rank ${kernelShape.length}`
    )
  }
  elementCount(inputShape, 'input', limits)
  elementCount(kernelShape, 'kernel', limits)

  const batched = rank === 4
  const s = batched ? inputShape : [1, ...inputShape]
  const N = s[0]
  const [C, H, W] = nchw ? [s[1], s[2], s[3]] : [s[3], s[1], s[2]]
  const cAxis = nchw ? rank - 3 : rank - 1
  const [K, Ckern, kh, kw] = nchw
    ? [kernelShape[0], kernelShape[1], kernelShape[2], kernelShape[3]]
    : [kernelShape[3], kernelShape[2], kernelShape[0], kernelShape[1]]
  const kAxis = nchw ? 0 : 3
  const kcAxis = nchw ? 1 : 2

  // Operands against each other.
  if (C % groups !== 0) {
    throw invalidArgument(
      `groups=${groups} must divide the input channels: input ${formatShape(inputShape)} has C=${C} at dimension ${cAxis}`
    )
  }
  if (K % groups !== 0) {
    throw invalidArgument(
      `groups=${groups} must divide the output channels: kernel ${formatShape(kernelShape)} has K=${K} at dimension ${kAxis}`
    )
  }
  const Cg = C / groups
  if (Ckern !== Cg) {
    throw shapeMismatch(
      `kernel ${formatShape(kernelShape)} has ${Ckern} channels at dimension ${kcAxis}, but input ` +
      `${formatShape(inputShape)} has C=${C} at dimension ${cAxis} and groups=${groups}, so it needs C/groups=${Cg}`
    )
  }
  if (biasShape !== null && (biasShape.length !== 1 || biasShape[0] !== K)) {
    throw shapeMismatch(
      `bias ${formatShape(biasShape)} must have shape [K]=[${K}] for kernel ${formatShape(kernelShape)} ` +
      `(K at dimension ${kAxis})`
    )
  }
  if (kh === 0 || kw === 0) {
    throw shapeMismatch(
      `kernel ${formatShape(kernelShape)} has a spatial size of ${kh}x${kw}; its height and width must be at least 1`
    )
  }

  // Padding and the output size.
  let padTop = ph
  let padBottom = ph
  let padLeft = pw
  let padRight = pw
  if (same) {
    const th = dh * (kh - 1)
    const tw = dw * (kw - 1)
    padTop = Math.floor(th / 2)
    padBottom = th - padTop
    padLeft = Math.floor(tw / 2)
    padRight = tw - padLeft
  }
  const Hp = H + padTop + padBottom
  const Wp = W + padLeft + padRight
  if (!Number.isSafeInteger(Hp) || !Number.isSafeInteger(Wp)) {
    throw invalidArgument(`padding ${show(paddingOpt)} is too large for input ${formatShape(inputShape)}`)
  }
  const eh = dh * (kh - 1) + 1
  const ew = dw * (kw - 1) + 1
  if (eh > Hp || ew > Wp) {
    const where = eh > Hp && ew > Wp ? 'height and width' : eh > Hp ? 'height' : 'width'
    throw shapeMismatch(
      `kernel ${formatShape(kernelShape)} (dilated ${eh}x${ew}) is larger than the padded input ${Hp}x${Wp} ` +
      `of input ${formatShape(inputShape)} in ${where}`
    )
  }
  const OH = Math.floor((Hp - eh) / sh) + 1
  const OW = Math.floor((Wp - ew) / sw) + 1
  const outShape = nchw
    ? (batched ? [N, K, OH, OW] : [K, OH, OW])
    : (batched ? [N, OH, OW, K] : [OH, OW, K])
  const outElements = elementCount(outShape, 'output', limits)
  // the im2col column buffer of one image and group, (C/groups·kh·kw) x (OH·OW): counted as the
  // contract's intermediate even where a kernel does without it, so refusals do not depend on it
  if (outElements > 0) checkElements(Cg * kh * kw * OH * OW, 'the conv2d column buffer (C/groups·kh·kw x OH·OW)', limits)
  const flops = 2 * N * K * OH * OW * Cg * kh * kw
  checkFlops(flops, `conv2d of input ${formatShape(inputShape)} with kernel ${formatShape(kernelShape)}`, limits)

  return {
    layout,
    batched,
    N,
    C,
    H,
    W,
    K,
    kh,
    kw,
    OH,
    OW,
    sh,
    sw,
    dh,
    dw,
    padTop,
    padLeft,
    groups,
    hasBias: biasShape !== null,
    outShape,
    outElements,
    flops
  }
}

/**
 * Fills `out` (length info.outElements, in info.outShape's layout) with the convolution and
 * returns it. float32 work that is not tiny goes to the native engine's Conv where it is enabled
 * (worker threads), unless a weight is NaN or infinite. Otherwise, and in float64 (the engine has
 * no float64 Conv; im2col with its GEMM measured no faster here than this kernel): an implicit
 * GEMM per image and group on the WebAssembly SIMD kernels (the im2col
 * matrix is read straight from the image while packing, never built; an NHWC image is made planar
 * first). Padded taps read as 0, so
 * a non-finite weight over padding makes the output NaN, as PyTorch's 0 * Infinity does.
 * float32 sums in float32 (in float64 below F32_MIN_MACS multiply-adds), float64 in float64.
 */
export function conv2d (
  out: FloatArray,
  input: FloatArray,
  kernel: FloatArray,
  bias: FloatArray | null,
  info: Conv2dInfo
): FloatArray {
  if (info.outElements === 0) return out
  if (out instanceof Float32Array && input instanceof Float32Array && kernel instanceof Float32Array &&
    (bias === null || bias instanceof Float32Array) && useEngine(info.flops / 2) && allFinite(kernel)) {
    engineConv2d(out, input, kernel, bias, info)
    return out
  }
  const { N, C, H, W, K, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft, groups } = info
  const single = computesInF32(out, info.flops / 2)
  const es = single ? 4 : 8
  const ws = begin()
  try {
    const work = ws.allocWork()
    const pin = ws.alloc(input.length, es)
    const pk = ws.alloc(kernel.length, es)
    const pbias = bias === null ? 0 : ws.alloc(K, es)
    const pout = ws.alloc(info.outElements, es)
    const ptaps = ws.alloc(ws.x.tapBytes(C / groups * kh * kw), 1)
    const planar = info.layout === 'NHWC' ? ws.alloc(C * H * W, es) : 0
    ws.commit()
    ws.view(single, pin, input.length).set(input)
    ws.view(single, pk, kernel.length).set(kernel)
    if (bias !== null) ws.view(single, pbias, K).set(bias.subarray(0, K))
    const fn = single ? ws.x.conv2dF32 : ws.x.conv2dF64
    fn(info.layout === 'NHWC' ? 1 : 0, N, C, H, W, K, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft, groups,
      pin, pk, pbias, pout, work, ptaps, planar)
    out.set(ws.view(single, pout, info.outElements))
  } finally {
    end()
  }
  return out
}
