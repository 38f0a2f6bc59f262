/**
 * The backward routes (`POST /v1/<op>/backward`): the vector-Jacobian product of an operation.
 * A backward operation is its forward one plus `gradOutput`, `wrt` and `returnResult`: its body
 * schema is the forward schema with those fields, and its prepare step is the forward prepare
 * (same decoding, checks, defaults and dtype) followed by the gradient's own checks. The kernels
 * are in src/kernels/grad.
 */
import { type TObject, type TOptional, Type } from 'typebox'
import { invalidArgument, shapeMismatch } from '../errors.js'
import { checkFlops, formatShape, product } from '../kernels/shape.js'
import type { FloatArray, Limits, WireDType } from '../kernels/types.js'
import { ResultTensorSchema, TensorSchema } from '../schemas/tensor.js'
import { castTo } from '../tensor/decode.js'
import type { TaskName } from '../worker/tasks.js'
import { type CommonBody, type Decoder, type Operation, type Prepared, withComponents } from './spec.js'

/** What a backward kernel receives: the forward task, the output gradient and what to compute. */
export interface BackwardTask<Forward> {
  dtype: WireDType
  forward: Forward
  /** gradOutput, cast to the result dtype, of the forward result's shape. */
  g: FloatArray
  /** The operands to differentiate, in the operation's own order. */
  wrt: string[]
  returnResult: boolean
  /** The reply's tensors in order (`grads.<name>`, then `result`, `weights`), and their lengths. */
  layout: Array<[field: string, length: number]>
  info: { flops: number }
}

/** The output arrays of a backward task, views into the one buffer it returns. */
export type GradOutputs = Record<string, FloatArray | undefined>

export interface BackwardOptions<ForwardInfo, Operand extends string = string> {
  /** The forward operation's task name, to which `Backward` is appended. */
  name: TaskName
  /** The differentiable operands, in order (the default `wrt` is those the body gives). */
  operands: Operand[]
  /** Fields that are operands but not differentiable (attention's mask). */
  constants?: string[]
  /** The backward work in flops, counted against MAX_FLOPS before computing. */
  work: (info: ForwardInfo, wrt: string[], returnResult: boolean) => number
  /** Further checks of intermediates against the limits (MAX_ELEMENTS). */
  check?: (info: ForwardInfo, wrt: string[], limits: Limits) => void
  example: Record<string, unknown>
  /** The 200 reply to `example`, exactly as the service writes it (a test checks it). */
  exampleReply: object
  description: string
}

export const backwardFields = {
  /** The gradient of the loss with respect to the forward result: a tensor of exactly its shape, cast to the result dtype. */
  gradOutput: TensorSchema,
  wrt: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), {
    maxItems: 16,
    description: 'The operands to differentiate (default: every differentiable operand the body gives)'
  })),
  returnResult: Type.Optional(Type.Boolean({ description: 'Also return the forward result (and attention\'s weights with returnWeights)' }))
}

interface BackwardBody extends CommonBody { gradOutput: unknown, wrt?: string[], returnResult?: boolean }

/** The operands to differentiate: `wrt` checked against what this body gives, in the operation's order. */
export function resolveWrt (wrt: string[] | undefined, given: string[], constants: string[]): string[] {
  if (wrt === undefined) return given
  if (wrt.length === 0) throw invalidArgument(`wrt is empty: name at least one of ${given.join(', ')}`)
  for (const [i, name] of wrt.entries()) {
    if (wrt.indexOf(name) !== i) throw invalidArgument(`wrt names ${JSON.stringify(name)} twice`)
    if (constants.includes(name)) throw invalidArgument(`wrt names ${JSON.stringify(name)}, which is not differentiable; differentiable operands of this body: ${given.join(', ')}`)
    if (!given.includes(name)) throw invalidArgument(`wrt names ${JSON.stringify(name)}, which is not a differentiable operand of this body (${given.join(', ')})`)
  }
  return given.filter(n => wrt.includes(n))
}

type BackwardBodySchema<B extends TObject> = TObject<B['properties'] & typeof backwardFields>
type BackwardReply<R extends TObject, Operand extends string> = TObject<Omit<R['properties'], 'result'> & {
  grads: TObject<{ [K in Operand]: TOptional<typeof ResultTensorSchema> }>
  result: TOptional<typeof ResultTensorSchema>
}>

/** The backward operation of `forward`: its body schema, reply schema and prepare step. */
export function defineBackward<ForwardInfo, B extends TObject = TObject, R extends TObject = TObject, const Operand extends string = string> (
  forward: Operation<B, R>, options: BackwardOptions<ForwardInfo, Operand>
): Operation<BackwardBodySchema<B>, BackwardReply<R, Operand>> {
  const grads = Object.fromEntries(options.operands.map(name => [name, Type.Optional(ResultTensorSchema)]))
  const body = Type.Object({ ...forward.body.properties, ...backwardFields }, { additionalProperties: false })
  // the forward reply's fields besides result (attention's weights), when returnResult asks for them
  const { result, ...extra } = forward.reply.properties
  const reply = Type.Object({
    grads: Type.Object(grads, { additionalProperties: false, description: 'One gradient per operand asked for, of that operand\'s shape' }),
    result: Type.Optional(ResultTensorSchema),
    ...extra
  }, { additionalProperties: false, description: 'The gradients (and the result when asked), tensors in the object form' })
  return withComponents({
    name: `${options.name}Backward` as TaskName,
    path: `${forward.path ?? forward.name}/backward`,
    summary: `Gradients of ${forward.name} (vector-Jacobian product, as torch.autograd.grad)`,
    description: options.description,
    body: body as unknown as BackwardBodySchema<B>,
    example: options.example as never,
    exampleReply: options.exampleReply,
    reply: reply as unknown as BackwardReply<R, Operand>,
    prepare (raw: CommonBody, decode: Decoder): Prepared {
      const b = raw as BackwardBody
      // the forward body's own decoding, checks and dtype; the operand shapes as decoded
      const shapes: Record<string, number[]> = {}
      const recording: Decoder = {
        limits: decode.limits,
        tensor (value, name) {
          const t = decode.tensor(value, name)
          shapes[name] = t.shape
          return t
        },
        mask: (value, name) => decode.mask(value, name)
      }
      const fwd = forward.prepare(raw, recording)
      const info = (fwd.task as { info: ForwardInfo }).info
      const resultShape = fwd.outputs[0].shape
      const given = options.operands.filter(n => shapes[n] !== undefined)
      const wrt = resolveWrt(b.wrt, given, options.constants ?? [])
      const g = decode.tensor(b.gradOutput, 'gradOutput')
      if (g.shape.length !== resultShape.length || g.shape.some((d, i) => d !== resultShape[i])) {
        throw shapeMismatch(`gradOutput ${formatShape(g.shape)} must have the shape of the forward result, ${formatShape(resultShape)}`)
      }
      const returnResult = b.returnResult === true
      options.check?.(info, wrt, decode.limits)
      const flops = options.work(info, wrt, returnResult)
      checkFlops(flops, `the gradients of this ${forward.name}`, decode.limits)
      const gd = castTo(g.data, fwd.task.dtype)
      const outputs = wrt.map(n => ({ field: `grads.${n}`, shape: shapes[n], length: product(shapes[n]) }))
      if (returnResult) outputs.push(...fwd.outputs)
      const task: BackwardTask<unknown> = {
        dtype: fwd.task.dtype,
        forward: fwd.task,
        g: gd,
        wrt,
        returnResult,
        layout: outputs.map(o => [o.field, o.length]),
        info: { flops }
      }
      const transfer = fwd.transfer.includes(gd.buffer as ArrayBuffer) ? fwd.transfer : [...fwd.transfer, gd.buffer as ArrayBuffer]
      return { task, transfer, outputs }
    }
  })
}
