/**
 * The worker entry: `run` computes a task prepared on the main thread by the operation that
 * prepared it (OPERATIONS, src/operations/index.ts): it receives the decoded operands (moved in,
 * not copied) and the shape information checked there, and moves back the reply's bytes (JSON or
 * a safetensors file), or, without a reply spec, its result. `request` takes a whole raw body.
 */
import { threadId } from 'node:worker_threads'
import { move, Piscina, transferableSymbol, valueSymbol } from 'piscina'
import { enableEngine, useGate } from '../kernels/ort/engine.js'
import type { FloatArray, WireDType } from '../kernels/types.js'
import { OPERATIONS, type OperationName } from '../operations/index.js'
import { type Operation, runOperation, type TaskBase } from '../operations/spec.js'
import { buffers } from '../tensor/buffers.js'
import { encodeReplyBytes, type ReplySpec } from '../tensor/encode.js'
import type { Gate } from './gate.js'
import { handleRequest, type RequestTask } from './request.js'

// the native engine computes this thread's kernels (src/kernels/ort)
enableEngine()

// (piscina's exported workerData is read when its module loads, which can be before it is set:
// its getter reads it now)
const workerData = Piscina.workerData as { bufferPoolBytes?: number, busy?: SharedArrayBuffer } | undefined

// this thread's buffer pool, capped as the main thread's is (BUFFER_POOL_BYTES)
if (typeof workerData?.bufferPoolBytes === 'number') buffers.setCap(workerData.bufferPoolBytes)

/** This thread's slot of the pool's busy-time table (seconds on tasks; src/plugins/pool.ts). */
const busy = workerData?.busy instanceof SharedArrayBuffer ? new Float64Array(workerData.busy) : null
const busySlot = threadId % (busy?.length ?? 1)

/** Runs a task, adding its time to this thread's busy seconds. */
function timed<T> (run: () => T): T {
  const started = performance.now()
  try {
    return run()
  } finally {
    if (busy !== null) busy[busySlot] += (performance.now() - started) / 1000
  }
}

/**
 * With a reply spec, the reply's bytes (JSON as UTF-8, or a safetensors file), encoded here (off
 * the main thread) into the buffer the pool lent for them (`into`), and moved back with the
 * task's operand buffers (`lent`) for the main thread's pool to use again; the result goes back to
 * this thread's pool. Without a reply spec, the result itself, moved.
 */
function answer (result: FloatArray, task: FromPool<{ dtype: WireDType }>): unknown {
  if (task.reply === undefined) return move(result)
  const bytes = encodeReplyBytes(result, task.dtype, task.reply, task.into)
  // (a result computed in the reply's buffer goes back with it)
  if (result.buffer !== bytes.buffer) buffers.give(result.buffer as ArrayBuffer)
  return lentBack({ bytes, lent: task.lent ?? [] })
}

/** A value moved back to the main thread with the buffers it holds. */
function moved (value: object, transfer: ArrayBuffer[]): unknown {
  return move({ get [transferableSymbol] () { return transfer }, get [valueSymbol] () { return value } })
}

/** An answer moved back with its reply's buffer and the lent buffers (each once; none detached). */
function lentBack<T extends { bytes: Uint8Array, lent: ArrayBuffer[] }> (answer: T): unknown {
  const reply = answer.bytes.buffer as ArrayBuffer
  answer.lent = answer.lent.filter((b, i, all) => b !== reply && b.byteLength > 0 && all.indexOf(b) === i)
  return moved(answer, [reply, ...answer.lent])
}

/**
 * What the pool adds to every task: the reply to encode here, the buffer lent for its bytes, the
 * buffers it moved in (given back with the answer), and the task's stop gate.
 */
type FromPool<T> = T & { reply?: ReplySpec, into?: ArrayBuffer, lent?: ArrayBuffer[], gate?: Gate }

/**
 * Runs one operation's prepared task (its run step, src/operations) under its stop gate, and
 * answers with its result. `operation` names the entry of OPERATIONS that prepared it.
 */
export function run (task: FromPool<TaskBase & { operation: OperationName }>): unknown {
  const op: Operation = OPERATIONS[task.operation]
  useGate(task.gate ?? null)
  return timed(() => answer(runOperation(op, task, task.reply, task.into), task))
}

/** A whole request from its raw body (src/worker/request.ts); the outcome moves back with its buffers. */
export function request (task: FromPool<RequestTask>): unknown {
  useGate(task.gate ?? null)
  const { outcome, transfer } = timed(() => handleRequest(task))
  return moved(outcome, transfer)
}

/** Answers once the worker has loaded: the pool waits for this before the app is ready. */
export function ping (): string {
  return 'pong'
}
