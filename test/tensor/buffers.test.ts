/**
 * The recycled buffers (src/tensor/buffers.ts): size classes, the byte cap, idle release, and
 * never the same buffer handed out twice.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { BufferPool, buffers, classSize, MIN_POOLED_BYTES, pooledArray } from '../../src/tensor/buffers.js'

afterEach(() => { vi.useRealTimers() })

describe('size classes', () => {
  it('64 KiB, then four per power of two; a class holds what was asked and wastes at most 25%', () => {
    expect(classSize(1)).toBe(MIN_POOLED_BYTES)
    expect(classSize(MIN_POOLED_BYTES)).toBe(MIN_POOLED_BYTES)
    expect(classSize(MIN_POOLED_BYTES + 1)).toBe(80 * 1024)
    expect(classSize(1 << 20)).toBe(1 << 20)
    expect(classSize((1 << 20) + 1)).toBe(1.25 * (1 << 20))
    expect(classSize(8 * 1024 * 1024 + 8 + 136)).toBe(10 * 1024 * 1024)
    for (const n of [65537, 100_000, 1_048_577, 3_000_000, 8_388_760, 123_456_789]) {
      const c = classSize(n)
      expect(c).toBeGreaterThanOrEqual(n)
      expect(c).toBeLessThanOrEqual(1.25 * n)
      expect(classSize(c)).toBe(c)
    }
  })
})

describe('BufferPool', () => {
  it('gives back a buffer of the class for a later take of that class, and counts reuse', () => {
    const pool = new BufferPool(1 << 30)
    const a = pool.take(100_000)
    expect(a.byteLength).toBe(classSize(100_000))
    pool.give(a)
    expect(pool.stats().freeBytes).toBe(a.byteLength)
    expect(pool.take(110_000)).toBe(a) // same class (112 KiB)
    expect(pool.stats()).toEqual({ freeBytes: 0, reused: 1, fresh: 1 })
    expect(pool.take(110_000)).not.toBe(a) // nothing waiting: a fresh one
    pool.clear()
  })

  it('never hands out one buffer twice, though it is given back twice', () => {
    const pool = new BufferPool(1 << 30)
    const a = pool.take(200_000)
    pool.give(a)
    pool.give(a)
    const x = pool.take(200_000)
    const y = pool.take(200_000)
    expect(x).toBe(a)
    expect(y).not.toBe(a)
    pool.clear()
  })

  it('keeps a withheld buffer out: given back while withheld, it is never handed out', () => {
    const pool = new BufferPool(1 << 30)
    const reply = pool.take(100_000)
    pool.withhold(reply)
    pool.give(reply)
    expect(pool.take(100_000)).not.toBe(reply)
    pool.withhold(null)
    pool.give(reply)
    expect(pool.take(100_000)).toBe(reply)
  })

  it('passes over a waiting buffer that was moved away (detached) meanwhile', () => {
    const pool = new BufferPool(1 << 30)
    const a = pool.take(MIN_POOLED_BYTES)
    const b = pool.take(MIN_POOLED_BYTES)
    pool.give(a)
    pool.give(b)
    structuredClone(b, { transfer: [b] }) // b, last in, is detached while it waits
    const c = pool.take(MIN_POOLED_BYTES)
    expect(c).toBe(a)
    expect(c.byteLength).toBe(MIN_POOLED_BYTES)
    expect(pool.stats().freeBytes).toBe(0)
    pool.clear()
  })

  it('keeps at most its cap; drops small, odd-sized and detached buffers; cap 0 pools nothing', () => {
    const pool = new BufferPool(3 * MIN_POOLED_BYTES)
    const bufs = [1, 2, 3, 4].map(() => pool.take(MIN_POOLED_BYTES))
    for (const b of bufs) pool.give(b)
    expect(pool.stats().freeBytes).toBe(3 * MIN_POOLED_BYTES)
    pool.give(new ArrayBuffer(1000))
    pool.give(new ArrayBuffer(MIN_POOLED_BYTES + 3))
    const moved = pool.take(MIN_POOLED_BYTES * 2)
    structuredClone(moved, { transfer: [moved] }) // detached, as after a move to a worker
    pool.give(moved)
    expect(pool.stats().freeBytes).toBe(3 * MIN_POOLED_BYTES)
    pool.setCap(0)
    expect(pool.stats().freeBytes).toBe(0)
    const c = pool.take(MIN_POOLED_BYTES)
    pool.give(c)
    expect(pool.take(MIN_POOLED_BYTES)).not.toBe(c)
  })

  it('drops what it holds once it goes unused for its idle time', () => {
    vi.useFakeTimers()
    const pool = new BufferPool(1 << 30, 1000)
    pool.give(pool.take(MIN_POOLED_BYTES))
    vi.advanceTimersByTime(1000)
    expect(pool.stats().freeBytes).toBe(MIN_POOLED_BYTES) // used within the last period
    pool.give(pool.take(MIN_POOLED_BYTES))
    vi.advanceTimersByTime(1000)
    expect(pool.stats().freeBytes).toBe(MIN_POOLED_BYTES)
    vi.advanceTimersByTime(1000) // a whole period without a take
    expect(pool.stats().freeBytes).toBe(0)
  })
})

describe('pooledArray', () => {
  it('is zeroed even when its buffer was used before', () => {
    const a = pooledArray('float64', 20_000)
    expect(a.length).toBe(20_000)
    a.fill(7)
    buffers.give(a.buffer as ArrayBuffer)
    const b = pooledArray('float64', 20_000)
    expect(b.buffer).toBe(a.buffer) // the same memory, used again
    expect(b.every(x => x === 0)).toBe(true)
    const c = pooledArray('float32', 100)
    expect(c.every(x => x === 0)).toBe(true)
  })
})
