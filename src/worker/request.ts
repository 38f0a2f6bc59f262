/**
 * A whole request body handled in a worker: parse the JSON (src/tensor/json.ts) or read the
 * safetensors file (src/tensor/safetensors.ts), validate it against the operation's
 * body schema (the same TypeBox schema and Ajv options as on the main thread), decode and check
 * the operands, compute, and encode the reply (JSON or safetensors). Large bodies take this path (WORKER_PARSE_MIN_BYTES)
 * so that the JSON work of big tensors, not only the kernels, is shared among the pool's threads.
 *
 * Failures come back as outcomes, not throws (a thrown error loses its fields on the way back):
 * the main thread raises the same errors as its own parser, validator and decoder would.
 */
import { isApiError } from '../errors.js'
import type { FloatArray, Limits } from '../kernels/types.js'
import { OPERATIONS, type OperationName } from '../operations/index.js'
import { bodySchema, type CommonBody, decoderFor, type Prepared, replySpecOf } from '../operations/spec.js'
import { type BodyValidator, compileBodyValidator } from '../schemas/ajv.js'
import type { SchemaError } from '../schemas/validation.js'
import { encodeReplyBytes, type ReplyFormat, type ReplySpec } from '../tensor/encode.js'
import { bareNonFinite, parseJsonBytes } from '../tensor/json.js'
import { decodeSafetensorsBody } from '../tensor/safetensors.js'
import { TASKS } from './tasks.js'

export interface RequestTask {
  op: OperationName
  /** The raw body: UTF-8 JSON, or a safetensors file. */
  body: Uint8Array
  format: BodyFormat
  /** The reply's format, negotiated from Accept. */
  reply: ReplyFormat
  limits: Limits
  /** A matmul with at least this much work goes back prepared, for the pool to split (0: never). */
  splitMinFlops: number
}

/** The request body formats: a body format is a decoder into the value the body schema validates. */
export type BodyFormat = 'json' | 'safetensors'

export type RequestOutcome =
  | { kind: 'reply', bytes: Uint8Array, shapes: Record<string, number[]> }
  /** Decoded and checked, to be computed by the pool (a matmul large enough to split). */
  | { kind: 'prepared', prepared: Prepared, reply: ReplySpec, shapes: Record<string, number[]> }
  /** Not JSON; with the bare NaN or infinity that made it so, if one did. */
  | { kind: 'invalid-json', bare: { token: string, at: number } | null }
  | { kind: 'schema', errors: SchemaError[] }
  | { kind: 'api', code: string, message: string, shapes: Record<string, number[]> }

const validators = new Map<OperationName, BodyValidator>()

function validatorOf (op: OperationName): BodyValidator {
  let v = validators.get(op)
  if (v === undefined) {
    v = compileBodyValidator(bodySchema(OPERATIONS[op]))
    validators.set(op, v)
  }
  return v
}

/** The outcome, and the buffers that move back with it. */
export function handleRequest ({ op, body, format, reply: replyFormat, limits, splitMinFlops }: RequestTask): { outcome: RequestOutcome, transfer: ArrayBuffer[] } {
  const shapes: Record<string, number[]> = {}
  const refused = (err: unknown): { outcome: RequestOutcome, transfer: ArrayBuffer[] } => {
    if (isApiError(err)) return { outcome: { kind: 'api', code: err.code, message: err.message, shapes }, transfer: [] }
    throw err
  }
  let parsed: unknown
  if (format === 'safetensors') {
    try {
      parsed = decodeSafetensorsBody(body, limits)
    } catch (err) {
      return refused(err)
    }
  } else {
    try {
      parsed = parseJsonBytes(body)
    } catch {
      return { outcome: { kind: 'invalid-json', bare: bareNonFinite(body) }, transfer: [] }
    }
  }
  const validate = validatorOf(op)
  if (!validate(parsed)) return { outcome: { kind: 'schema', errors: validate.errors ?? [] }, transfer: [] }

  const spec = OPERATIONS[op]
  const data = parsed as CommonBody
  let prepared: Prepared
  let reply: ReplySpec
  try {
    prepared = spec.prepare(data, decoderFor(limits, shapes, format === 'safetensors'))
    reply = replySpecOf(data, prepared, replyFormat, limits)
  } catch (err) {
    return refused(err)
  }
  if (op === 'matmul' && splitMinFlops > 0 && prepared.task.info.flops >= splitMinFlops) {
    return { outcome: { kind: 'prepared', prepared, reply, shapes }, transfer: prepared.transfer }
  }
  const result = (TASKS[op] as (t: object) => FloatArray)(prepared.task)
  const bytes = encodeReplyBytes(result, prepared.task.dtype, reply)
  return { outcome: { kind: 'reply', bytes, shapes }, transfer: [bytes.buffer as ArrayBuffer] }
}
