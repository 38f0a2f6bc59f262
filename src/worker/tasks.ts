/**
 * The operations' task runners: allocate the result, run the pure kernel, return the result as
 * one typed array. The worker entry (index.ts) runs them in worker threads; the pool runs the
 * smallest tasks inline on the main thread, where a worker's round trip would cost more than the
 * computation. matmulRows computes a range of rows into shared memory, so that one large matmul
 * can be split across idle workers.
 */
import { attention as attentionKernel, type AttentionInfo } from '../kernels/attention.js'
import { conv2d as conv2dKernel, type Conv2dInfo } from '../kernels/conv2d.js'
import { dot as dotKernel, type DotInfo } from '../kernels/dot.js'
import { linear as linearKernel, type LinearInfo } from '../kernels/linear.js'
import { gemm, matmul as matmulKernel, type MatmulInfo } from '../kernels/matmul.js'
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
/** Rows [start, end) of the flattened (batch x m) result, over operands and output in shared memory. */
export interface MatmulRowsTask { a: FloatArray, b: FloatArray, out: FloatArray, info: MatmulInfo, start: number, end: number }

export function matmul ({ dtype, a, b, info }: MatmulTask): FloatArray {
  return matmulKernel(allocate(dtype, info.outElements), a, b, info)
}

export function dot ({ dtype, a, b, info }: DotTask): FloatArray {
  return dotKernel(allocate(dtype, 1), a, b, info)
}

export function linear ({ dtype, input, weights, bias, info }: LinearTask): FloatArray {
  return linearKernel(allocate(dtype, info.outElements), input, weights, bias, info)
}

export function conv2d ({ dtype, input, kernel, bias, info }: Conv2dTask): FloatArray {
  return conv2dKernel(allocate(dtype, info.outElements), input, kernel, bias, info)
}

/** Output and (when asked) weights share one buffer, output first. */
export function attention ({ dtype, query, key, value, mask, info }: AttentionTask): FloatArray {
  const outN = info.B * info.Lq * info.Ev
  const wN = info.returnWeights ? info.B * info.Lq * info.Lk : 0
  const all = allocate(dtype, outN + wN)
  const weights = info.returnWeights ? all.subarray(outN) : null
  attentionKernel(all.subarray(0, outN), weights, query, key, value, mask, info)
  return all
}

/** Computes rows [start, end) of the result, a row being one of the m rows of one batch. */
export function matmulRows ({ a, b, out, info, start, end }: MatmulRowsTask): number {
  const { m, k, n, aOffsets, bOffsets } = info
  let row = start
  while (row < end) {
    const t = Math.floor(row / m)
    const i = row - t * m
    const rows = Math.min(end - row, m - i)
    gemm(out, t * m * n + i * n, a, aOffsets[t] + i * k, b, bOffsets[t], rows, k, n)
    row += rows
  }
  return end - start
}

/**
 * One matmul over shared memory, its rows cut into `parts` contiguous shares: the operands are
 * copied into SharedArrayBuffers once, and every share writes its rows of the shared result.
 */
export function splitMatmul (task: MatmulTask, parts: number): { tasks: MatmulRowsTask[], out: FloatArray } {
  const { a, b, info } = task
  const Ctor = task.dtype === 'float32' ? Float32Array : Float64Array
  // (TypeScript's typed-array constructors take SharedArrayBuffer, but not through a union)
  const sharedArray = (length: number): FloatArray =>
    new Ctor(new SharedArrayBuffer(length * Ctor.BYTES_PER_ELEMENT) as unknown as ArrayBuffer)
  const shared = (src: FloatArray): FloatArray => {
    const view = sharedArray(src.length)
    view.set(src)
    return view
  }
  const sa = shared(a)
  const sb = shared(b)
  const out = sharedArray(info.outElements)
  const rows = info.B * info.m
  const tasks: MatmulRowsTask[] = []
  for (let p = 0; p < parts; p++) {
    tasks.push({ a: sa, b: sb, out, info, start: Math.floor(rows * p / parts), end: Math.floor(rows * (p + 1) / parts) })
  }
  return { tasks, out }
}

export const TASKS = { matmul, dot, linear, conv2d, attention } as const
export type TaskName = keyof typeof TASKS
