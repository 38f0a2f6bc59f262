/**
 * The gradients of numpy.matmul: for out = a·b per batch, da = g·bᵀ and db = aᵀ·g, each summed
 * over the batches that broadcast its operand (and over nothing else: 1-D operands are the same
 * data as their promoted [1,k] / [k,1] forms).
 */
import type { BackwardTask, GradOutputs } from '../../operations/backward.js'
import type { MatmulTask } from '../../worker/tasks.js'
import { gemm, matmul } from '../matmul.js'
import { accumulateProducts, consecutiveOffsets, shared, inOrder, transposeBlocks } from './common.js'

export function matmulBackward ({ forward, g, wrt }: BackwardTask<MatmulTask>, outs: GradOutputs): void {
  const { a, b, info } = forward
  const { B, m, k, n, aOffsets, bOffsets } = info
  if (outs.result !== undefined) matmul(outs.result, a, b, info)
  const da = outs['grads.a']
  const db = outs['grads.b']
  if (B === 0 || m === 0 || n === 0 || k === 0) return // the gradients are zeros
  const gOffsets = consecutiveOffsets(B, m * n)
  if (da !== undefined && wrt.includes('a')) {
    const bT = transposeBlocks(b, 0, b.length / (k * n), k, n) // [blocks, n, k]
    if (shared(bOffsets, B) && inOrder(aOffsets, B, m * k)) {
      gemm(da, aOffsets[0], g, 0, bT, bOffsets[0], B * m, n, k) // every a block against the one b: one product
    } else {
      accumulateProducts(da, aOffsets, g, gOffsets, bT, bOffsets, B, m, n, k)
    }
  }
  if (db !== undefined && wrt.includes('b')) {
    if (shared(bOffsets, B) && inOrder(aOffsets, B, m * k)) {
      // Σ_t a_tᵀ·g_t is the one product of the stacked a ([B·m, k]) transposed and the stacked g
      const aT = transposeBlocks(a, aOffsets[0], 1, B * m, k)
      gemm(db, bOffsets[0], aT, 0, g, 0, k, B * m, n)
    } else {
      const aT = transposeBlocks(a, 0, a.length / (m * k), m, k) // [blocks, k, m]
      accumulateProducts(db, bOffsets, aT, aOffsets, g, gOffsets, B, k, m, n)
    }
  }
}
