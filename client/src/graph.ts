/**
 * A builder of `POST /v1/graph` bodies: inputs and nodes by method, one per forward operation route
 * (`g.linear({ input: x, weights: w, bias: b })`), each typed by that route's body with its tensor
 * fields taking the graph's values; then `g.body({ outputs, gradients, update })` for `client.graph`.
 */
import type { Args } from './index.js'
import type { components, paths } from './openapi.js'
import { OPERATION_ROUTES } from './openapi.js'

type Schemas = components['schemas']
type Json<T> = T extends { content: { 'application/json': infer B } } ? B : never
type Route = (typeof OPERATION_ROUTES)[number]
type Body<R extends Route> = Json<NonNullable<paths[R]['post']['requestBody']>>

/** The routes a node may be: the forward operations. */
export type NodeRoute = Exclude<Route, `${string}/backward` | '/v1/graph' | '/v1/optimizer/step'>

/** A value of a graph: an input or a node, by its name. */
export class GraphValue {
  constructor (readonly name: string) {}
}

/** A node field that holds a tensor (or einsum's list of them) takes graph values, or their names. */
type Ref<V> = [Schemas['Tensor']] extends [V] ? GraphValue | string
  : [Schemas['Mask']] extends [V] ? GraphValue | string
      : V extends ReadonlyArray<infer E> ? ([Schemas['Tensor']] extends [E] ? ReadonlyArray<GraphValue | string> : V) : V
/** A node's fields: its route's body, tensor fields as graph values, without `encoding` (the graph's) and `explain` (the single routes'). */
export type NodeArgs<R extends NodeRoute> = { [K in keyof Omit<Body<R>, 'encoding' | 'explain'>]: Ref<Body<R>[K]> }

type GraphBody = Body<'/v1/graph'>
type MethodName<R extends string> = R extends `/v1/${infer Op}` ? Op : never
type NodeMethods = { [R in NodeRoute as MethodName<R>]: (args: NodeArgs<R>, name?: string) => GraphValue }

/** The forward routes, from the document's list. */
export const NODE_ROUTES: readonly NodeRoute[] = OPERATION_ROUTES.filter((r): r is NodeRoute =>
  !r.endsWith('/backward') && r !== '/v1/graph' && r !== '/v1/optimizer/step')

export interface GraphBuilder extends NodeMethods {}

export class GraphBuilder {
  readonly #inputs: Record<string, unknown> = {}
  readonly #nodes: Array<Record<string, unknown>> = []
  readonly #names = new Set<string>()

  constructor () {
    for (const route of NODE_ROUTES) {
      const operation = route.slice('/v1/'.length)
      Object.defineProperty(this, operation, {
        value: (args: Record<string, unknown>, name?: string) => this.node(route, args as never, name)
      })
    }
  }

  /** An input of the graph: a tensor (typed, or any wire form) by name. */
  input (name: string, tensor: unknown): GraphValue {
    this.#claim(name)
    this.#inputs[name] = tensor
    return new GraphValue(name)
  }

  /** A node of a forward route with its fields; named `name`, or after its operation (`linear1`). */
  node<R extends NodeRoute> (route: R, args: NodeArgs<R>, name?: string): GraphValue {
    const operation = route.slice('/v1/'.length)
    const own = name ?? `${operation}${this.#nodes.length}`
    this.#claim(own)
    const fields: Record<string, unknown> = { name: own, operation }
    for (const [key, v] of Object.entries(args as Record<string, unknown>)) {
      if (v === undefined) continue
      fields[key] = v instanceof GraphValue ? v.name : Array.isArray(v) ? v.map(x => x instanceof GraphValue ? x.name : x) : v
    }
    this.#nodes.push(fields)
    return new GraphValue(own)
  }

  /** The body for `client.graph`: the values to return (default: the last node), and the gradient and update. */
  body (options: {
    outputs?: GraphValue[]
    gradients?: { of: GraphValue, wrt: GraphValue[], gradOutput?: unknown }
    update?: Args<'/v1/graph'>['update']
  } = {}): GraphBody {
    const body: Record<string, unknown> = { inputs: this.#inputs, nodes: this.#nodes }
    if (options.outputs !== undefined) body.outputs = options.outputs.map(v => v.name)
    if (options.gradients !== undefined) {
      const { of, wrt, gradOutput } = options.gradients
      body.gradients = { of: of.name, wrt: wrt.map(v => v.name), ...(gradOutput === undefined ? {} : { gradOutput }) }
    }
    if (options.update !== undefined) body.update = options.update
    return body as GraphBody
  }

  #claim (name: string): void {
    if (this.#names.has(name)) throw new TypeError(`the graph already has a value named ${JSON.stringify(name)}`)
    this.#names.add(name)
  }
}
