/**
 * Recycled buffers: a pool per thread of ArrayBuffers in size classes, so that a request's body,
 * decoded operands, result and reply reuse memory that is already mapped instead of faulting in
 * fresh pages (here a fresh 4 MB array costs about 3 ms to allocate, touch and later collect; a
 * reused one 0.07 ms to refill).
 *
 * - Size classes: 64 KiB, then four per power of two (2^k, 1.25·2^k, 1.5·2^k, 1.75·2^k), so a
 *   buffer is at most 25% larger than asked. Smaller requests get an exact fresh buffer.
 * - A byte cap (BUFFER_POOL_BYTES) on what waits in the pool: a buffer given back past it is left
 *   to the garbage collector. 0 turns pooling off.
 * - Idle release: when nothing was taken for IDLE_MS, every waiting buffer is dropped, so an idle
 *   service gives its memory back.
 * - Buffers move between threads (to a worker with its task, back with its answer): a buffer is
 *   given back to the pool of whichever thread holds it at the end. A detached buffer (moved
 *   away) has byteLength 0 and is ignored.
 *
 * Whoever gives a buffer back must hold the only reference that will ever touch it again.
 */

/** Below this, buffers are not pooled (V8's own allocator serves small ones well). */
export const MIN_POOLED_BYTES = 64 * 1024

/** With nothing taken for this long, the pool drops what it holds. */
export const IDLE_MS = 10_000

/** The size class of a request for `bytes`: the smallest class that holds it. */
export function classSize (bytes: number): number {
  if (bytes <= MIN_POOLED_BYTES) return MIN_POOLED_BYTES
  const power = 2 ** Math.floor(Math.log2(bytes))
  const step = power / 4
  return Math.ceil(bytes / step) * step
}

export interface PoolStats {
  /** Bytes waiting in the pool. */
  freeBytes: number
  /** Takes served from the pool. */
  reused: number
  /** Takes of a pooled size that had to allocate. */
  fresh: number
}

export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>()
  /** The buffers waiting, so that one given back twice is never handed out twice. */
  private readonly waiting = new WeakSet<ArrayBuffer>()
  private freeBytes = 0
  private takenSinceTick = false
  private withheld: ArrayBuffer | null = null
  private timer: ReturnType<typeof setInterval> | null = null
  reused = 0
  fresh = 0

  constructor (private capBytes: number, private readonly idleMs = IDLE_MS) {}

  /** Sets the cap (0: no pooling); drops what waits over it. */
  setCap (capBytes: number): void {
    this.capBytes = capBytes
    if (this.freeBytes > capBytes) this.clear()
  }

  /**
   * Keeps one buffer out of the pool until called again (null): given back meanwhile, it is ignored.
   * The buffer a reply is being computed in (src/operations/spec.ts, runOperation) is withheld, so
   * that a step that gives back a result array it took there (a graph's node) cannot have it handed
   * out again as another array before the reply is written.
   */
  withhold (buffer: ArrayBuffer | null): void {
    this.withheld = buffer
  }

  /** A buffer of at least `bytes` bytes, with unspecified contents. */
  take (bytes: number): ArrayBuffer {
    if (bytes < MIN_POOLED_BYTES || this.capBytes === 0) return new ArrayBuffer(bytes)
    const size = classSize(bytes)
    this.takenSinceTick = true
    const list = this.free.get(size)
    for (let buffer = list?.pop(); buffer !== undefined; buffer = list?.pop()) {
      this.waiting.delete(buffer)
      this.freeBytes -= size
      // (one moved to another thread while it waited here is detached: passed over)
      if (buffer.byteLength !== size) continue
      this.reused++
      return buffer
    }
    this.fresh++
    return new ArrayBuffer(size)
  }

  /** Gives a buffer back for a later take; one not of a class size, detached, or over the cap is dropped. */
  give (buffer: ArrayBuffer | SharedArrayBuffer | null | undefined): void {
    if (!(buffer instanceof ArrayBuffer) || this.capBytes === 0 || buffer === this.withheld) return
    const size = buffer.byteLength
    if (size < MIN_POOLED_BYTES || classSize(size) !== size || this.waiting.has(buffer)) return
    if (this.freeBytes + size > this.capBytes) return
    let list = this.free.get(size)
    if (list === undefined) this.free.set(size, list = [])
    list.push(buffer)
    this.waiting.add(buffer)
    this.freeBytes += size
    this.watchIdle()
  }

  /** Drops every waiting buffer. */
  clear (): void {
    this.free.clear()
    this.freeBytes = 0
    if (this.timer !== null) {
      clearInterval(this.timer)
      this.timer = null
    }
  }

  stats (): PoolStats {
    return { freeBytes: this.freeBytes, reused: this.reused, fresh: this.fresh }
  }

  /** While buffers wait, a timer (that keeps no process alive) drops them once the pool goes unused. */
  private watchIdle (): void {
    if (this.timer !== null) return
    this.takenSinceTick = true
    this.timer = setInterval(() => {
      if (!this.takenSinceTick) this.clear()
      this.takenSinceTick = false
    }, this.idleMs)
    this.timer.unref?.()
  }
}

/** The default cap of each thread's pool (BUFFER_POOL_BYTES). */
export const BUFFER_POOL_BYTES = 256 * 1024 * 1024

/** This thread's pool (the main thread's, or a worker's). */
export const buffers = new BufferPool(BUFFER_POOL_BYTES)

/** A float array of `length` from this thread's pool: zeroed, unless `zeroed` is false (contents then unspecified). */
export function pooledArray (dtype: 'float32' | 'float64', length: number, zeroed = true): Float32Array | Float64Array {
  const size = dtype === 'float64' ? 8 : 4
  const buffer = buffers.take(length * size)
  const out = dtype === 'float64' ? new Float64Array(buffer, 0, length) : new Float32Array(buffer, 0, length)
  // (a pooled buffer may be one used before; a smaller one is fresh, hence zeroed)
  if (zeroed && buffer.byteLength >= MIN_POOLED_BYTES) out.fill(0)
  return out
}
