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
import { bodyLooksLike, isApiError } from '../errors.js'
import type { Limits } from '../kernels/types.js'
import { OPERATIONS, type OperationName, TENSOR_MAPS } from '../operations/index.js'
import { bodySchema, type CommonBody, decoderFor, type Operation, type Prepared, replySpecOf, runOperation } from '../operations/spec.js'
import { type BodyValidator, compileBodyValidator } from '../schemas/ajv.js'
import type { SchemaError } from '../schemas/validation.js'
import { buffers } from '../tensor/buffers.js'
import { encodeReplyBytes, type ReplyFormat, type ReplySpec } from '../tensor/encode.js'
import { bareNonFinite, parseJsonBytes } from '../tensor/json.js'
import { decodeSafetensorsBody } from '../tensor/safetensors.js'

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
  /**
   * A buffer lent for the reply, when the main thread expects a reply larger than the body (its
   * last reply of this operation was): else the reply is written over the body.
   */
  into?: ArrayBuffer
}

/** The request body formats: a body format is a decoder into the value the body schema validates. */
export type BodyFormat = 'json' | 'safetensors'

/**
 * What the worker made of the request. Every outcome but `prepared` comes back with the body's
 * buffer: as the reply's (`bytes` is written over the body once the result is computed, when it
 * fits) or in `lent`, for the main thread's pool to use again.
 */
export type RequestOutcome = (
  | { kind: 'reply', bytes: Uint8Array, shapes: Record<string, number[]> }
  /** Decoded and checked, to be computed by the pool (a matmul large enough to split). */
  | { kind: 'prepared', prepared: Prepared, reply: ReplySpec, shapes: Record<string, number[]> }
  /** Not JSON; with the bare NaN or infinity that made it so, if one did. */
  | { kind: 'invalid-json', bare: { token: string, at: number } | null, looks: string | null }
  | { kind: 'schema', errors: SchemaError[] }
  | { kind: 'api', code: string, message: string, shapes: Record<string, number[]> }
) & { lent?: ArrayBuffer[] }

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
export function handleRequest ({ op, body, format, reply: replyFormat, limits, splitMinFlops, into }: RequestTask): { outcome: RequestOutcome, transfer: ArrayBuffer[] } {
  const shapes: Record<string, number[]> = {}
  const bodyBuffer = body.buffer as ArrayBuffer
  /** The main thread's buffers: the body's, and the one lent for the reply. */
  const lent = into === undefined ? [bodyBuffer] : [bodyBuffer, into]
  /** An outcome without a reply: the main thread's buffers go back with it. */
  const back = (outcome: RequestOutcome): { outcome: RequestOutcome, transfer: ArrayBuffer[] } =>
    ({ outcome: { ...outcome, lent }, transfer: lent })
  const refused = (err: unknown): { outcome: RequestOutcome, transfer: ArrayBuffer[] } => {
    if (isApiError(err)) return back({ kind: 'api', code: err.code, message: err.message, shapes })
    throw err
  }
  let parsed: unknown
  if (format === 'safetensors') {
    try {
      // (the body was moved here: its tensors may be read where they lie)
      parsed = decodeSafetensorsBody(body, limits, true, TENSOR_MAPS)
    } catch (err) {
      return refused(err)
    }
  } else {
    try {
      parsed = parseJsonBytes(body, { spans: true })
    } catch {
      return back({ kind: 'invalid-json', bare: bareNonFinite(body), looks: bodyLooksLike(body, 'json') })
    }
  }
  const validate = validatorOf(op)
  if (!validate(parsed)) return back({ kind: 'schema', errors: validate.errors ?? [] })

  const spec: Operation = OPERATIONS[op]
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
    const spare = into === undefined ? [] : [into]
    return { outcome: { kind: 'prepared', prepared, reply, shapes, lent: spare }, transfer: [...prepared.transfer, ...spare] }
  }
  const result = runOperation(spec, prepared.task, reply, into)
  // the operands are read: the reply is written over the body, and the result and the operands
  // decoded into buffers of their own go back to this thread's pool
  // (into the lent buffer when the result was computed there, else the larger of the body's buffer
  // and the lent one; the other goes back as it came)
  const target = into !== undefined && (result.buffer === into || into.byteLength > bodyBuffer.byteLength) ? into : bodyBuffer
  const bytes = encodeReplyBytes(result, prepared.task.dtype, reply, target)
  if (result.buffer !== bytes.buffer) buffers.give(result.buffer as ArrayBuffer)
  for (const b of prepared.transfer) if (b !== bodyBuffer) buffers.give(b)
  const others = lent.filter(b => b !== bytes.buffer)
  return { outcome: { kind: 'reply', bytes, shapes, lent: others }, transfer: [bytes.buffer as ArrayBuffer, ...others] }
}
