/**
 * The operations' task runners: take the result from this thread's buffer pool (zeroed), run the
 * pure kernel, return the result as one typed array. The worker entry (index.ts) runs them in worker threads; the pool runs the
 * smallest tasks inline on the main thread, where a worker's round trip would cost more than the
 * computation. One large matmul may be given the threads of idle workers too (`threads`).
 */
import { attention as attentionKernel, type AttentionInfo } from '../kernels/attention.js'
import { conv2d as conv2dKernel, type Conv2dInfo } from '../kernels/conv2d.js'
import { dot as dotKernel, type DotInfo } from '../kernels/dot.js'
import { einsum as einsumKernel, type Program } from '../kernels/einsum.js'
import { linear as linearKernel, type LinearInfo } from '../kernels/linear.js'
import { matmul as matmulKernel, type MatmulInfo } from '../kernels/matmul.js'
import { type FloatArray, kernelDtype, type WireDType } from '../kernels/types.js'
import { attentionBackward as attentionGrad } from '../kernels/grad/attention.js'
import { conv2dBackward as conv2dGrad } from '../kernels/grad/conv2d.js'
import { dotBackward as dotGrad } from '../kernels/grad/dot.js'
import { linearBackward as linearGrad } from '../kernels/grad/linear.js'
import { matmulBackward as matmulGrad } from '../kernels/grad/matmul.js'
import type { BackwardTask, GradOutputs } from '../operations/backward.js'
import { pooledArray } from '../tensor/buffers.js'

/** `threads`: the native engine's threads for this matmul, when the pool gave it more than one worker's share. */
export interface MatmulTask { dtype: WireDType, a: FloatArray, b: FloatArray, info: MatmulInfo, threads?: number }
export interface DotTask { dtype: WireDType, a: FloatArray, b: FloatArray, info: DotInfo }
export interface LinearTask { dtype: WireDType, input: FloatArray, weights: FloatArray, bias: FloatArray | null, info: LinearInfo }
export interface Conv2dTask { dtype: WireDType, input: FloatArray, kernel: FloatArray, bias: FloatArray | null, info: Conv2dInfo }
export interface AttentionTask {
  dtype: WireDType
  query: FloatArray
  key: FloatArray
  value: FloatArray
  mask: FloatArray | Uint8Array | null
  info: AttentionInfo
}

export interface EinsumTask { dtype: WireDType, operands: FloatArray[], info: { flops: number, programs: Program[], outElements: number } }

/** A zeroed result array of the dtype's kernel type, from this thread's pool (src/tensor/buffers.ts). */
function result (dtype: WireDType, length: number): FloatArray {
  return pooledArray(kernelDtype(dtype), length)
}

export function matmul ({ dtype, a, b, info, threads }: MatmulTask): FloatArray {
  return matmulKernel(result(dtype, info.outElements), a, b, info, threads)
}

export function dot ({ dtype, a, b, info }: DotTask): FloatArray {
  return dotKernel(result(dtype, 1), a, b, info)
}

export function linear ({ dtype, input, weights, bias, info }: LinearTask): FloatArray {
  return linearKernel(result(dtype, info.outElements), input, weights, bias, info)
}

export function conv2d ({ dtype, input, kernel, bias, info }: Conv2dTask): FloatArray {
  return conv2dKernel(result(dtype, info.outElements), input, kernel, bias, info)
}

/** Output and (when asked) weights share one buffer, output first. */
export function attention ({ dtype, query, key, value, mask, info }: AttentionTask): FloatArray {
  const outN = info.B * info.Lq * info.Ev
  const wN = info.returnWeights ? info.B * info.Lq * info.Lk : 0
  const all = result(dtype, outN + wN)
  const weights = info.returnWeights ? all.subarray(outN) : null
  attentionKernel(all.subarray(0, outN), weights, query, key, value, mask, info)
  return all
}

/** The programs' outputs, one after the other (src/kernels/einsum.ts). */
export function einsum ({ dtype, operands, info }: EinsumTask): FloatArray {
  const length = info.programs.reduce((n, p) => n + p.outLength, 0)
  return einsumKernel(result(dtype, length), operands, info.programs, kernelDtype(dtype))
}

/**
 * A backward task's runner: one zeroed buffer for every reply tensor (gradients, then the result
 * when asked), each kernel writing or accumulating into its views.
 */
function backward<F> (kernel: (task: BackwardTask<F>, outs: GradOutputs) => void) {
  return (task: BackwardTask<F>): FloatArray => {
    let total = 0
    for (const [, length] of task.layout) total += length
    const all = result(task.dtype, total)
    const outs: GradOutputs = {}
    let offset = 0
    for (const [field, length] of task.layout) {
      outs[field] = all.subarray(offset, offset + length)
      offset += length
    }
    kernel(task, outs)
    return all
  }
}

export type MatmulBackwardTask = BackwardTask<MatmulTask>
export type DotBackwardTask = BackwardTask<DotTask>
export type LinearBackwardTask = BackwardTask<LinearTask>
export type Conv2dBackwardTask = BackwardTask<Conv2dTask>
export type AttentionBackwardTask = BackwardTask<AttentionTask>

export const matmulBackward = backward(matmulGrad)
export const dotBackward = backward(dotGrad)
export const linearBackward = backward(linearGrad)
export const conv2dBackward = backward(conv2dGrad)
export const attentionBackward = backward(attentionGrad)

/** The gradients (and the result when asked), one after the other: the same programs' runner. */
export const einsumBackward = einsum

export const TASKS = {
  matmul,
  dot,
  linear,
  conv2d,
  attention,
  einsum,
  matmulBackward,
  dotBackward,
  linearBackward,
  conv2dBackward,
  attentionBackward,
  einsumBackward
} as const
export type TaskName = keyof typeof TASKS
