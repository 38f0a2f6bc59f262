/**
 * The gradients of scaled dot-product attention. With P the softmax weights (the forward kernel's,
 * so masks, causal and rows that attend to nothing behave exactly as forward) and G the output
 * gradient, per batch: dV = Pᵀ·G, dP = G·Vᵀ, dS = P·(dP − Σ_j dP·P) (softmax's Jacobian-vector
 * product), dQ = scale·dS·K, dK = scale·dSᵀ·Q; each summed over the batches that broadcast its
 * operand. A key whose weight is exactly 0 (masked, causally hidden, or in a row that attends to
 * nothing) takes no part: it gets no gradient from that query, and a non-finite value behind it
 * does not leak into the others (as in the forward output). The mask is not differentiable.
 */
import type { BackwardTask, GradOutputs } from '../../operations/backward.js'
import type { AttentionTask } from '../../worker/tasks.js'
import { attention } from '../attention.js'
import { allocate } from '../types.js'
import { accumulateProducts, consecutiveOffsets, transposeBlocks } from './common.js'

export function attentionBackward ({ dtype, forward, g, wrt }: BackwardTask<AttentionTask>, outs: GradOutputs): void {
  const { query, key, value, mask, info } = forward
  const { B, Lq, Lk, E, Ev, scale, qOffsets, kOffsets, vOffsets } = info
  const scores = B * Lq * Lk
  const out = outs.result ?? allocate(dtype, B * Lq * Ev)
  const P = outs.weights ?? allocate(dtype, scores)
  attention(out, P, query, key, value, mask, info)
  if (scores === 0) return // no key or no query: every gradient is zeros (or empty)
  const pOffsets = consecutiveOffsets(B, Lq * Lk)
  const gOffsets = consecutiveOffsets(B, Lq * Ev)
  const dValue = outs['grads.value']
  if (dValue !== undefined && wrt.includes('value')) {
    accumulateProducts(dValue, vOffsets, transposeBlocks(P, 0, B, Lq, Lk), pOffsets, g, gOffsets, B, Lk, Lq, Ev, true)
  }
  const dQuery = outs['grads.query']
  const dKey = outs['grads.key']
  const wantQ = dQuery !== undefined && wrt.includes('query')
  const wantK = dKey !== undefined && wrt.includes('key')
  if ((!wantQ && !wantK) || E === 0) return
  // dS, scaled, in place of dP
  const dS = allocate(dtype, scores)
  if (Ev > 0) {
    const vT = transposeBlocks(value, 0, value.length / (Lk * Ev), Lk, Ev) // [blocks, Ev, Lk]
    accumulateProducts(dS, pOffsets, g, gOffsets, vT, vOffsets, B, Lq, Ev, Lk)
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
  if (wantQ) accumulateProducts(dQuery, qOffsets, dS, pOffsets, key, kOffsets, B, Lq, Lk, E, true)
  if (wantK) accumulateProducts(dKey, kOffsets, transposeBlocks(dS, 0, B, Lq, Lk), pOffsets, query, qOffsets, B, Lk, Lq, E)
}
