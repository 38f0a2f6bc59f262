/**
 * The native engine: ONNX Runtime's CPU provider (MLAS GEMM and convolution), through the
 * synchronous binding of `onnxruntime-node`, one small session per graph shape of operators.
 *
 * - Enabled only where `enableEngine()` was called: the worker threads (src/worker/index.ts).
 *   `session.run()` blocks its thread, so it never runs on the main thread, which keeps the
 *   WebAssembly kernels for the tiny work it computes inline.
 * - Inputs are the callers' typed arrays and outputs are written straight into the callers'
 *   result arrays: ONNX Runtime wraps both without a copy.
 * - Sessions use one intra-op thread (the pool gives each worker one core), except the matmul
 *   sessions asked for more threads by a request that has the whole pool (./matmul, `threads`).
 *   Spinning is off, so an idle worker's extra threads take no CPU, and the arena is off, so a
 *   large request's scratch memory is returned when it ends.
 */
import { createRequire } from 'node:module'
import { enterGate, type Gate, leaveGate } from '../../worker/gate.js'
import type { FloatArray } from '../types.js'
import { F32_MIN_MACS } from '../wasm/runtime.js'
import { type Graph, model } from './onnx.js'

type Feed = Record<string, OrtTensor>
interface OrtTensor { type: 'float32' | 'float64', data: FloatArray, dims: number[], location: 'cpu' }
interface Session {
  loadModel: (buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: object) => void
  run: (feeds: Feed, fetches: Feed, options: object) => unknown
  dispose: () => void
}
interface Binding {
  binding: { InferenceSession: new () => Session }
  initOrt: () => void
}

let binding: Binding | null = null
/** The smallest problem, in multiply-adds, given to the engine; Infinity while it is not enabled. */
let minMacs = Infinity
let runs = 0
/** The stop gate of the task this thread is running (src/worker/gate.ts); null outside the pool. */
let gate: Gate | null = null
const sessions = new Map<string, Session>()

/** Sets the stop gate of the task this thread runs next. */
export function useGate (g: Gate | null): void {
  gate = g
}

/**
 * Lets this thread's kernels use the engine (worker threads only) for problems from `fromMacs`
 * multiply-adds: by default F32_MIN_MACS, below which a call's fixed cost dominates and float32
 * problems run on the float64 WebAssembly kernels for their accuracy (see computesInF32). The
 * tests pass 1, to compare the engine with the reference on every size.
 */
export function enableEngine (fromMacs = F32_MIN_MACS): void {
  if (binding === null) {
    binding = createRequire(import.meta.url)('onnxruntime-node/dist/binding.js') as Binding
    binding.initOrt()
  }
  minMacs = fromMacs
}

/** Whether a problem of this many multiply-adds goes to the engine in this thread. */
export function useEngine (macs: number): boolean {
  return macs >= minMacs
}

/** How many times this thread has run a session. */
export function engineRuns (): number {
  return runs
}

/**
 * Sessions kept per thread. Their keys come from requests' options (conv2d's stride, padding,
 * dilation and groups), so a client could ask for new ones without end: past this many, the one
 * used longest ago is released.
 */
export const MAX_SESSIONS = 64

/** A session for the graph, built on first use and kept while it is among the MAX_SESSIONS used last. */
export function session (key: string, threads: number, graph: () => Graph): Session {
  const id = `${key}/${threads}`
  let s = sessions.get(id)
  if (s !== undefined) {
    // most recently used last (a Map keeps insertion order)
    sessions.delete(id)
    sessions.set(id, s)
  } else {
    if (binding === null) throw new Error('the engine is not enabled in this thread')
    const bytes = model(graph())
    const { InferenceSession } = binding.binding
    s = native(() => {
      const created = new InferenceSession()
      created.loadModel(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength, sessionOptions(threads))
      return created
    })
    sessions.set(id, s)
    if (sessions.size > MAX_SESSIONS) {
      const [oldest, old] = sessions.entries().next().value as [string, Session]
      sessions.delete(oldest)
      native(() => old.dispose())
    }
  }
  return s
}

/** Session options: `threads` intra-op threads that do not spin, no arena, every graph optimization. */
function sessionOptions (threads: number): object {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    enableCpuMemArena: false,
    enableMemPattern: false,
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } }
  }
}

/** How many sessions this thread holds. */
export function sessionCount (): number {
  return sessions.size
}

/** A tensor over `data` (no copy): float32 for a Float32Array, else float64. */
export function tensor (data: FloatArray, dims: number[]): OrtTensor {
  return { type: data instanceof Float32Array ? 'float32' : 'float64', data, dims, location: 'cpu' }
}

/** Runs the session; every output is written into the arrays given in `outputs`. */
export function run (s: Session, inputs: Feed, outputs: Feed): void {
  runs++
  native(() => s.run(inputs, outputs, {}))
}

/**
 * Calls into the binding inside the task's stop gate (src/worker/gate.ts): the pool does not
 * terminate this thread until the call has returned, and once it has closed the gate no call starts.
 */
function native<T> (call: () => T): T {
  const g = gate
  if (g === null) return call()
  if (!enterGate(g)) throw new Error('the task is being stopped')
  try {
    return call()
  } finally {
    leaveGate(g)
  }
}
