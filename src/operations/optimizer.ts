/**
 * POST /v1/optimizer/step: one step of torch.optim.SGD, Adam or AdamW over named parameters, from
 * the state the previous reply returned. Its tensors sit in objects keyed by the user's names
 * (`params`, `grads`, `state.expAvg`, …; in a safetensors body `params.<name>`, where a name may
 * hold dots), and its reply carries the step count, a number, beside its tensors.
 */
import { type Static, type TSchema, Type } from 'typebox'
import { invalidArgument, shapeMismatch } from '../errors.js'
import { OPTIMIZERS, optimizerStep, type StepInfo, stepInfo } from '../kernels/optimizer.js'
import { checkElements, checkFlops, formatShape, sameShape } from '../kernels/shape.js'
import type { FloatArray, WireDType } from '../kernels/types.js'
import { CheckedEnum, commonFields, ResultTensorSchema, TensorSchema } from '../schemas/tensor.js'
import { castTo, computeDtype, type DecodedTensor } from '../tensor/decode.js'
import type { ReplySpec } from '../tensor/encode.js'
import { buffersOf, defineOperation, resultArray } from './spec.js'

/** Most parameters one step takes. */
export const MAX_PARAMS = 1024

/** An object of tensors keyed by parameter names (1 to 256 characters, any but a line break). */
function Named<T extends TSchema> (tensor: T, description: string) {
  return Type.Record(Type.String({ pattern: '^.{1,256}$' }), tensor, { additionalProperties: false, maxProperties: MAX_PARAMS, description })
}

function StateSchema<T extends TSchema> (tensor: T, description: string) {
  return Type.Object({
    step: Type.Optional(Type.Integer({ format: 'int64', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'adam, adamw: the steps taken so far' })),
    momentumBuffer: Type.Optional(Named(tensor, 'sgd with momentum: the momentum buffer of each parameter')),
    expAvg: Type.Optional(Named(tensor, 'adam, adamw: the running average of each parameter\'s gradient')),
    expAvgSq: Type.Optional(Named(tensor, 'adam, adamw: the running average of each parameter\'s squared gradient'))
  }, { additionalProperties: false, description })
}

/** The fields of a step besides the parameters and gradients: what a graph's `update` takes (./graph.ts). */
export const UPDATE_FIELDS = {
  optimizer: CheckedEnum([...OPTIMIZERS], { description: 'sgd, adam or adamw (torch.optim.SGD, Adam, AdamW)' }),
  lr: Type.Number({ description: 'The learning rate (at least 0)' }),
  momentum: Type.Optional(Type.Number({ description: 'sgd: the momentum factor (default 0)' })),
  dampening: Type.Optional(Type.Number({ description: 'sgd: the dampening of the momentum (default 0)' })),
  nesterov: Type.Optional(Type.Boolean({ description: 'sgd: Nesterov momentum (default false; needs momentum > 0 and dampening 0)' })),
  betas: Type.Optional(Type.Array(Type.Number(), { minItems: 2, maxItems: 2, description: 'adam, adamw: the averages\' coefficients, each in [0, 1) (default [0.9, 0.999])' })),
  eps: Type.Optional(Type.Number({ description: 'adam, adamw: added to the denominator (default 1e-8)' })),
  weightDecay: Type.Optional(Type.Number({ description: 'The weight decay: L2 for sgd and adam (default 0), decoupled for adamw (default 0.01)' })),
  state: Type.Optional(StateSchema(TensorSchema, 'The state the previous step\'s reply returned (absent or {}: the initial state)'))
}

const Body = Type.Object({
  params: Named(TensorSchema, 'The parameters by name'),
  grads: Named(TensorSchema, 'The gradient of each parameter, by the same names, of the same shapes'),
  ...UPDATE_FIELDS,
  ...commonFields
}, { additionalProperties: false })

/** The state schema of a reply (./graph.ts's too). */
export const ReplyStateSchema = StateSchema(ResultTensorSchema, 'The state after the step, to post with the next step')

type StepBody = Static<typeof Body>
type StateName = 'momentumBuffer' | 'expAvg' | 'expAvgSq'

interface StepTask {
  dtype: WireDType
  info: { flops: number, step: StepInfo }
  params: FloatArray[]
  grads: FloatArray[]
  /** Per parameter, its state tensors before the step (none when the state is initial). */
  state: FloatArray[][]
}

const show = (name: string): string => JSON.stringify(name)

/** The names of `map` checked against the parameters' names: the same set, else INVALID_ARGUMENT naming one that differs. */
function checkNames (names: string[], map: Record<string, unknown>, what: string): void {
  const own = Object.keys(map)
  const missing = names.find(n => !Object.hasOwn(map, n))
  if (missing !== undefined) throw invalidArgument(`${what} has no tensor for parameter ${show(missing)}; it needs one for each of params' names`)
  const extra = own.find(n => !names.includes(n))
  if (extra !== undefined) throw invalidArgument(`${what} names ${show(extra)}, which is not in params`)
}

/** The state tensors the body gives, checked against the optimizer: none (initial), or every one it keeps. */
function givenState (body: StepBody, info: Pick<StepInfo, 'kind' | 'stateTensors'>): StateName[] {
  const state = body.state ?? {}
  const keys = Object.keys(state) as Array<keyof typeof state>
  const allowed: string[] = info.kind === 'sgd' ? [...info.stateTensors] : ['step', ...info.stateTensors]
  const foreign = keys.find(k => !allowed.includes(k))
  if (foreign !== undefined) {
    const what = info.kind === 'sgd' && info.stateTensors.length === 0 ? 'sgd without momentum keeps no state' : `the state of ${info.kind} is ${allowed.join(', ')}`
    throw invalidArgument(`state.${foreign} is not state of this step: ${what}`)
  }
  if (keys.length === 0) return []
  const absent = allowed.find(k => !keys.includes(k as keyof typeof state))
  if (absent !== undefined) throw invalidArgument(`state has ${keys.join(', ')} but not ${absent}: give the whole state the previous reply returned, or none for the first step`)
  return [...info.stateTensors]
}

const optimizerStepOp = defineOperation({
  name: 'optimizerStep',
  path: 'optimizer/step',
  summary: 'One optimizer step: sgd, adam or adamw (torch.optim.SGD, Adam, AdamW)',
  description: 'Exactly one step of torch.optim.SGD (momentum, dampening, Nesterov, weight decay), Adam or AdamW over the named ' +
    'parameters, given their gradients and the state the previous reply returned (absent: the initial state). The reply is ' +
    'the new parameters and the new state, ready to post back with the next gradients: {"momentumBuffer": {…}} for sgd with ' +
    'momentum, {"step", "expAvg", "expAvgSq"} for adam and adamw, {} for sgd without momentum. Every tensor has the one ' +
    'result dtype (all the body\'s tensors promoted, or dtype). In a safetensors body the tensors are params.<name>, ' +
    'grads.<name>, state.expAvg.<name>, … (a name may hold dots) and state.step sits in __metadata__, as in the reply.',
  body: Body,
  example: { optimizer: 'adam', lr: 0.1, params: { w: [1, -2], b: 0.5 }, grads: { w: [0.5, -1], b: 2 } },
  exampleReply: {
    params: {
      w: { shape: [2], dtype: 'float64', data: [0.900000002, -1.900000001] },
      b: { shape: [], dtype: 'float64', data: 0.4000000005 }
    },
    state: {
      step: 1,
      expAvg: {
        w: { shape: [2], dtype: 'float64', data: [0.04999999999999999, -0.09999999999999998] },
        b: { shape: [], dtype: 'float64', data: 0.19999999999999996 }
      },
      expAvgSq: {
        w: { shape: [2], dtype: 'float64', data: [0.0002500000000000002, 0.0010000000000000009] },
        b: { shape: [], dtype: 'float64', data: 0.0040000000000000036 }
      }
    }
  },
  reply: {
    params: Named(ResultTensorSchema, 'The parameters after the step'),
    state: ReplyStateSchema
  },
  tensorMaps: ['params', 'grads', 'state.momentumBuffer', 'state.expAvg', 'state.expAvgSq'],
  prepare (body: StepBody, decode) {
    const names = Object.keys(body.params)
    if (names.length === 0) throw invalidArgument('params is empty: name at least one parameter')
    checkNames(names, body.grads, 'grads')
    const state = body.state ?? {}
    // (the options first: which state this optimizer keeps)
    const probe = stepInfo(body, true, 0)
    const stateNames = givenState(body, probe)
    const info = stepInfo(body, stateNames.length === 0, state.step ?? 0)
    for (const s of stateNames) checkNames(names, state[s] as Record<string, unknown>, `state.${s}`)
    const decoded: DecodedTensor[] = []
    const of = (map: Record<string, unknown>, field: string, name: string, shape?: number[]): DecodedTensor => {
      const t = decode.tensor(map[name], `${field}.${name}`)
      if (shape !== undefined && !sameShape(t.shape, shape)) {
        throw shapeMismatch(`${field}[${show(name)}] ${formatShape(t.shape)} must have the shape of params[${show(name)}], ${formatShape(shape)}`)
      }
      decoded.push(t)
      return t
    }
    const rows = names.map(name => {
      const p = of(body.params, 'params', name)
      return { p, g: of(body.grads, 'grads', name, p.shape), s: stateNames.map(s => of(state[s] as Record<string, unknown>, `state.${s}`, name, p.shape)) }
    })
    const dtype = computeDtype(decoded, body.dtype)
    let elements = 0
    for (const r of rows) elements += r.p.data.length
    checkElements(elements * (1 + info.stateTensors.length), 'the reply\'s tensors', decode.limits)
    const flops = elements * info.flopsPerElement
    checkFlops(flops, `this ${info.kind} step`, decode.limits)
    const task: StepTask = {
      dtype,
      info: { flops, step: info },
      params: rows.map(r => castTo(r.p.data, dtype)),
      grads: rows.map(r => castTo(r.g.data, dtype)),
      state: rows.map(r => r.s.map(t => castTo(t.data, dtype)))
    }
    const outputs: ReplySpec['outputs'] = rows.map((r, i) => ({ field: `params.${names[i]}`, path: ['params', names[i]], shape: r.p.shape, length: r.p.data.length }))
    if (info.stateTensors.length === 0) outputs.push({ field: 'state', path: ['state'], shape: [], length: 0, value: {} })
    if (info.kind !== 'sgd') outputs.push({ field: 'state.step', path: ['state', 'step'], shape: [], length: 0, value: info.step })
    for (const s of info.stateTensors) {
      rows.forEach((r, i) => outputs.push({ field: `state.${s}.${names[i]}`, path: ['state', s, names[i]], shape: r.p.shape, length: r.p.data.length }))
    }
    return { task, transfer: buffersOf(...task.params, ...task.grads, ...task.state.flat()), outputs }
  },
  run (task: StepTask): FloatArray {
    const { step } = task.info
    let total = 0
    for (const p of task.params) total += p.length
    const count = step.stateTensors.length
    const out = resultArray(task.dtype, total * (1 + count))
    let at = 0
    const next = (n: number): FloatArray => {
      at += n
      return out.subarray(at - n, at)
    }
    const outParams = task.params.map(p => next(p.length))
    const outState = task.params.map(() => new Array<FloatArray>(count))
    for (let s = 0; s < count; s++) task.params.forEach((p, i) => { outState[i][s] = next(p.length) })
    task.params.forEach((param, i) => {
      optimizerStep(step, { param, grad: task.grads[i], state: task.state[i], outParam: outParams[i], outState: outState[i] })
    })
    return out
  }
})

export default optimizerStepOp
