/**
 * The gradients of scaled dot-product attention. With P the softmax weights (the forward kernel's,
 * so masks, causal and rows that attend to nothing behave exactly as forward) and G the output
 * gradient, per batch: dV = Pᵀ·G, dP = G·Vᵀ, dS = P·(dP − Σ_j dP·P) (softmax's Jacobian-vector
 * product), dQ = scale·dS·K, dK = scale·dSᵀ·Q; each summed over the batches that broadcast its
 * operand. A key whose weight is exactly 0 (masked, causally hidden, or in a row that attends to
 * nothing) takes no part: it gets no gradient from that query, and a non-finite value behind it
 * does not leak into the others (as in the forward output). The mask is not differentiable.
 */
import { additiveMask, attention, type AttentionOperands, blocks, scaleFitsF32 } from '../attention.js'
import { allFinite, engineAttentionBackward, useEngine } from '../ort/kernels.js'
import { allocate, type DType, type FloatArray, type GradArrays, kernelDtype, type WireDType } from '../types.js'
import { accumulateProducts, addInto, consecutiveOffsets } from './common.js'

type AttentionGrads = GradArrays<'query' | 'key' | 'value'>

export function attentionBackward (wire: WireDType, forward: AttentionOperands, g: FloatArray, outs: AttentionGrads): void {
  const dtype = kernelDtype(wire) // (float16 and bfloat16 are computed in float32)
  const { query, key, value, mask, info } = forward
  const { B, Lq, Lk, E, Ev, scale, qOffsets, kOffsets, vOffsets } = info
  const scores = B * Lq * Lk
  if (E > 0 && Ev > 0 && Lk > 0 && (dtype === 'float64' || scaleFitsF32(scale)) && useEngine(B * Lq * Lk * (E + Ev)) &&
    onEngine(dtype, forward, g, outs)) {
    if (outs.result !== undefined) attention(outs.result, outs.weights ?? null, query, key, value, mask, info)
    return
  }
  const out = outs.result ?? allocate(dtype, B * Lq * Ev)
  const P = outs.weights ?? allocate(dtype, scores)
  attention(out, P, query, key, value, mask, info)
  if (scores === 0) return // no key or no query: every gradient is zeros (or empty)
  const pOffsets = consecutiveOffsets(B, Lq * Lk)
  const gOffsets = consecutiveOffsets(B, Lq * Ev)
  const { query: dQuery, key: dKey, value: dValue } = outs.grads
  if (dValue !== undefined) {
    accumulateProducts(dValue, vOffsets, P, pOffsets, true, g, gOffsets, false, B, Lk, Lq, Ev, true)
  }
  if ((dQuery === undefined && dKey === undefined) || E === 0) return
  // dS, scaled, in place of dP
  const dS = allocate(dtype, scores)
  if (Ev > 0) {
    accumulateProducts(dS, pOffsets, g, gOffsets, false, value, vOffsets, true, B, Lq, Ev, Lk)
  }
  for (let r = 0; r < B * Lq; r++) {
    const o = r * Lk
    let dot = 0
    for (let j = 0; j < Lk; j++) if (P[o + j] !== 0) dot += dS[o + j] * P[o + j]
    for (let j = 0; j < Lk; j++) {
      const p = P[o + j]
      dS[o + j] = p === 0 ? 0 : scale * p * (dS[o + j] - dot)
    }
  }
  if (dQuery !== undefined) accumulateProducts(dQuery, qOffsets, dS, pOffsets, false, key, kOffsets, false, B, Lq, Lk, E, true)
  if (dKey !== undefined) accumulateProducts(dKey, kOffsets, dS, pOffsets, true, query, qOffsets, false, B, Lk, Lq, E)
}

/**
 * The gradients in one engine graph over the operands' blocks per batch, then summed into each
 * operand's blocks. False (and nothing written) where the engine's result is not finite: there it
 * can differ from the kernel's semantics (see engineAttentionBackward), and the caller computes.
 */
function onEngine (dtype: DType, forward: AttentionOperands, g: FloatArray, outs: AttentionGrads): boolean {
  const { query, key, value, mask, info } = forward
  const { B, Lq, Lk, E, Ev, scale, qOffsets, kOffsets, vOffsets } = info
  const dq = allocate(dtype, B * Lq * E)
  const dk = allocate(dtype, B * Lk * E)
  const dv = allocate(dtype, B * Lk * Ev)
  engineAttentionBackward(dq, dk, dv, blocks(query, qOffsets, Lq * E), blocks(key, kOffsets, Lk * E), blocks(value, vOffsets, Lk * Ev),
    g, additiveMask(dq, mask, info), scale, B, Lq, Lk, E, Ev)
  if (!allFinite(dq) || !allFinite(dk) || !allFinite(dv)) return false
  for (const [name, grad, offsets, size] of [['query', dq, qOffsets, Lq * E], ['key', dk, kOffsets, Lk * E], ['value', dv, vOffsets, Lk * Ev]] as const) {
    const out = outs.grads[name]
    if (out === undefined) continue
    if (out.length === grad.length) out.set(grad) // nothing broadcast: the blocks are the operand's
    else for (let t = 0; t < B; t++) addInto(out, offsets[t], grad, t * size, size)
  }
  return true
}
