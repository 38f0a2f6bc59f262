/** Every operation of the contract, by name: the routes and the workers share this table. */
import attention from './attention.js'
import conv2d from './conv2d.js'
import dot from './dot.js'
import einsum from './einsum.js'
import linear from './linear.js'
import matmul from './matmul.js'
import type { Operation } from './spec.js'

export const OPERATIONS = { matmul, dot, linear, conv2d, attention, einsum } as const satisfies Record<string, Operation>

export type OperationName = keyof typeof OPERATIONS
