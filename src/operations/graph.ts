/**
 * POST /v1/graph: a small program of the service's own operations in one request, its gradients
 * by reverse mode, and an optimizer step on them.
 *
 * The prepare step checks the whole graph before any work: names, references (inputs and earlier
 * nodes only), each node's fields against its operation's own schema (tensor fields as names), and
 * then plans it: each node's operation prepares the node from the shapes alone (its values are
 * placeholders, empty arrays), which checks its shapes and options and counts its work against
 * the limits; so do the backward operations of the nodes the gradient passes through, and the
 * optimizer's step. The run step, in one worker task, does the same with the values: each node is
 * its operation's prepare and run step, each gradient its backward operation's, summed where a value
 * feeds several nodes, and a value's buffer goes back to the pool once nothing later needs it.
 */
import { type Static, type TSchema, Type } from 'typebox'
import { ApiError, invalidArgument, isApiError, shapeMismatch, tooLarge } from '../errors.js'
import { checkFlops, formatShape, product, sameShape } from '../kernels/shape.js'
import type { FloatArray, Limits, WireDType } from '../kernels/types.js'
import { compileBodyValidator } from '../schemas/ajv.js'
import { EncodingSchema, ResultTensorSchema, TensorSchema } from '../schemas/tensor.js'
import { formatSchemaErrors } from '../schemas/validation.js'
import { buffers } from '../tensor/buffers.js'
import { castTo, computeDtype, type DecodedMask, type DecodedTensor, decodeTensor, isFileTensor } from '../tensor/decode.js'
import type { ReplyOutput } from '../tensor/encode.js'
import { FORWARD, type ForwardName, OPERATIONS } from './index.js'
import { ReplyStateSchema, UPDATE_FIELDS } from './optimizer.js'
import { type Decoder, defineOperation, type Operation, type Prepared, resultArray } from './spec.js'

const NAME = '^[A-Za-z_][A-Za-z0-9_]*$'
const NAME_RE = new RegExp(NAME)
/** Names that would reach an object's prototype. */
const RESERVED = new Set(['__proto__', 'constructor', 'prototype'])
/** The most nodes any configuration allows (MAX_GRAPH_NODES is at most this); the schema's bound. */
export const GRAPH_NODES_CAP = 10000
/** The most inputs of one graph. */
const MAX_INPUTS = 64

const Name = Type.String({ pattern: NAME, maxLength: 64 })

/** A node: its name and operation, and the operation's own fields (checked against its schema by the prepare step). */
const NodeSchema = Type.Unsafe<{ name: string, operation: string, [field: string]: unknown }>(Type.Object({
  name: Name,
  operation: Type.String({ maxLength: 64, description: 'An operation route: matmul, dot, linear, conv2d, attention, einsum, unary, binary, reduce, softmax, layer_norm, pool2d or loss' })
}, {
  additionalProperties: true,
  description: 'A node: its name, its operation, and that operation\'s body fields, every tensor field the name of an input or an earlier node (einsum\'s operands a list of names)'
}))

const Body = Type.Object({
  inputs: Type.Record(Type.String({ pattern: NAME }), TensorSchema, {
    additionalProperties: false,
    minProperties: 1,
    maxProperties: MAX_INPUTS,
    description: 'The graph\'s tensors by name (1 to 64 of them; a name matches [A-Za-z_][A-Za-z0-9_]*, at most 64 characters)'
  }),
  nodes: Type.Array(NodeSchema, { minItems: 1, maxItems: GRAPH_NODES_CAP, description: 'The program, in order (1 to MAX_GRAPH_NODES, default 64, nodes)' }),
  outputs: Type.Optional(Type.Array(Name, { minItems: 1, maxItems: 64, description: 'The names to return (default: the last node)' })),
  gradients: Type.Optional(Type.Object({
    of: Name,
    wrt: Type.Array(Name, { minItems: 1, maxItems: MAX_INPUTS, description: 'The inputs to differentiate' }),
    gradOutput: Type.Optional(TensorSchema)
  }, { additionalProperties: false, description: 'The gradient of node `of` with respect to the inputs `wrt`, given `gradOutput` (of `of`\'s shape; 1 when left out, for a rank-0 `of`)' })),
  update: Type.Optional(Type.Object(UPDATE_FIELDS, {
    additionalProperties: false,
    description: 'One step of POST /v1/optimizer/step on the `wrt` inputs with their gradients (its fields other than params and grads)'
  })),
  encoding: Type.Optional(EncodingSchema)
}, { additionalProperties: false })

type GraphBody = Static<typeof Body>
type Node = GraphBody['nodes'][number] & Record<string, unknown>

/** A value of the graph, or a placeholder of its shape and dtype (data of length 0) while planning. */
class Held {
  constructor (readonly shape: number[], readonly dtype: WireDType, readonly data: FloatArray, readonly mask: DecodedMask | null = null) {}
}

/** How a node's fields hold tensors: field name → 'tensor', 'mask' or 'list' (einsum's operands). */
type TensorFields = Record<string, 'tensor' | 'mask' | 'list'>

const fieldsCache = new Map<string, { fields: TensorFields, validate: ReturnType<typeof compileBodyValidator> }>()

/** The tensor fields of an operation's body (from its schema), and a validator of a node's fields with those fields as names. */
function nodeSchema (op: ForwardName): { fields: TensorFields, validate: ReturnType<typeof compileBodyValidator> } {
  const cached = fieldsCache.get(op)
  if (cached !== undefined) return cached
  const body = OPERATIONS[op].body as unknown as { properties: Record<string, { $id?: string, items?: { $id?: string } }>, required?: string[] }
  const fields: TensorFields = {}
  const properties: Record<string, unknown> = {}
  for (const [key, schema] of Object.entries(body.properties)) {
    const kind = schema.$id === 'Tensor' ? 'tensor' : schema.$id === 'Mask' ? 'mask' : schema.items?.$id === 'Tensor' ? 'list' : null
    if (kind !== null) fields[key] = kind
    properties[key] = kind === null ? schema : kind === 'list' ? { ...schema, items: Name } : Name
  }
  // (the encoding of a node's value is the graph's, and explain mode the single routes': not a node's fields)
  delete properties.encoding
  delete properties.explain
  const schema = { type: 'object', properties, required: body.required ?? [], additionalProperties: false } as unknown as TSchema
  const entry = { fields, validate: compileBodyValidator(schema) }
  fieldsCache.set(op, entry)
  return entry
}

/** A decoder over held values: a node's tensor fields hold them in place of wire tensors. */
function heldDecoder (limits: Limits): Decoder {
  return {
    limits,
    tensor (value) {
      const h = value as Held
      if (h.mask !== null) {
        if (h.mask.kind === 'bool') throw invalidArgument('a boolean tensor may only be an attention mask')
        return { shape: h.shape, dtype: 'float64', data: h.mask.data as Float64Array }
      }
      return { shape: h.shape, dtype: h.dtype, data: h.data }
    },
    mask (value) {
      const h = value as Held
      if (h.mask !== null) return h.mask
      return { shape: h.shape, kind: 'additive', data: h.data instanceof Float64Array ? h.data : Float64Array.from(h.data) }
    }
  }
}

/** The service's error with its message prefixed by where in the graph it arose (same code); any other error as it is. */
function prefixed (where: string, err: unknown): unknown {
  if (!isApiError(err)) return err
  return new ApiError(err.code, `${where}: ${err.message}`)
}

/** An error of node i, its message prefixed with the node's index and name. */
function atNode (i: number, name: string, err: unknown): unknown {
  return prefixed(`nodes[${i}] (${JSON.stringify(name)})`, err)
}

/**
 * The optimizer step of `update` prepared on the wrt inputs, with the gradient of each (`gradient`: a placeholder
 * while planning, the computed one when running); its errors prefixed `update:`.
 */
function prepareUpdate (update: Record<string, unknown>, wrt: string[], inputs: GraphTask['inputs'], gradient: (name: string, v: GraphTask['inputs'][string]) => FloatArray, decoder: Decoder): Prepared {
  const params: Record<string, Held> = {}
  const grads: Record<string, Held> = {}
  for (const name of wrt) {
    const v = inputs[name]
    params[name] = new Held(v.shape, v.dtype, v.data)
    grads[name] = new Held(v.shape, v.dtype, gradient(name, v))
  }
  try {
    return OPERATIONS.optimizerStep.prepare({ ...update, params, grads } as never, decoder)
  } catch (err) {
    throw prefixed('update', err)
  }
}

/** Node i's body for its operation: its fields, every tensor field's name replaced by its value. */
function nodeBody (node: Node, fields: TensorFields, value: (name: string) => Held): Record<string, unknown> {
  const body: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(node)) {
    if (key === 'name' || key === 'operation') continue
    const kind = fields[key]
    body[key] = kind === undefined ? v : kind === 'list' ? (v as string[]).map(value) : value(v as string)
  }
  return body
}

/** The names a node's tensor fields refer to, by field (einsum's operands by index). */
function referencesOf (node: Node, fields: TensorFields): Array<[field: string, name: string]> {
  const refs: Array<[string, string]> = []
  for (const [key, kind] of Object.entries(fields)) {
    const v = node[key]
    if (v === undefined) continue
    if (kind === 'list') (v as string[]).forEach((n, i) => refs.push([`${key}.${i}`, n]))
    else refs.push([key, v as string])
  }
  return refs
}

/** One node's backward: the operand fields to differentiate (einsum: operand indices). */
interface BackwardStep { node: number, wrt: string[] }

interface GraphTask {
  dtype: WireDType
  info: { flops: number }
  inputs: Record<string, { shape: number[], dtype: WireDType, data: FloatArray, mask: DecodedMask | null }>
  nodes: Node[]
  /** The nodes computed forward (those the outputs and the gradient need), in order. */
  forward: number[]
  backward: BackwardStep[]
  /** The gradient of `of`: gradOutput, or null for 1 (a rank-0 node). */
  of: number
  gradOutput: FloatArray | null
  wrt: string[]
  update: Record<string, unknown> | null
  outputs: string[]
  layout: ReplyOutput[]
}

const graph = defineOperation({
  name: 'graph',
  summary: 'A graph of operations: forward, gradients (reverse mode) and an optimizer step in one request',
  description: 'A small program of the service\'s own operations: named inputs, nodes (each an operation route with that route\'s ' +
    'fields, every tensor field the name of an input or an earlier node), the outputs wanted (default: the last node), ' +
    'optionally the gradient of one node with respect to chosen inputs (torch.autograd.grad: each node\'s backward operation, ' +
    'summed where a value feeds several nodes), and optionally one optimizer step on them (the fields of /v1/optimizer/step ' +
    'other than params and grads). The whole graph is checked before anything is computed: references to inputs and earlier ' +
    'nodes only, each node\'s fields, every value\'s shape, every intermediate against MAX_ELEMENTS and the whole work ' +
    '(forward, backward and update) against MAX_FLOPS; errors name the node by index and name. An attention node\'s value is ' +
    'its output. Every tensor of the reply has one dtype, the promotion of theirs.',
  body: Body,
  example: {
    inputs: { x: [[1, 2]], w: [[0.5], [-1]], t: [[1]] },
    nodes: [
      { name: 'y', operation: 'matmul', a: 'x', b: 'w' },
      { name: 'l', operation: 'loss', kind: 'mse', input: 'y', target: 't' }
    ],
    outputs: ['y', 'l'],
    gradients: { of: 'l', wrt: ['w'] },
    update: { optimizer: 'sgd', lr: 0.1 }
  },
  exampleReply: {
    outputs: {
      y: { shape: [1, 1], dtype: 'float64', data: [[-1.5]] },
      l: { shape: [], dtype: 'float64', data: 6.25 }
    },
    grads: { w: { shape: [2, 1], dtype: 'float64', data: [[-5], [-10]] } },
    params: { w: { shape: [2, 1], dtype: 'float64', data: [[1], [0]] } },
    state: {}
  },
  reply: {
    outputs: Type.Record(Type.String({ pattern: NAME }), ResultTensorSchema, { additionalProperties: false, description: 'The values asked for, by name' }),
    grads: Type.Optional(Type.Record(Type.String({ pattern: NAME }), ResultTensorSchema, { additionalProperties: false, description: 'The gradient of each `wrt` input' })),
    params: Type.Optional(Type.Record(Type.String({ pattern: NAME }), ResultTensorSchema, { additionalProperties: false, description: 'With update: the `wrt` inputs after the step' })),
    state: Type.Optional(ReplyStateSchema)
  },
  tensorMaps: ['inputs', 'update.state.momentumBuffer', 'update.state.expAvg', 'update.state.expAvgSq'],
  prepare (body: GraphBody, decode): Prepared<GraphTask> {
    const { limits } = decode
    const maxNodes = limits.maxGraphNodes ?? 64
    if (body.nodes.length > maxNodes) throw tooLarge(`the graph has ${body.nodes.length} nodes, more than ${maxNodes} (MAX_GRAPH_NODES)`)
    const nodes = body.nodes as Node[]
    // names: unique across inputs and nodes, none reaching a prototype
    const inputNames = Object.keys(body.inputs)
    for (const name of inputNames) {
      if (!NAME_RE.test(name) || name.length > 64) throw invalidArgument(`inputs: the name ${JSON.stringify(name.slice(0, 64))} must match ${NAME}, at most 64 characters`)
      if (RESERVED.has(name)) throw invalidArgument(`inputs: ${JSON.stringify(name)} may not be a name`)
    }
    const where = new Map<string, number>() // name → -1 for an input, else its node's index
    for (const name of inputNames) where.set(name, -1)
    const schemas = nodes.map((node, i) => {
      const name = node.name
      if (RESERVED.has(name)) throw invalidArgument(`nodes[${i}]: ${JSON.stringify(name)} may not be a name`)
      if (where.has(name)) throw invalidArgument(`nodes[${i}] (${JSON.stringify(name)}): the name is already ${where.get(name) === -1 ? 'an input' : `nodes[${where.get(name) as number}]`}`)
      if (!(FORWARD as string[]).includes(node.operation)) {
        throw invalidArgument(`nodes[${i}] (${JSON.stringify(name)}): operation must be one of ${FORWARD.join(', ')}; got ${JSON.stringify(node.operation.slice(0, 64))}`)
      }
      const schema = nodeSchema(node.operation as ForwardName)
      const fields: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(node)) if (k !== 'name' && k !== 'operation') fields[k] = v
      if (!schema.validate(fields)) throw invalidArgument(formatSchemaErrors(schema.validate.errors ?? [], `nodes[${i}] (${JSON.stringify(name)})`))
      for (const [field, ref] of referencesOf(node, schema.fields)) {
        if (!where.has(ref)) {
          const later = nodes.findIndex(n => n.name === ref)
          throw invalidArgument(`nodes[${i}] (${JSON.stringify(name)}): ${field} names ${JSON.stringify(ref)}, ` +
            (later >= 0 ? `a later node (nodes[${later}]): a node may use only inputs and earlier nodes` : 'which is neither an input nor an earlier node'))
        }
      }
      where.set(name, i)
      return schema
    })
    const nodeIndex = (name: string): number | undefined => { const i = where.get(name); return i === undefined || i < 0 ? undefined : i }
    const outputs = body.outputs ?? [nodes[nodes.length - 1].name]
    for (const name of outputs) if (!where.has(name)) throw invalidArgument(`outputs names ${JSON.stringify(name)}, which is neither an input nor a node`)
    if (new Set(outputs).size !== outputs.length) throw invalidArgument('outputs names a value twice')

    // the inputs, decoded (as masks where a node takes one as its mask)
    const usedAsMask = new Set<string>()
    nodes.forEach((node, i) => { for (const [field, ref] of referencesOf(node, schemas[i].fields)) if (schemas[i].fields[field] === 'mask') usedAsMask.add(ref) })
    const inputs: GraphTask['inputs'] = {}
    for (const name of inputNames) {
      if (usedAsMask.has(name)) {
        const m = decode.mask(body.inputs[name], `inputs.${name}`)
        inputs[name] = { shape: m.shape, dtype: 'float64', data: m.kind === 'additive' ? m.data as Float64Array : new Float64Array(0), mask: m }
      } else {
        const t: DecodedTensor = decode.tensor(body.inputs[name], `inputs.${name}`)
        inputs[name] = { shape: t.shape, dtype: t.dtype, data: t.data, mask: null }
      }
    }

    // (in a safetensors body, gradOutput and the update's state may be tensors of the file, or JSON in __metadata__,
    // where the contract puts the rest of a graph's body)
    const inMetadata = (v: unknown, name: string): DecodedTensor => isFileTensor(v) ? decode.tensor(v, name) : decodeTensor(v, name, limits)

    // a boolean mask has no numbers: it is no output, and nothing takes a gradient with respect to it
    const boolean = (name: string): boolean => inputs[name]?.mask?.kind === 'bool'
    for (const name of outputs) if (boolean(name)) throw invalidArgument(`outputs names ${JSON.stringify(name)}, a boolean mask`)
    for (const name of body.gradients?.wrt ?? []) if (boolean(name)) throw invalidArgument(`gradients.wrt names ${JSON.stringify(name)}, a boolean mask`)

    // the plan: every node prepared from shapes alone
    const empty = (dtype: WireDType): FloatArray => dtype === 'float64' ? new Float64Array(0) : new Float32Array(0)
    const planned = new Map<string, Held>()
    // (the inputs with their values: a class-index target is checked now)
    for (const [name, v] of Object.entries(inputs)) planned.set(name, new Held(v.shape, v.dtype, v.data, v.mask))
    const placeholder = (name: string): Held => planned.get(name) as Held
    const decoder = heldDecoder(limits)
    let flops = 0
    const forwardInfo = nodes.map((node, i) => {
      const op: Operation = OPERATIONS[node.operation as ForwardName]
      try {
        const p = op.prepare(nodeBody(node, schemas[i].fields, placeholder), decoder)
        flops += p.task.info.flops
        const out = p.outputs[0]
        planned.set(node.name, new Held(out.shape, p.task.dtype, empty(p.task.dtype)))
        return { dtype: p.task.dtype, shape: out.shape }
      } catch (err) {
        throw atNode(i, node.name, err)
      }
    })

    // the gradient: the nodes on a path from a wrt input to `of`, in reverse
    const backward: BackwardStep[] = []
    let of = -1
    let gradOutput: FloatArray | null = null
    const wrt = body.gradients?.wrt ?? []
    if (body.gradients !== undefined) {
      const g = body.gradients
      const ofIndex = nodeIndex(g.of)
      if (ofIndex === undefined) throw invalidArgument(`gradients.of names ${JSON.stringify(g.of)}, which is not a node`)
      of = ofIndex
      for (const name of wrt) if (where.get(name) !== -1) throw invalidArgument(`gradients.wrt names ${JSON.stringify(name)}, which is not an input`)
      if (new Set(wrt).size !== wrt.length) throw invalidArgument('gradients.wrt names an input twice')
      const ofShape = forwardInfo[of].shape
      if (g.gradOutput === undefined) {
        if (ofShape.length !== 0) throw invalidArgument(`gradients.gradOutput is needed: node ${JSON.stringify(g.of)} has shape ${formatShape(ofShape)}, not rank 0`)
      } else {
        const t = inMetadata(g.gradOutput, 'gradients.gradOutput')
        if (!sameShape(t.shape, ofShape)) throw shapeMismatch(`gradients.gradOutput ${formatShape(t.shape)} must have the shape of node ${JSON.stringify(g.of)}, ${formatShape(ofShape)}`)
        gradOutput = t.data
      }
      // values that depend on a wrt input, and nodes `of` depends on
      const depends = new Set<string>(wrt)
      nodes.forEach((node, i) => { if (referencesOf(node, schemas[i].fields).some(([, r]) => depends.has(r))) depends.add(node.name) })
      const needed = new Set<string>([g.of])
      for (let i = of; i >= 0; i--) {
        if (!needed.has(nodes[i].name)) continue
        for (const [, r] of referencesOf(nodes[i], schemas[i].fields)) needed.add(r)
      }
      for (let i = of; i >= 0; i--) {
        const node = nodes[i]
        if (!needed.has(node.name) || !depends.has(node.name)) continue
        const fields = referencesOf(node, schemas[i].fields).filter(([, r]) => depends.has(r)).map(([f]) => f)
        const names = node.operation === 'einsum' ? fields.map(f => f.slice('operands.'.length)) : fields
        const step = { node: i, wrt: [...new Set(names)] }
        const bwd: Operation = OPERATIONS[`${node.operation as ForwardName}Backward`]
        try {
          const body = nodeBody(node, schemas[i].fields, placeholder)
          body.gradOutput = new Held(forwardInfo[i].shape, forwardInfo[i].dtype, empty(forwardInfo[i].dtype))
          body.wrt = node.operation === 'einsum' ? step.wrt.map(Number) : step.wrt
          flops += bwd.prepare(body, decoder).task.info.flops
        } catch (err) {
          throw atNode(i, node.name, err)
        }
        backward.push(step)
      }
    } else if (body.update !== undefined) {
      throw invalidArgument('update needs gradients: it steps the gradients\' wrt inputs')
    }

    // the step's state, decoded now (it moves with the task)
    let update: Record<string, unknown> | null = null
    if (body.update !== undefined) {
      update = { ...body.update }
      const state = body.update.state
      if (state !== undefined) {
        const decoded: Record<string, unknown> = { ...state }
        for (const key of ['momentumBuffer', 'expAvg', 'expAvgSq'] as const) {
          const map = state[key]
          if (map === undefined) continue
          decoded[key] = Object.fromEntries(Object.entries(map).map(([n, t]) => {
            const d = inMetadata(t, `update.state.${key}.${n}`)
            return [n, new Held(d.shape, d.dtype, d.data)]
          }))
        }
        update.state = decoded
      }
    }

    // the update: the optimizer's own checks, on the wrt inputs, gradients of their shapes and the state
    let updateLayout: ReplyOutput[] = []
    if (update !== null) {
      const p = prepareUpdate(update, wrt, inputs, (_, v) => empty(v.dtype), decoder)
      flops += p.task.info.flops
      updateLayout = p.outputs
    }
    checkFlops(flops, 'this graph (forward, gradients and update)', limits)

    // what runs forward: the nodes the outputs and `of` depend on
    const wanted = new Set<string>([...outputs, ...(of >= 0 ? [nodes[of].name] : [])])
    const forward: number[] = []
    for (let i = nodes.length - 1; i >= 0; i--) {
      if (!wanted.has(nodes[i].name)) continue
      forward.unshift(i)
      for (const [, r] of referencesOf(nodes[i], schemas[i].fields)) wanted.add(r)
    }
    // the reply: outputs, then the gradients, then the step's parameters and state, in one dtype
    const valueOf = (name: string): { shape: number[], dtype: WireDType } => {
      const i = nodeIndex(name)
      return i === undefined ? inputs[name] : forwardInfo[i]
    }
    const dtypes = [...outputs.map(valueOf), ...backward.map(s => forwardInfo[s.node]), ...wrt.map(n => inputs[n])]
    const dtype = computeDtype(dtypes, undefined)
    const layout: ReplyOutput[] = outputs.map(name => {
      const { shape } = valueOf(name)
      return { field: `outputs.${name}`, path: ['outputs', name], shape, length: product(shape) }
    })
    for (const name of wrt) layout.push({ field: `grads.${name}`, path: ['grads', name], shape: inputs[name].shape, length: product(inputs[name].shape) })
    for (const o of updateLayout) layout.push(o)

    const task: GraphTask = { dtype, info: { flops }, inputs, nodes, forward, backward, of, gradOutput, wrt, update, outputs, layout }
    const transfer = new Set<ArrayBuffer>()
    for (const v of Object.values(inputs)) transfer.add((v.mask?.data ?? v.data).buffer as ArrayBuffer)
    if (gradOutput !== null) transfer.add(gradOutput.buffer as ArrayBuffer)
    const state = update?.state as Record<string, Record<string, Held> | number> | undefined
    for (const map of Object.values(state ?? {})) if (typeof map === 'object') for (const h of Object.values(map)) transfer.add(h.data.buffer as ArrayBuffer)
    return { task, transfer: [...transfer], outputs: layout }
  },
  run: (task: GraphTask) => runGraph(task)
})

export default graph

let peakBytes = 0

/** The most bytes of node values held at once by the last graph this thread ran (intermediates freed as they go). */
export function lastGraphPeakBytes (): number {
  return peakBytes
}

/** The graph computed: forward, backward, update; the reply's tensors in one array of the reply's dtype. */
function runGraph (task: GraphTask): FloatArray {
  const { nodes, inputs } = task
  const limits: Limits = { maxElements: Number.MAX_SAFE_INTEGER, maxFlops: Infinity }
  const decoder = heldDecoder(limits)
  const schemas = nodes.map(n => nodeSchema(n.operation as ForwardName))
  const values = new Map<string, Held>()
  for (const [name, v] of Object.entries(inputs)) values.set(name, new Held(v.shape, v.dtype, v.data, v.mask))
  const value = (name: string): Held => values.get(name) as Held
  /**
   * The buffers of node values (from this thread's pool), each given back once nothing later needs its value: the
   * nodes computed after it, the backward steps (which take their node's operands), the reply.
   */
  const owned = new Map<string, ArrayBuffer>()
  /** Each node value's shape and dtype (kept after its buffer goes back: its backward step's gradOutput has them). */
  const kinds = new Map<string, { shape: number[], dtype: WireDType }>()
  const uses = new Map<string, number>()
  const use = (name: string, by: number): void => { uses.set(name, (uses.get(name) ?? 0) + by) }
  for (const i of task.forward) for (const [, r] of referencesOf(nodes[i], schemas[i].fields)) use(r, 1)
  for (const step of task.backward) for (const [, r] of referencesOf(nodes[step.node], schemas[step.node].fields)) use(r, 1)
  for (const name of task.outputs) use(name, 1)
  let live = 0
  peakBytes = 0
  const release = (name: string): void => {
    use(name, -1)
    const buffer = owned.get(name)
    if (buffer === undefined || (uses.get(name) ?? 0) > 0) return
    owned.delete(name)
    values.delete(name)
    live -= buffer.byteLength
    buffers.give(buffer)
  }
  try {
    for (const i of task.forward) {
      const node = nodes[i]
      const op: Operation = OPERATIONS[node.operation as ForwardName]
      try {
        const p = op.prepare(nodeBody(node, schemas[i].fields, value), decoder)
        const result = op.run(p.task)
        owned.set(node.name, result.buffer as ArrayBuffer)
        live += result.buffer.byteLength
        peakBytes = Math.max(peakBytes, live)
        const out = p.outputs[0]
        values.set(node.name, new Held(out.shape, p.task.dtype, result.subarray(0, out.length)))
        kinds.set(node.name, { shape: out.shape, dtype: p.task.dtype })
      } catch (err) {
        throw atNode(i, node.name, err)
      }
      for (const [, r] of referencesOf(node, schemas[i].fields)) release(r)
      // (a value no later node, backward step or output takes: `of` itself, when not an output)
      use(node.name, 0)
      if ((uses.get(node.name) ?? 0) === 0) release(node.name)
    }
    // reverse mode: each node's gradient, summed in float64 where a value feeds several nodes
    const grads = new Map<string, Float64Array>()
    const add = (name: string, g: FloatArray): void => {
      const acc = grads.get(name)
      if (acc === undefined) grads.set(name, Float64Array.from(g))
      else for (let k = 0; k < acc.length; k++) acc[k] += g[k]
    }
    if (task.of >= 0) grads.set(nodes[task.of].name, task.gradOutput === null ? Float64Array.of(1) : Float64Array.from(task.gradOutput))
    for (const step of task.backward) {
      const node = nodes[step.node]
      const g = grads.get(node.name)
      if (g === undefined) continue // (nothing flowed back to this node)
      const v = kinds.get(node.name) as { shape: number[], dtype: WireDType }
      const bwd: Operation = OPERATIONS[`${node.operation as ForwardName}Backward`]
      try {
        const body = nodeBody(node, schemas[step.node].fields, value)
        body.gradOutput = new Held(v.shape, v.dtype, castTo(g, v.dtype))
        body.wrt = node.operation === 'einsum' ? step.wrt.map(Number) : step.wrt
        const p = bwd.prepare(body, decoder)
        const result = bwd.run(p.task)
        let at = 0
        for (const o of p.outputs) {
          const slice = result.subarray(at, at + o.length)
          at += o.length
          if (!o.field.startsWith('grads.')) continue
          const field = o.field.slice('grads.'.length)
          const name = field.startsWith('operands.') ? (node.operands as string[])[Number(field.slice('operands.'.length))] : node[field] as string
          add(name, slice)
        }
        buffers.give(result.buffer as ArrayBuffer)
      } catch (err) {
        throw atNode(step.node, node.name, err)
      }
      grads.delete(node.name)
      for (const [, r] of referencesOf(node, schemas[step.node].fields)) release(r)
    }
    // the reply's tensors
    let total = 0
    for (const o of task.layout) total += o.length
    const out = resultArray(task.dtype, total)
    let at = 0
    const put = (data: ArrayLike<number>, length: number): void => {
      out.set(data, at)
      at += length
    }
    const layout = task.layout
    let k = 0
    for (; k < layout.length && layout[k].field.startsWith('outputs.'); k++) put(value(task.outputs[k]).data, layout[k].length)
    const gradOf = (name: string, length: number): Float64Array => grads.get(name) ?? new Float64Array(length)
    for (const name of task.wrt) put(gradOf(name, layout[k].length), layout[k++].length)
    if (task.update !== null) {
      const p = prepareUpdate(task.update, task.wrt, inputs, (name, v) => castTo(gradOf(name, product(v.shape)), v.dtype), decoder)
      const stepped = OPERATIONS.optimizerStep.run(p.task as never)
      let from = 0
      for (const o of p.outputs) {
        if (o.value === undefined) put(stepped.subarray(from, from + o.length), o.length)
        from += o.length
      }
      buffers.give(stepped.buffer as ArrayBuffer)
    }
    return out
  } finally {
    for (const b of owned.values()) buffers.give(b)
  }
}
