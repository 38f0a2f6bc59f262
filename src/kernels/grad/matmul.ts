/**
 * The gradients of numpy.matmul: for out = a·b per batch, da = g·bᵀ and db = aᵀ·g, each summed
 * over the batches that broadcast its operand (and over nothing else: 1-D operands are the same
 * data as their promoted [1,k] / [k,1] forms).
 */
import { matmul, type MatmulOperands } from '../matmul.js'
import type { FloatArray, GradArrays } from '../types.js'
import { accumulateProducts, consecutiveOffsets, inOrder, productT, shared } from './common.js'

export function matmulBackward (forward: MatmulOperands, g: FloatArray, outs: GradArrays<'a' | 'b'>): void {
  const { a, b, info } = forward
  const { B, m, k, n, aOffsets, bOffsets } = info
  if (outs.result !== undefined) matmul(outs.result, a, b, info)
  const { a: da, b: db } = outs.grads
  if (B === 0 || m === 0 || n === 0 || k === 0) return // the gradients are zeros
  const gOffsets = consecutiveOffsets(B, m * n)
  // every a block against the one b (a broadcast b): the batch is one [B·m, k] product
  const stacked = shared(bOffsets, B) && inOrder(aOffsets, B, m * k)
  if (da !== undefined) {
    if (stacked) productT(da, aOffsets[0], g, 0, false, b, bOffsets[0], true, 1, B * m, n, k)
    else accumulateProducts(da, aOffsets, g, gOffsets, false, b, bOffsets, true, B, m, n, k)
  }
  if (db !== undefined) {
    // Σ_t a_tᵀ·g_t: with a stacked, the one product of its transpose and the stacked g
    if (stacked) productT(db, bOffsets[0], a, aOffsets[0], true, g, 0, false, 1, k, B * m, n)
    else accumulateProducts(db, bOffsets, a, aOffsets, true, g, gOffsets, false, B, k, m, n)
  }
}
