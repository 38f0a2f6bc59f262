/**
 * The worker entry: one export per operation (src/worker/tasks.ts). Each receives its decoded
 * operands (moved in, not copied) and the shape information checked on the main thread, and
 * moves back the reply's JSON bytes, or, without a reply spec, its result.
 */
import { move, transferableSymbol, valueSymbol } from 'piscina'
import { enableEngine, useGate } from '../kernels/ort/engine.js'
import type { DType, FloatArray } from '../kernels/types.js'
import { encodeReplyBytes, type ReplySpec } from '../tensor/encode.js'
import type { Gate } from './gate.js'
import { handleRequest, type RequestTask } from './request.js'
import * as tasks from './tasks.js'

// the native engine computes this thread's kernels (src/kernels/ort)
enableEngine()

/**
 * With a reply spec, the reply's JSON as UTF-8 bytes, encoded here (off the main thread) and
 * moved back in a buffer of their own; else the result itself, moved.
 */
function answer (result: FloatArray, task: { dtype: DType, reply?: ReplySpec }): unknown {
  if (task.reply === undefined) return move(result)
  return move(encodeReplyBytes(result, task.dtype, task.reply))
}

/** What the pool adds to every task: the reply to encode here, and the task's stop gate. */
type FromPool<T> = T & { reply?: ReplySpec, gate?: Gate }

/** Runs one operation's task under its stop gate and answers with its result. */
function compute<T extends { dtype: DType }> (kernel: (task: T) => FloatArray, task: FromPool<T>): unknown {
  useGate(task.gate ?? null)
  return answer(kernel(task), task)
}

export function matmul (task: FromPool<tasks.MatmulTask>): unknown {
  return compute(tasks.matmul, task)
}

export function dot (task: FromPool<tasks.DotTask>): unknown {
  return compute(tasks.dot, task)
}

export function linear (task: FromPool<tasks.LinearTask>): unknown {
  return compute(tasks.linear, task)
}

export function conv2d (task: FromPool<tasks.Conv2dTask>): unknown {
  return compute(tasks.conv2d, task)
}

export function attention (task: FromPool<tasks.AttentionTask>): unknown {
  return compute(tasks.attention, task)
}

export function einsum (task: FromPool<tasks.EinsumTask>): unknown {
  return compute(tasks.einsum, task)
}

export function matmulBackward (task: FromPool<tasks.MatmulBackwardTask>): unknown {
  return compute(tasks.matmulBackward, task)
}

export function dotBackward (task: FromPool<tasks.DotBackwardTask>): unknown {
  return compute(tasks.dotBackward, task)
}

export function linearBackward (task: FromPool<tasks.LinearBackwardTask>): unknown {
  return compute(tasks.linearBackward, task)
}

export function conv2dBackward (task: FromPool<tasks.Conv2dBackwardTask>): unknown {
  return compute(tasks.conv2dBackward, task)
}

export function attentionBackward (task: FromPool<tasks.AttentionBackwardTask>): unknown {
  return compute(tasks.attentionBackward, task)
}

export function einsumBackward (task: FromPool<tasks.EinsumTask>): unknown {
  return compute(tasks.einsumBackward, task)
}

/** A whole request from its raw body (src/worker/request.ts); the outcome moves back with its buffers. */
export function request (task: FromPool<RequestTask>): unknown {
  useGate(task.gate ?? null)
  const { outcome, transfer } = handleRequest(task)
  return move({ get [transferableSymbol] () { return transfer }, get [valueSymbol] () { return outcome } })
}

/** Answers once the worker has loaded: the pool waits for this before the app is ready. */
export function ping (): string {
  return 'pong'
}
