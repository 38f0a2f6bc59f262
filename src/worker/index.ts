/**
 * The worker entry: one export per operation. Each receives its decoded operands (moved in,
 * not copied) and the shape information checked on the main thread, allocates the result,
 * runs the pure kernel and moves the result back.
 */
import { move } from 'piscina'
import { attention as attentionKernel, type AttentionInfo } from '../kernels/attention.js'
import { conv2d as conv2dKernel, type Conv2dInfo } from '../kernels/conv2d.js'
import { dot as dotKernel, type DotInfo } from '../kernels/dot.js'
import { linear as linearKernel, type LinearInfo } from '../kernels/linear.js'
import { matmul as matmulKernel, type MatmulInfo } from '../kernels/matmul.js'
import { allocate, type DType, type FloatArray } from '../kernels/types.js'

export interface MatmulTask { dtype: DType, a: FloatArray, b: FloatArray, info: MatmulInfo }
export interface DotTask { dtype: DType, a: FloatArray, b: FloatArray, info: DotInfo }
export interface LinearTask { dtype: DType, input: FloatArray, weights: FloatArray, bias: FloatArray | null, info: LinearInfo }
export interface Conv2dTask { dtype: DType, input: FloatArray, kernel: FloatArray, bias: FloatArray | null, info: Conv2dInfo }
export interface AttentionTask {
  dtype: DType
  query: FloatArray
  key: FloatArray
  value: FloatArray
  mask: FloatArray | Uint8Array | null
  info: AttentionInfo
}

export function matmul ({ dtype, a, b, info }: MatmulTask): unknown {
  return move(matmulKernel(allocate(dtype, info.outElements), a, b, info))
}

export function dot ({ dtype, a, b, info }: DotTask): unknown {
  return move(dotKernel(allocate(dtype, 1), a, b, info))
}

export function linear ({ dtype, input, weights, bias, info }: LinearTask): unknown {
  return move(linearKernel(allocate(dtype, info.outElements), input, weights, bias, info))
}

export function conv2d ({ dtype, input, kernel, bias, info }: Conv2dTask): unknown {
  return move(conv2dKernel(allocate(dtype, info.outElements), input, kernel, bias, info))
}

/** Output and (when asked) weights share one buffer, output first, so one transfer moves both. */
export function attention ({ dtype, query, key, value, mask, info }: AttentionTask): unknown {
  const outN = info.B * info.Lq * info.Ev
  const wN = info.returnWeights ? info.B * info.Lq * info.Lk : 0
  const all = allocate(dtype, outN + wN)
  const weights = info.returnWeights ? all.subarray(outN) : null
  attentionKernel(all.subarray(0, outN), weights, query, key, value, mask, info)
  return move(all)
}

/** Answers once the worker has loaded: the pool waits for this before the app is ready. */
export function ping (): string {
  return 'pong'
}
