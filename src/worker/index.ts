/**
 * The worker entry: one export per operation (src/worker/tasks.ts). Each receives its decoded
 * operands (moved in, not copied) and the shape information checked on the main thread, and
 * moves its result back.
 */
import { move } from 'piscina'
import * as tasks from './tasks.js'

export function matmul (task: tasks.MatmulTask): unknown {
  return move(tasks.matmul(task))
}

export function dot (task: tasks.DotTask): unknown {
  return move(tasks.dot(task))
}

export function linear (task: tasks.LinearTask): unknown {
  return move(tasks.linear(task))
}

export function conv2d (task: tasks.Conv2dTask): unknown {
  return move(tasks.conv2d(task))
}

export function attention (task: tasks.AttentionTask): unknown {
  return move(tasks.attention(task))
}

/** A share of one large matmul, written into shared memory: nothing to move back. */
export function matmulRows (task: tasks.MatmulRowsTask): number {
  return tasks.matmulRows(task)
}

/** Answers once the worker has loaded: the pool waits for this before the app is ready. */
export function ping (): string {
  return 'pong'
}
