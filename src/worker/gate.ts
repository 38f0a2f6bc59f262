/**
 * The stop gate of one task: a worker must never be terminated while it is inside the native
 * engine. ONNX Runtime's binding, returning into a thread that is being terminated, throws a C++
 * exception that nothing catches, and the whole process aborts (seen here: a client that goes away
 * mid-request, under load). So a task carries a gate, one Int32 in shared memory:
 *
 * - 0 open: the worker may call into the engine (it sets 1 on the way in, 0 on the way out);
 * - 1 inside: the worker is in a call (a run, or a session's creation or disposal);
 * - 2 closed: the pool wants to stop the task; the worker makes no more calls.
 *
 * The pool closes the gate (waiting while the worker is inside) and only then terminates the worker.
 */

export type Gate = Int32Array

export const OPEN = 0
export const INSIDE = 1
export const CLOSED = 2

export function newGate (): Gate {
  return new Int32Array(new SharedArrayBuffer(4))
}

/** Resolves once the gate is closed: at once, or when the worker comes out of the engine. */
export async function closeGate (gate: Gate): Promise<void> {
  for (;;) {
    const was = Atomics.compareExchange(gate, 0, OPEN, CLOSED)
    if (was !== INSIDE) return
    const wait = (Atomics as unknown as { waitAsync: (a: Int32Array, i: number, v: number) => { async: boolean, value: Promise<string> | string } })
      .waitAsync(gate, 0, INSIDE)
    if (wait.async) await wait.value
  }
}

/** The worker's side: enters the gate (false when closed), and leaves it. */
export function enterGate (gate: Gate): boolean {
  return Atomics.compareExchange(gate, 0, OPEN, INSIDE) === OPEN
}

export function leaveGate (gate: Gate): void {
  Atomics.store(gate, 0, OPEN)
  Atomics.notify(gate, 0)
}
