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
import type { FloatArray, GradArrays, Limits } from '../kernels/types.js'
import { ResultTensorSchema, TensorSchema } from '../schemas/tensor.js'
import { castTo } from '../tensor/decode.js'
import { type CommonBody, type Decoder, type Operation, type Prepared, resultArray, type TaskBase, withComponents } from './spec.js'

/** A backward task: the forward task, the output gradient, and the reply's tensors to fill. */
export interface BackwardTask<Forward extends TaskBase = TaskBase> extends TaskBase {
  forward: Forward
  /** gradOutput, cast to the result dtype, of the forward result's shape. */
  g: FloatArray
  /** The reply's tensors in order (`grads.<name>` for each operand asked for, then `result`, `weights`), and their lengths. */
  layout: Array<[field: string, length: number]>
}

export interface BackwardOptions<Forward extends TaskBase, Operand extends string = string> {
  /** The differentiable operands, in order (the default `wrt` is those the body gives). */
  operands: Operand[]
  /** Fields that are operands but not differentiable (attention's mask). */
  constants?: string[]
  /** Operands that are not differentiable in this body (loss's target when it holds class indices). */
  constantsOf?: (info: Forward['info']) => string[]
  /** The backward work in flops, counted against MAX_FLOPS before computing. */
  work: (info: Forward['info'], wrt: string[], returnResult: boolean) => number
  /** Further checks of intermediates against the limits (MAX_ELEMENTS). */
  check?: (info: Forward['info'], wrt: string[], limits: Limits) => void
  /**
   * The gradient kernel (src/kernels/grad): fills the zeroed arrays it is given, the gradients
   * of the operands asked for and the forward result (and attention's weights) when asked for.
   */
  kernel: (forward: Forward, g: FloatArray, outs: GradArrays<Operand>) => void
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

type BackwardBodySchema<B extends TObject> = TObject<Omit<B['properties'], 'explain'> & typeof backwardFields>
type BackwardReply<R extends TObject, Operand extends string> = TObject<Omit<R['properties'], 'result' | 'explanation'> & {
  grads: TObject<{ [K in Operand]: TOptional<typeof ResultTensorSchema> }>
  result: TOptional<typeof ResultTensorSchema>
}>

/** gradOutput's shape checked against the forward result's. */
export function checkGradOutput (shape: number[], resultShape: number[]): void {
  if (shape.length !== resultShape.length || shape.some((d, i) => d !== resultShape[i])) {
    throw shapeMismatch(`gradOutput ${formatShape(shape)} must have the shape of the forward result, ${formatShape(resultShape)}`)
  }
}

/**
 * A backward task's run step: one zeroed buffer for every reply tensor (gradients, then the
 * result when asked), the kernel writing or accumulating into its views.
 */
function runBackward<Forward extends TaskBase, Operand extends string> (kernel: BackwardOptions<Forward, Operand>['kernel']) {
  return (task: BackwardTask<Forward>): FloatArray => {
    let total = 0
    for (const [, length] of task.layout) total += length
    const all = resultArray(task.dtype, total)
    const outs: GradArrays<Operand> = { grads: {} }
    let offset = 0
    for (const [field, length] of task.layout) {
      const view = all.subarray(offset, offset + length)
      offset += length
      if (field === 'result' || field === 'weights') outs[field] = view
      else outs.grads[field.slice('grads.'.length) as Operand] = view
    }
    kernel(task.forward, task.g, outs)
    return all
  }
}

/** The backward operation of `forward`: its body schema, reply schema, prepare and run steps. */
export function defineBackward<Forward extends TaskBase, B extends TObject = TObject, R extends TObject = TObject, const Operand extends string = string> (
  forward: Operation<B, R, Forward>, options: BackwardOptions<Forward, Operand>
): Operation<BackwardBodySchema<B>, BackwardReply<R, Operand>, BackwardTask<Forward>> {
  const grads = Object.fromEntries(options.operands.map(name => [name, Type.Optional(ResultTensorSchema)]))
  // (explain mode is the forward routes')
  const { explain: _, ...fields } = forward.body.properties
  const body = Type.Object({ ...fields, ...backwardFields }, { additionalProperties: false })
  // the forward reply's fields besides result (attention's weights), when returnResult asks for them
  const { result, explanation: _e, ...extra } = forward.reply.properties
  const reply = Type.Object({
    grads: Type.Object(grads, { additionalProperties: false, description: 'One gradient per operand asked for, of that operand\'s shape' }),
    result: Type.Optional(ResultTensorSchema),
    ...extra
  }, { additionalProperties: false, description: 'The gradients (and the result when asked), tensors in the object form' })
  return withComponents({
    name: `${forward.name}Backward`,
    path: `${forward.path ?? forward.name}/backward`,
    summary: `Gradients of ${forward.name} (vector-Jacobian product, as torch.autograd.grad)`,
    description: options.description,
    body: body as unknown as BackwardBodySchema<B>,
    example: options.example as never,
    exampleReply: options.exampleReply,
    reply: reply as unknown as BackwardReply<R, Operand>,
    prepare (raw: CommonBody, decode: Decoder): Prepared<BackwardTask<Forward>> {
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
      const info = fwd.task.info
      const resultShape = fwd.outputs[0].shape
      const constants = [...(options.constants ?? []), ...(options.constantsOf?.(info) ?? [])]
      const given = options.operands.filter(n => shapes[n] !== undefined && !constants.includes(n))
      const wrt = resolveWrt(b.wrt, given, constants)
      const g = decode.tensor(b.gradOutput, 'gradOutput')
      checkGradOutput(g.shape, resultShape)
      const returnResult = b.returnResult === true
      options.check?.(info, wrt, decode.limits)
      const flops = options.work(info, wrt, returnResult)
      checkFlops(flops, `the gradients of this ${forward.name}`, decode.limits)
      const gd = castTo(g.data, fwd.task.dtype)
      const outputs = wrt.map(n => ({ field: `grads.${n}`, shape: shapes[n], length: product(shapes[n]) }))
      if (returnResult) outputs.push(...fwd.outputs)
      const task: BackwardTask<Forward> = {
        dtype: fwd.task.dtype,
        forward: fwd.task,
        g: gd,
        layout: outputs.map(o => [o.field, o.length]),
        info: { flops }
      }
      const transfer = fwd.transfer.includes(gd.buffer as ArrayBuffer) ? fwd.transfer : [...fwd.transfer, gd.buffer as ArrayBuffer]
      return { task, transfer, outputs }
    },
    run: runBackward(options.kernel)
  })
}
