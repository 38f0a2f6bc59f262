/**
 * loss: torch.nn.functional.mse_loss, l1_loss, huber_loss, cross_entropy and
 * binary_cross_entropy_with_logits, with reduction mean (the default), sum or none, in doubles.
 *
 * - mse, l1, huber, bce_with_logits: input and target of the same shape (PyTorch broadcasts them
 *   with a warning that it is probably a mistake; here a different shape is SHAPE_MISMATCH).
 * - cross_entropy: input holds logits [N,C] or [N,C,d…]; target holds class indices of shape [N] or
 *   [N,d…] (integral numbers in [0, C)), or probabilities of the input's shape (told apart by shape,
 *   as the ranks differ). labelSmoothing ε mixes the target with the uniform distribution:
 *   t' = (1 − ε)·t + ε/C. Each sample's loss is −Σ_c t'_c·log_softmax(x)_c; mean divides by the number
 *   of samples (N·d…).
 */
import { invalidArgument, shapeMismatch } from '../errors.js'
import { checkFlops, elementCount, formatShape, product, sameShape } from './shape.js'
import { forEachSlice } from './softmax.js'
import type { FloatArray, Limits } from './types.js'

export const LOSS_KINDS = ['mse', 'l1', 'huber', 'cross_entropy', 'bce_with_logits'] as const
export type LossKind = typeof LOSS_KINDS[number]
export const REDUCTIONS = ['mean', 'sum', 'none'] as const
export type Reduction = typeof REDUCTIONS[number]

export interface LossInfo {
  kind: LossKind
  reduction: Reduction
  delta: number
  labelSmoothing: number
  /** cross_entropy: the target holds class indices (else probabilities of the input's shape). */
  indices: boolean
  /** cross_entropy: the logits' layout [N, C, inner], sample s = n·inner + i (else 1 and 1). */
  N: number
  C: number
  inner: number
  /** The losses before the reduction: one per element, or per sample for cross_entropy. */
  samples: number
  outShape: number[]
  outElements: number
  flops: number
}

export interface LossOperands { input: FloatArray, target: FloatArray, info: LossInfo }

export interface LossParams { kind: LossKind, reduction?: Reduction, delta?: number, labelSmoothing?: number }

export function lossInfo (inputShape: number[], targetShape: number[], params: LossParams, limits: Limits): LossInfo {
  const { kind } = params
  if (!(LOSS_KINDS as readonly string[]).includes(kind)) throw invalidArgument(`kind must be one of ${LOSS_KINDS.join(', ')}; got ${JSON.stringify(kind)}`)
  if (params.reduction !== undefined && !(REDUCTIONS as readonly string[]).includes(params.reduction)) {
    throw invalidArgument(`reduction must be one of ${REDUCTIONS.join(', ')}; got ${JSON.stringify(params.reduction)}`)
  }
  const reduction = params.reduction ?? 'mean'
  const delta = params.delta ?? 1
  const labelSmoothing = params.labelSmoothing ?? 0
  if (params.delta !== undefined && kind !== 'huber') throw invalidArgument('delta is for the huber loss only')
  if (params.labelSmoothing !== undefined && kind !== 'cross_entropy') throw invalidArgument('labelSmoothing is for cross_entropy only')
  if (!(delta > 0) || !Number.isFinite(delta)) throw invalidArgument(`delta must be a positive finite number, got ${delta}`)
  if (!(labelSmoothing >= 0 && labelSmoothing <= 1)) throw invalidArgument(`labelSmoothing must be in [0, 1], got ${labelSmoothing}`)
  const inElements = elementCount(inputShape, 'input', limits)
  elementCount(targetShape, 'target', limits)
  let indices = false
  let lossShape = inputShape
  if (kind === 'cross_entropy') {
    if (inputShape.length < 2) throw shapeMismatch(`cross_entropy takes input logits [N,C] or [N,C,d…], got ${formatShape(inputShape)}`)
    lossShape = [inputShape[0], ...inputShape.slice(2)]
    if (sameShape(targetShape, lossShape)) indices = true
    else if (!sameShape(targetShape, inputShape)) {
      throw shapeMismatch(`cross_entropy's target must hold class indices of shape ${formatShape(lossShape)} or probabilities of the input's shape ${formatShape(inputShape)}, got ${formatShape(targetShape)}`)
    }
  } else if (!sameShape(inputShape, targetShape)) {
    throw shapeMismatch(`input ${formatShape(inputShape)} and target ${formatShape(targetShape)} must have the same shape`)
  }
  const ce = kind === 'cross_entropy'
  const N = ce ? inputShape[0] : 1
  const C = ce ? inputShape[1] : 1
  const inner = ce ? product(inputShape.slice(2)) : 1
  const samples = product(lossShape)
  const outShape = reduction === 'none' ? lossShape : []
  const outElements = reduction === 'none' ? samples : 1
  const flops = 6 * inElements + samples
  checkFlops(flops, `this ${kind} loss`, limits)
  return { kind, reduction, delta, labelSmoothing, indices, N, C, inner, samples, outShape, outElements, flops }
}

/** A class index of the target, checked: an integer in [0, C). */
function classOf (t: number, C: number, at: number): number {
  if (!Number.isInteger(t) || t < 0 || t >= C) {
    throw invalidArgument(`target holds class indices (its shape is the input's without the class dimension): target[${at}] = ${t} is not an integer in [0, ${C})`)
  }
  return t
}

/** Checks every class index of the target (when the operation is prepared, before any work). */
export function checkClasses (target: ArrayLike<number>, info: LossInfo): void {
  if (info.kind !== 'cross_entropy' || !info.indices) return
  for (let s = 0; s < info.samples; s++) classOf(target[s], info.C, s)
}

/** Calls visit(first, stride, s) for each cross_entropy sample s: its C logits are at first + c·stride. */
function forEachSample (info: LossInfo, visit: (first: number, stride: number, s: number) => void): void {
  forEachSlice({ outer: info.N, n: info.C, inner: info.inner }, visit)
}

/**
 * log Σ exp over one sample's logits, the max taken out; NaN where the max is not finite (NaN,
 * +Infinity, or every logit -Infinity), as torch's log_softmax gives (x − max is NaN there).
 */
function logSumExp (x: FloatArray, first: number, stride: number, C: number): number {
  let m = -Infinity
  for (let c = 0, k = first; c < C; c++, k += stride) if (x[k] > m || Number.isNaN(x[k])) m = x[k]
  if (!Number.isFinite(m)) return NaN
  let s = 0
  for (let c = 0, k = first; c < C; c++, k += stride) s += Math.exp(x[k] - m)
  return Math.log(s) + m
}

/** The loss of each element (each sample for cross_entropy), in doubles. */
export function lossValues (x: FloatArray, t: FloatArray, info: LossInfo): Float64Array {
  const { kind, delta, labelSmoothing: eps, C } = info
  const out = new Float64Array(info.samples)
  if (kind === 'cross_entropy') {
    forEachSample(info, (first, stride, s) => {
      const lse = logSumExp(x, first, stride, C)
      let loss = 0
      if (info.indices) {
        const k = first + t[s] * stride
        loss = (1 - eps) * (lse - x[k])
        if (eps > 0) {
          let sum = 0
          for (let c = 0, j = first; c < C; c++, j += stride) sum += lse - x[j]
          loss += eps / C * sum
        }
      } else {
        for (let c = 0, j = first; c < C; c++, j += stride) {
          loss += ((1 - eps) * t[j] + eps / C) * (lse - x[j])
        }
      }
      out[s] = loss
    })
    return out
  }
  for (let i = 0; i < out.length; i++) {
    const a = x[i]
    const b = t[i]
    switch (kind) {
      case 'mse': out[i] = (a - b) * (a - b); break
      case 'l1': out[i] = Math.abs(a - b); break
      case 'huber': {
        const d = Math.abs(a - b)
        out[i] = d < delta ? 0.5 * d * d : delta * (d - 0.5 * delta)
        break
      }
      case 'bce_with_logits':
      {
        // (1 − t)·x + log(1 + e^−x), written as torch writes it: (1 − t)·x + m + log(e^−m + e^(−x−m)), m = max(−x, 0)
        const m = Math.max(-a, 0)
        out[i] = (1 - b) * a + m + Math.log(Math.exp(-m) + Math.exp(-a - m))
        break
      }
    }
  }
  return out
}

/** Fills out with the reduced loss (or the loss of each element with reduction none). */
export function loss (out: FloatArray, x: FloatArray, t: FloatArray, info: LossInfo): FloatArray {
  const values = lossValues(x, t, info)
  if (info.reduction === 'none') {
    out.set(values)
    return out
  }
  let s = 0
  for (let i = 0; i < values.length; i++) s += values[i]
  out[0] = info.reduction === 'sum' ? s : s / values.length
  return out
}

/**
 * The gradients with respect to input and (for values, not class indices) target, given the
 * output gradient g (a scalar for mean and sum, else one per element or sample).
 */
export function lossGrads (x: FloatArray, t: FloatArray, g: FloatArray, info: LossInfo, dx: FloatArray | undefined, dt: FloatArray | undefined): void {
  const { kind, delta, labelSmoothing: eps, C, reduction } = info
  const scale = reduction === 'mean' ? 1 / info.samples : 1
  const gOf = (i: number): number => reduction === 'none' ? g[i] : g[0] * scale
  if (kind === 'cross_entropy') {
    forEachSample(info, (first, stride, s) => {
      const gs = gOf(s)
      const lse = logSumExp(x, first, stride, C)
      let tsum = 1
      if (!info.indices) {
        tsum = 0
        for (let c = 0, j = first; c < C; c++, j += stride) tsum += (1 - eps) * t[j] + eps / C
      }
      for (let c = 0, j = first; c < C; c++, j += stride) {
        const p = Math.exp(x[j] - lse)
        const w = info.indices ? (1 - eps) * (c === t[s] ? 1 : 0) + eps / C : (1 - eps) * t[j] + eps / C
        if (dx !== undefined) dx[j] = gs * (p * tsum - w)
        if (dt !== undefined) dt[j] = -gs * (1 - eps) * (x[j] - lse)
      }
    })
    return
  }
  for (let i = 0; i < info.samples; i++) {
    const gi = gOf(i)
    const d = x[i] - t[i]
    let dd = 0 // ∂loss/∂input; ∂loss/∂target is −dd but for bce_with_logits
    switch (kind) {
      case 'mse': dd = 2 * d; break
      case 'l1': dd = d > 0 ? 1 : d < 0 ? -1 : 0; break // torch.sign: 0 at 0 and at NaN
      case 'huber': dd = Math.abs(d) < delta ? d : d > 0 ? delta : d < 0 ? -delta : NaN; break
      case 'bce_with_logits': {
        const sig = 1 / (1 + Math.exp(-x[i]))
        if (dx !== undefined) dx[i] = gi * (sig - t[i])
        if (dt !== undefined) dt[i] = -gi * x[i]
        continue
      }
    }
    if (dx !== undefined) dx[i] = gi * dd
    if (dt !== undefined) dt[i] = -gi * dd
  }
}
