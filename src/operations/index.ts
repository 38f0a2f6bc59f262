/**
 * Every operation of the contract, by name: the one table that the routes, the workers, the OpenAPI
 * document, the client's types and the tests iterate. An operation's key is its `name`.
 */
import attention, { attentionBackward } from './attention.js'
import binary, { binaryBackward } from './binary.js'
import conv2d, { conv2dBackward } from './conv2d.js'
import dot, { dotBackward } from './dot.js'
import einsum, { einsumBackward } from './einsum.js'
import graph from './graph.js'
import layerNorm, { layerNormBackward } from './layer-norm.js'
import linear, { linearBackward } from './linear.js'
import loss, { lossBackward } from './loss.js'
import matmul, { matmulBackward } from './matmul.js'
import optimizerStep from './optimizer.js'
import pool2d, { pool2dBackward } from './pool2d.js'
import reduce, { reduceBackward } from './reduce.js'
import softmax, { softmaxBackward } from './softmax.js'
import unary, { unaryBackward } from './unary.js'
import type { Operation } from './spec.js'

export const OPERATIONS = {
  matmul,
  dot,
  linear,
  conv2d,
  attention,
  einsum,
  unary,
  binary,
  reduce,
  softmax,
  layer_norm: layerNorm,
  pool2d,
  loss,
  matmulBackward,
  dotBackward,
  linearBackward,
  conv2dBackward,
  attentionBackward,
  einsumBackward,
  unaryBackward,
  binaryBackward,
  reduceBackward,
  softmaxBackward,
  layer_normBackward: layerNormBackward,
  pool2dBackward,
  lossBackward,
  optimizerStep,
  graph
} as const satisfies Record<string, Operation>

export type OperationName = keyof typeof OPERATIONS

/** The operations that have no gradient and no backward route (the optimizer's step, graphs). */
const WITHOUT_BACKWARD = ['optimizerStep', 'graph'] as const satisfies OperationName[]

/** The forward operations; each has its backward, `<name>Backward` at `<name>/backward`. */
export type ForwardName = Exclude<OperationName, `${string}Backward` | typeof WITHOUT_BACKWARD[number]>

/** The forward operations' names, in the table's order. */
export const FORWARD: ForwardName[] = (Object.keys(OPERATIONS) as OperationName[])
  .filter((n): n is ForwardName => !n.endsWith('Backward') && !(WITHOUT_BACKWARD as readonly string[]).includes(n))

/** The fields of every operation that are objects of named tensors, for safetensors bodies (`params.<name>`). */
export const TENSOR_MAPS: readonly string[] = [...new Set(Object.values(OPERATIONS).flatMap(op => (op as Operation).tensorMaps ?? []))]

/** Every operation's route below /v1/, forward and backward, in the table's order (`matmul`, …, `matmul/backward`, …). */
export const ROUTES: string[] = Object.values(OPERATIONS).map(op => op.path ?? op.name)
