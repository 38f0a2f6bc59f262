/**
 * What an operation is, apart from HTTP: its body schema (the single source of validation and of
 * the OpenAPI document), its documentation and example, and its prepare step, which decodes the
 * operands, checks their shapes against the limits and casts them to the compute dtype. Pure: the
 * routes (src/routes/v1/operations.ts) and the workers (src/worker/request.ts) both run it.
 */
import type { TSchema } from 'typebox'
import { invalidTensor, tooLarge } from '../errors.js'
import { formatShape } from '../kernels/shape.js'
import type { FloatArray, Limits, WireDType } from '../kernels/types.js'
import { castTo, computeDtype, type DecodedMask, type DecodedTensor, decodeMask, decodeTensor, isFileTensor } from '../tensor/decode.js'
import { type Encoding, replyBytesBound, type ReplyFormat, type ReplySpec } from '../tensor/encode.js'
import type { TaskName } from '../worker/tasks.js'

/** A task ready for a kernel: its payload and the buffers it moves. */
export interface Prepared {
  task: object & { dtype: WireDType, info: { flops: number } }
  transfer: ArrayBuffer[]
  /** Shapes of the result tensors, in order, cut from the one buffer the kernel returns. */
  outputs: ReplySpec['outputs']
}

export interface OperationSpec<Body = unknown> {
  name: TaskName
  /** The route below /v1/ (default: the name), e.g. `matmul/backward`. */
  path?: string
  summary: string
  description: string
  body: TSchema
  example: Body
  /** Extra fields of the 200 reply beyond `result` (attention's weights). */
  extraReply?: Record<string, TSchema>
  /** The 200 reply's fields when they are not `result` and extraReply (a backward route's). */
  reply?: Record<string, TSchema>
  prepare: (body: Body, decode: Decoder) => Prepared
}

/** The fields every operation's body may carry besides its operands. */
export interface CommonBody { encoding?: Encoding, dtype?: WireDType }

/** An operation with its body type erased: its prepare step only ever sees a body its schema accepted. */
export interface Operation extends Omit<OperationSpec, 'prepare'> {
  prepare: (body: CommonBody, decode: Decoder) => Prepared
}

export function defineOperation<Body extends CommonBody> (spec: OperationSpec<Body>): Operation {
  return spec as unknown as Operation
}

/** The body schema as routes and workers compile it: the operation's schema with its example. */
export function bodySchema (spec: Operation): TSchema {
  return { ...spec.body, examples: [spec.example] }
}

/**
 * How the reply to a prepared body is written: in the format asked for, the body's encoding, the
 * prepared outputs. A JSON reply over MAX_JSON_REPLY_BYTES, counted from the shapes with every
 * number at its longest, is refused with TOO_LARGE before anything is computed.
 */
export function replySpecOf (body: CommonBody, prepared: Prepared, format: ReplyFormat, limits: Limits): ReplySpec {
  const spec: ReplySpec = { format, encoding: body.encoding ?? 'nested', outputs: prepared.outputs }
  const max = limits.maxJsonReplyBytes
  if (format === 'json' && max !== undefined && max > 0) {
    const bytes = replyBytesBound(prepared.task.dtype, spec)
    if (bytes > max) {
      const what = spec.outputs.map(o => `${o.field} ${formatShape(o.shape)}`).join(', ')
      throw tooLarge(`the JSON reply (${what}, ${prepared.task.dtype}, ${spec.encoding}) may take up to ${bytes} bytes, ` +
        `over MAX_JSON_REPLY_BYTES (${max}): ask for "encoding": "base64", or for a safetensors reply (Accept: application/octet-stream)`)
    }
  }
  return spec
}

/** Decodes a request's operands against the limits, noting each operand's shape for the log line. */
export interface Decoder {
  limits: Limits
  tensor: (value: unknown, name: string) => DecodedTensor
  mask: (value: unknown, name: string) => DecodedMask
}

/** `fromFile`: the body was a binary file, whose tensor fields must be tensors of the file. */
export function decoderFor (limits: Limits, shapes: Record<string, number[]>, fromFile = false): Decoder {
  const check = (value: unknown, name: string): void => {
    if (fromFile && !isFileTensor(value)) {
      throw invalidTensor(`${name} must be a tensor of the file; __metadata__ carries only the options`)
    }
  }
  return {
    limits,
    tensor (value, name) {
      check(value, name)
      const t = decodeTensor(value, name, limits)
      shapes[name] = t.shape
      return t
    },
    mask (value, name) {
      check(value, name)
      const m = decodeMask(value, name, limits)
      shapes[name] = m.shape
      return m
    }
  }
}

/** The distinct buffers behind the given arrays (an operand may be reused; a buffer moves once). */
export function buffersOf (...arrays: Array<FloatArray | Uint8Array | null>): ArrayBuffer[] {
  if (arrays.length === 2 && arrays[0] !== null && arrays[1] !== null) { // (matmul and dot, without a Set)
    const a = arrays[0].buffer as ArrayBuffer
    const b = arrays[1].buffer as ArrayBuffer
    return a === b ? [a] : [a, b]
  }
  const set = new Set<ArrayBuffer>()
  for (const a of arrays) if (a !== null) set.add(a.buffer as ArrayBuffer)
  return [...set]
}

/** The prepare step of an operation on two tensors `a` and `b` (matmul, dot), given its shape check. */
export function binaryPrepare (check: (aShape: number[], bShape: number[], limits: Limits) => { outShape: number[], outElements: number, flops: number }) {
  return (body: { a: unknown, b: unknown, dtype?: WireDType }, decode: Decoder): Prepared => {
    const a = decode.tensor(body.a, 'a')
    const b = decode.tensor(body.b, 'b')
    const info = check(a.shape, b.shape, decode.limits)
    const dtype = computeDtype([a, b], body.dtype)
    const ad = castTo(a.data, dtype)
    const bd = castTo(b.data, dtype)
    const task = { dtype, a: ad, b: bd, info }
    return {
      task,
      transfer: buffersOf(ad, bd),
      outputs: [{ field: 'result', shape: info.outShape, length: info.outElements }]
    }
  }
}
