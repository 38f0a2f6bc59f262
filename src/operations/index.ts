/** Every operation of the contract, by task name: the routes and the workers share this table. */
import attention, { attentionBackward } from './attention.js'
import conv2d, { conv2dBackward } from './conv2d.js'
import dot, { dotBackward } from './dot.js'
import einsum, { einsumBackward } from './einsum.js'
import linear, { linearBackward } from './linear.js'
import matmul, { matmulBackward } from './matmul.js'
import type { Operation } from './spec.js'

export const OPERATIONS = {
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
} as const satisfies Record<string, Operation>

export type OperationName = keyof typeof OPERATIONS
