/**
 * One optimizer step, elementwise over each parameter: torch.optim.SGD (momentum, dampening,
 * Nesterov, weight decay), Adam and AdamW, in the order of operations of their single-tensor
 * implementations (`_single_tensor_sgd`, `_single_tensor_adam`), each element computed in float64
 * and stored once in the array's type. The options are checked as the optimizers' constructors
 * check them.
 */
import { invalidArgument } from '../errors.js'
import { show } from './shape.js'
import type { FloatArray } from './types.js'

export const OPTIMIZERS = ['sgd', 'adam', 'adamw'] as const
export type OptimizerKind = typeof OPTIMIZERS[number]

/** The options of a step as the body gives them (the defaults are torch's). */
export interface OptimizerOptions {
  optimizer: string
  lr: number
  momentum?: number
  dampening?: number
  weightDecay?: number
  nesterov?: boolean
  betas?: number[]
  eps?: number
}

/** The state tensors of each optimizer, per parameter, in the reply's order. */
export const STATE_TENSORS: Record<OptimizerKind, ReadonlyArray<'momentumBuffer' | 'expAvg' | 'expAvgSq'>> = {
  sgd: ['momentumBuffer'],
  adam: ['expAvg', 'expAvgSq'],
  adamw: ['expAvg', 'expAvgSq']
}

export interface StepInfo {
  kind: OptimizerKind
  lr: number
  momentum: number
  dampening: number
  weightDecay: number
  nesterov: boolean
  beta1: number
  beta2: number
  eps: number
  /** The state tensors this step keeps per parameter (none for sgd without momentum). */
  stateTensors: ReadonlyArray<'momentumBuffer' | 'expAvg' | 'expAvgSq'>
  /** Whether the state is the initial one (no buffers yet). */
  initial: boolean
  /** adam, adamw: the step count after this step. */
  step: number
  /** Work per element. */
  flopsPerElement: number
}

const nonNegative = (v: number, what: string): number => {
  if (!(v >= 0)) throw invalidArgument(`${what} must be at least 0; got ${show(v)}`)
  return v
}

/** The step's options checked (as torch's constructors check them), with the step count before it (adam, adamw). */
export function stepInfo (o: OptimizerOptions, initial: boolean, previousStep: number): StepInfo {
  if (!(OPTIMIZERS as readonly string[]).includes(o.optimizer)) {
    throw invalidArgument(`optimizer must be one of ${OPTIMIZERS.join(', ')}; got ${show(o.optimizer)}`)
  }
  const kind = o.optimizer as OptimizerKind
  const sgd = kind === 'sgd'
  const misplaced = sgd ? (['betas', 'eps'] as const).filter(k => o[k] !== undefined) : (['momentum', 'dampening', 'nesterov'] as const).filter(k => o[k] !== undefined)
  if (misplaced.length > 0) throw invalidArgument(`${misplaced.join(' and ')} ${misplaced.length > 1 ? 'are' : 'is'} not an option of ${kind}`)
  const lr = nonNegative(o.lr, 'lr')
  const weightDecay = nonNegative(o.weightDecay ?? (kind === 'adamw' ? 0.01 : 0), 'weightDecay')
  const momentum = nonNegative(o.momentum ?? 0, 'momentum')
  const dampening = o.dampening ?? 0
  const nesterov = o.nesterov ?? false
  if (nesterov && (momentum <= 0 || dampening !== 0)) throw invalidArgument('nesterov needs a momentum above 0 and a dampening of 0')
  const betas = o.betas ?? [0.9, 0.999]
  if (betas.length !== 2) throw invalidArgument(`betas must be a pair; got ${show(betas)}`)
  for (const [i, b] of betas.entries()) {
    if (!(b >= 0 && b < 1)) throw invalidArgument(`betas[${i}] must be in [0, 1); got ${show(b)}`)
  }
  const eps = nonNegative(o.eps ?? 1e-8, 'eps')
  const stateTensors = sgd && momentum === 0 ? [] : STATE_TENSORS[kind]
  return {
    kind,
    lr,
    momentum,
    dampening,
    weightDecay,
    nesterov,
    beta1: betas[0],
    beta2: betas[1],
    eps,
    stateTensors,
    initial,
    step: sgd ? 0 : previousStep + 1,
    flopsPerElement: sgd ? 6 : 12
  }
}

/** One parameter's arrays: its value and gradient, the state before the step (null when initial), and the arrays to fill. */
export interface ParamArrays {
  param: FloatArray
  grad: FloatArray
  /** The state tensors before the step, in `stateTensors` order; empty when initial. */
  state: FloatArray[]
  outParam: FloatArray
  /** The state tensors after the step, in `stateTensors` order. */
  outState: FloatArray[]
}

/** One step of the optimizer over one parameter. */
export function optimizerStep (info: StepInfo, arrays: ParamArrays): void {
  if (info.kind === 'sgd') sgdStep(info, arrays)
  else adamStep(info, arrays)
}

function sgdStep (info: StepInfo, { param: p, grad: g, state, outParam, outState }: ParamArrays): void {
  const { lr, momentum, dampening, weightDecay, nesterov } = info
  const n = p.length
  const buf = momentum === 0 ? null : outState[0]
  const prior = info.initial ? null : state[0]
  for (let i = 0; i < n; i++) {
    // d_p = grad + weight_decay·param
    let d = weightDecay !== 0 ? g[i] + weightDecay * p[i] : g[i]
    if (buf !== null) {
      // buf = clone(d_p) on the first step, else buf·momentum + (1 − dampening)·d_p
      const b = prior === null ? d : prior[i] * momentum + (1 - dampening) * d
      buf[i] = b
      const stored = buf[i]
      d = nesterov ? d + momentum * stored : stored
    }
    outParam[i] = p[i] + -lr * d
  }
}

function adamStep (info: StepInfo, { param: p, grad: g, state, outParam, outState }: ParamArrays): void {
  const { lr, beta1, beta2, eps, weightDecay, step } = info
  const decoupled = info.kind === 'adamw'
  const n = p.length
  const [m, v] = outState
  const m0 = info.initial ? null : state[0]
  const v0 = info.initial ? null : state[1]
  const biasCorrection1 = 1 - beta1 ** step
  const biasCorrection2 = 1 - beta2 ** step
  const stepSize = lr / biasCorrection1
  const bc2Sqrt = Math.sqrt(biasCorrection2)
  // (adamw: param·(1 − lr·weight_decay) first; adam: grad + weight_decay·param)
  const shrink = 1 - lr * weightDecay
  for (let i = 0; i < n; i++) {
    let x = p[i]
    let d = g[i]
    if (weightDecay !== 0) {
      if (decoupled) x = p[i] * shrink
      else d = d + weightDecay * x
    }
    // exp_avg·beta1 + (1 − beta1)·grad; exp_avg_sq·beta2 + (1 − beta2)·grad²
    m[i] = (m0 === null ? 0 : m0[i] * beta1) + (1 - beta1) * d
    v[i] = (v0 === null ? 0 : v0[i] * beta2) + (1 - beta2) * d * d
    const denom = Math.sqrt(v[i]) / bc2Sqrt + eps
    outParam[i] = x + -stepSize * (m[i] / denom)
  }
}
