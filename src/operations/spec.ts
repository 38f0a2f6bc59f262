/**
 * What an operation is, apart from HTTP: its body schema (the single source of validation and of
 * the OpenAPI document), its documentation and example, and its prepare step, which decodes the
 * operands, checks their shapes against the limits and casts them to the compute dtype. Pure: the
 * routes (src/routes/v1/operations.ts) and the workers (src/worker/request.ts) both run it.
 */
import { type Static, type TObject, type TSchema, Type } from 'typebox'
import { invalidArgument, invalidTensor, tooLarge } from '../errors.js'
import { formatShape } from '../kernels/shape.js'
import { type FloatArray, kernelDtype, type Limits, type WireDType } from '../kernels/types.js'
import { ResultTensorSchema } from '../schemas/tensor.js'
import { castTo, computeDtype, type DecodedMask, type DecodedTensor, decodeMask, decodeTensor, isFileTensor } from '../tensor/decode.js'
import { buffers, pooledArray } from '../tensor/buffers.js'
import { type Explained, explanationJson } from './explain.js'
import { type Encoding, replyBytesBound, type ReplyFormat, type ReplySpec } from '../tensor/encode.js'
import { safetensorsResultPlace } from '../tensor/safetensors.js'

/** What every task carries: the result dtype and its work, which the pool schedules by. */
export interface TaskBase { dtype: WireDType, info: { flops: number } }

/** A task ready for its run step: its payload and the buffers it moves. */
export interface Prepared<T extends TaskBase = TaskBase> {
  task: T
  transfer: ArrayBuffer[]
  /** Shapes of the result tensors, in order, cut from the one buffer the run step returns. */
  outputs: ReplySpec['outputs']
}

export interface OperationSpec<
  B extends TObject = TObject,
  E extends Record<string, TSchema> = Record<string, TSchema>,
  F extends Record<string, TSchema> = Record<string, TSchema>,
  T extends TaskBase = TaskBase
> {
  /** The key of the operation in OPERATIONS (src/operations/index.ts), e.g. `matmul`, `matmulBackward`. */
  name: string
  /** The route below /v1/ (default: the name), e.g. `matmul/backward`. */
  path?: string
  summary: string
  description: string
  body: B
  /** A body that answers 200, the example of the OpenAPI document and of Swagger UI. */
  example: Static<B>
  /** The 200 reply to `example`, exactly as the service writes it (a test checks it). */
  exampleReply: object
  /** Extra fields of the 200 reply beyond `result` (attention's weights). */
  extraReply?: E
  /** The 200 reply's fields when they are not `result` and extraReply (a backward route's). */
  reply?: F
  /**
   * Fields that are objects of tensors keyed by names the user chose (the optimizer's `params`):
   * in a safetensors body, `<field>.<name>` where the name may hold dots (src/tensor/safetensors.ts).
   */
  tensorMaps?: string[]
  prepare: (body: Static<B>, decode: Decoder) => Prepared<T>
  /**
   * Computes a prepared task, in a worker or (the smallest) on the main thread: the reply's
   * tensors, one after the other in the order of `outputs`, in one array from this thread's
   * pool (`resultArray`). The operation's one place that picks its kernels.
   */
  run: (task: T) => FloatArray
  /**
   * The explanation of a result (src/operations/explain.ts), for a body that asked for one (its
   * prepare step adds the `explanation` output): from the task's operands and its result.
   */
  explain?: (task: T, result: FloatArray) => Explained[]
}

/** The fields every operation's body may carry besides its operands. */
export interface CommonBody { encoding?: Encoding, dtype?: WireDType }

/**
 * An operation with its prepare step's body type erased (it only ever sees a body its schema
 * accepted), and its body and reply schemas, named components of the OpenAPI document
 * (`MatmulBody`, `MatmulReply`) and the types of the client.
 */
export interface Operation<B extends TObject = TObject, R extends TObject = TObject, T extends TaskBase = TaskBase>
  extends Omit<OperationSpec<B>, 'prepare' | 'run' | 'explain' | 'extraReply' | 'reply'> {
  reply: R
  prepare: (body: CommonBody, decode: Decoder) => Prepared<T>
  // (method syntax: an operation of a narrower task is an Operation, and the pool and the workers
  // hand each task only to the operation that prepared it)
  run (task: T): FloatArray
  explain? (task: T, result: FloatArray): Explained[]
}

/** Where the next resultArray of its length is computed: the reply's place for its tensors (set by runOperation). */
let resultPlace: FloatArray | null = null

/**
 * Runs a prepared task: its result, and the explanation's JSON text in the reply's place for it
 * when the body asked for one. Where an operation's task is run for a reply (the worker, the main
 * thread's inline run), it is run through this. With `into`, the buffer the reply will be written
 * in, a safetensors reply's result is computed where the reply holds it (its copy saved).
 */
export function runOperation (op: Operation, task: TaskBase, reply: ReplySpec | undefined, into?: ArrayBuffer): FloatArray {
  resultPlace = into !== undefined && reply?.format === 'safetensors' ? safetensorsResultPlace(task.dtype, reply.outputs, into) : null
  // (the first array of the place's length takes it, possibly a graph node's, which the graph gives back to the
  // pool when it is done with it: the pool keeps the reply's buffer out until the run ends)
  if (resultPlace !== null) buffers.withhold(into ?? null)
  let result: FloatArray
  try {
    result = op.run(task)
  } finally {
    resultPlace = null
    buffers.withhold(null)
  }
  const place = reply?.outputs.find(o => o.explain !== undefined)
  if (place !== undefined && op.explain !== undefined) place.json = explanationJson(op.explain(task, result), task.dtype)
  return result
}

/**
 * An array of the dtype's kernel type for a task's results: the reply's place for them when
 * runOperation set one of this length, else one from this thread's pool (src/tensor/buffers.ts).
 * Zeroed, unless the caller writes every element (`zeroed` false: a 4 MB fill costs 0.16 ms).
 */
export function resultArray (dtype: WireDType, length: number, zeroed = true): FloatArray {
  const place = resultPlace
  if (place !== null && place.length === length && place instanceof (kernelDtype(dtype) === 'float64' ? Float64Array : Float32Array)) {
    resultPlace = null
    return zeroed ? place.fill(0) : place
  }
  return pooledArray(kernelDtype(dtype), length, zeroed)
}

/** The name of an operation's components: matmul → Matmul, conv2d → Conv2d, matmul/backward → MatmulBackward. */
export function componentName (route: string): string {
  return route.split(/[^A-Za-z0-9]+/).map(w => w.charAt(0).toUpperCase() + w.slice(1)).join('')
}

/** The operation with its body and reply named as components of the document (`MatmulBody`, `MatmulReply`). */
export function withComponents<O extends Operation> (op: O): O {
  const name = componentName(op.path ?? op.name)
  return { ...op, body: { ...op.body, $id: `${name}Body` }, reply: { ...op.reply, $id: `${name}Reply` } }
}

export function defineOperation<
  const B extends TObject,
  T extends TaskBase,
  const E extends Record<string, TSchema> = {},
  const F extends Record<string, TSchema> = { result: typeof ResultTensorSchema } & E
> (spec: OperationSpec<B, E, F, T>) {
  const fields = spec.reply ?? { result: ResultTensorSchema, ...spec.extraReply }
  const reply = Type.Object(fields as F, {
    additionalProperties: false,
    description: spec.reply === undefined ? 'The result tensor in the object form' : 'The reply\'s tensors in the object form'
  })
  const { extraReply, reply: _, ...rest } = spec
  return withComponents({ ...rest, reply } as unknown as Operation<B, typeof reply, T>)
}

/** The body schema as routes and workers compile it: the operation's schema (a component) with its example. */
export function bodySchema (spec: Operation): TSchema {
  return { allOf: [spec.body], examples: [spec.example] }
}

/**
 * How the reply to a prepared body is written: in the format asked for, the body's encoding, the
 * prepared outputs. A JSON reply over MAX_JSON_REPLY_BYTES, counted from the shapes with every
 * number at its longest, is refused with TOO_LARGE before anything is computed.
 */
export function replySpecOf (body: CommonBody, prepared: Prepared, format: ReplyFormat, limits: Limits): ReplySpec {
  const spec: ReplySpec = { format, encoding: body.encoding ?? 'nested', outputs: prepared.outputs }
  if (format !== 'json' && spec.outputs.some(o => o.explain !== undefined)) {
    throw invalidArgument('explain is answered in JSON replies only: ask for application/json (Accept), or leave explain out')
  }
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

/** The task of an operation on one tensor `input` (unary, softmax, reduce). */
export interface InputTask<I extends { flops: number }> { dtype: WireDType, input: FloatArray, info: I }

/** The prepare step of an operation on one tensor `input`, given its check of the shape and the body's options. */
export function inputPrepare<B extends { input: unknown, dtype?: WireDType }, I extends { outShape: number[], outElements: number, flops: number }> (
  check: (shape: number[], body: B, limits: Limits) => I
) {
  return (body: B, decode: Decoder): Prepared<InputTask<I>> => {
    const input = decode.tensor(body.input, 'input')
    const info = check(input.shape, body, decode.limits)
    const dtype = computeDtype([input], body.dtype)
    const x = castTo(input.data, dtype)
    return { task: { dtype, input: x, info }, transfer: buffersOf(x), outputs: [{ field: 'result', shape: info.outShape, length: info.outElements }] }
  }
}

/** The task of an operation on two tensors `a` and `b` (matmul, dot). */
export interface BinaryTask<I extends { flops: number }> { dtype: WireDType, a: FloatArray, b: FloatArray, info: I }

/** The prepare step of an operation on two tensors `a` and `b` (matmul, dot), given its shape check. */
export function binaryPrepare<I extends { outShape: number[], outElements: number, flops: number }> (check: (aShape: number[], bShape: number[], limits: Limits) => I) {
  return (body: { a: unknown, b: unknown, dtype?: WireDType }, decode: Decoder): Prepared<BinaryTask<I>> => {
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
