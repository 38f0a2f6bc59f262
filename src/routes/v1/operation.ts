/**
 * What every operation route shares: its schema (body, a 200 reply and the error replies, all
 * in the OpenAPI document), decode -> shape checks -> one pool call -> encode.
 */
import { Buffer } from 'node:buffer'
import type { FastifyInstance } from 'fastify'
import type { TSchema } from 'typebox'
import { Type } from 'typebox'
import type { DType, FloatArray, Limits } from '../../kernels/types.js'
import { overloaded } from '../../plugins/pool.js'
import { ErrorSchema, ResultTensorSchema } from '../../schemas/tensor.js'
import { castTo, computeDtype, type DecodedMask, type DecodedTensor, decodeMask, decodeTensor } from '../../tensor/decode.js'
import { type Encoding, encodeReply, type ReplySpec } from '../../tensor/encode.js'
import type { TaskName } from '../../worker/tasks.js'

/** A task ready for the pool: its worker export, its payload and the buffers it moves. */
export interface Prepared {
  task: object & { dtype: DType }
  transfer: ArrayBuffer[]
  /** Shapes of the result tensors, in order, cut from the one buffer the worker returns. */
  outputs: Array<{ field: string, shape: number[], length: number }>
}

export interface OperationSpec<Body> {
  name: TaskName
  summary: string
  description: string
  body: TSchema
  example: Body
  /** Extra fields of the 200 reply beyond `result` (attention's weights). */
  extraReply?: Record<string, TSchema>
  prepare: (body: Body, decode: Decoder) => Prepared
}

/** Decodes a request's operands against the limits, noting each operand's shape for the log line. */
export interface Decoder {
  limits: Limits
  tensor: (value: unknown, name: string) => DecodedTensor
  mask: (value: unknown, name: string) => DecodedMask
}

function decoderFor (limits: Limits, shapes: Record<string, number[]>): Decoder {
  return {
    limits,
    tensor (value, name) {
      const t = decodeTensor(value, name, limits)
      shapes[name] = t.shape
      return t
    },
    mask (value, name) {
      const m = decodeMask(value, name, limits)
      shapes[name] = m.shape
      return m
    }
  }
}

/** The distinct buffers behind the given arrays (an operand may be reused; a buffer moves once). */
export function buffersOf (...arrays: Array<FloatArray | Uint8Array | null>): ArrayBuffer[] {
  const set = new Set<ArrayBuffer>()
  for (const a of arrays) if (a !== null) set.add(a.buffer as ArrayBuffer)
  return [...set]
}

const errorReplies = {
  400: { ...ErrorSchema, description: 'Invalid JSON, a body that fails the schema, a malformed tensor (INVALID_TENSOR), operands that do not go together (SHAPE_MISMATCH) or an option out of range (INVALID_ARGUMENT)' },
  413: { ...ErrorSchema, description: 'Body over BODY_LIMIT_BYTES, or a tensor over MAX_ELEMENTS, or work over MAX_FLOPS (TOO_LARGE); refused before computing' },
  415: { ...ErrorSchema, description: 'The body is not application/json' },
  500: { ...ErrorSchema, description: 'Internal error: the message carries only the request id' },
  503: { ...ErrorSchema, description: 'The work queue is full (OVERLOADED); retry after the Retry-After header' },
  504: { ...ErrorSchema, description: 'The computation ran past TASK_TIMEOUT_MS and was stopped (TIMEOUT)' }
}

export function operationRoute<Body extends { encoding?: Encoding, dtype?: DType }> (spec: OperationSpec<Body>) {
  return async function route (app: FastifyInstance): Promise<void> {
    const reply200 = Type.Object({ result: ResultTensorSchema, ...spec.extraReply }, {
      additionalProperties: false,
      description: 'The result tensor in the object form'
    })
    app.post(`/v1/${spec.name}`, {
      schema: {
        tags: ['operations'],
        operationId: spec.name,
        summary: spec.summary,
        description: spec.description,
        body: { ...spec.body, examples: [spec.example] },
        response: { 200: reply200, ...errorReplies }
      },
      // at capacity, refuse before the body is even parsed: under overload, refusing must stay
      // cheaper than the work (the admission in app.compute still decides for admitted requests)
      onRequest: async () => {
        if (app.poolFull()) {
          app.metrics.shed.inc({ reason: 'queue' })
          throw overloaded(app.config)
        }
      }
    }, async (request, reply) => {
      const body = request.body as Body
      const shapes: Record<string, number[]> = {}
      request.shapes = shapes
      const prepared = spec.prepare(body, decoderFor(app.limits, shapes))
      const replySpec: ReplySpec = { encoding: body.encoding ?? 'nested', outputs: prepared.outputs }
      // a worker answers with the reply's JSON bytes (the encoding shares the pool's cores); inline
      // and split computations give the result buffer, encoded here
      const result = await app.compute(spec.name, { ...prepared.task, reply: replySpec }, prepared.transfer, reply)
      const text = result instanceof Uint8Array
        ? Buffer.from(result.buffer, result.byteOffset, result.byteLength)
        : encodeReply(result as FloatArray, prepared.task.dtype, replySpec)
      reply.type('application/json; charset=utf-8')
      return text
    })
  }
}

/** The prepare step of an operation on two tensors `a` and `b` (matmul, dot), given its shape check. */
export function binaryPrepare (check: (aShape: number[], bShape: number[], limits: Limits) => { outShape: number[], outElements: number }) {
  return (body: { a: unknown, b: unknown, dtype?: DType }, decode: Decoder): Prepared => {
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
