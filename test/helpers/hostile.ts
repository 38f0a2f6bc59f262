/**
 * Generators of malformed or hostile request bodies for every route (wrong types, ragged and deep
 * arrays, huge declared shapes, bad base64, prototype keys, extreme options, broken JSON), as
 * JSON text with the route it is posted to.
 */
import fc from 'fast-check'
import { FORWARD, type ForwardName } from '../../src/operations/index.js'

type Route = ForwardName | `${ForwardName}/backward` | 'optimizer/step' | 'graph'
/** Every operation route, forward and backward (the registry's, so a new operation is fuzzed too), the optimizer's step and graphs. */
export const ROUTES: Route[] = [...FORWARD, ...FORWARD.map(op => `${op}/backward` as const), 'optimizer/step', 'graph']
const FORWARD_FIELDS: Record<ForwardName, string[]> = {
  matmul: ['a', 'b'],
  dot: ['a', 'b'],
  linear: ['input', 'weights', 'bias'],
  conv2d: ['input', 'kernel', 'bias'],
  attention: ['query', 'key', 'value', 'mask'],
  einsum: ['equation', 'operands'],
  binary: ['op', 'a', 'b'],
  unary: ['op', 'input'],
  softmax: ['input', 'axis', 'log'],
  reduce: ['op', 'input', 'axis', 'keepdims', 'correction'],
  layer_norm: ['input', 'normalizedShape', 'weight', 'bias', 'eps'],
  pool2d: ['input', 'kind', 'kernelSize', 'stride', 'padding', 'dilation', 'ceilMode', 'countIncludePad', 'layout'],
  loss: ['kind', 'input', 'target', 'reduction', 'delta', 'labelSmoothing']
}
const OPTIMIZER_FIELDS = ['optimizer', 'params', 'grads', 'lr', 'state']
const GRAPH_FIELDS = ['inputs', 'nodes', 'outputs', 'gradients', 'update']
/** The fields that are objects of named tensors (the optimizer's, a graph's inputs). */
const MAP_FIELDS = new Set(['params', 'grads', 'state', 'inputs'])
const forwardOf = (route: Route): ForwardName => route.split('/')[0] as ForwardName
const backward = (route: Route): boolean => route.endsWith('/backward')
const fieldsOf = (route: Route): string[] => route === 'optimizer/step'
  ? OPTIMIZER_FIELDS
  : route === 'graph'
    ? GRAPH_FIELDS
    : backward(route) ? [...FORWARD_FIELDS[forwardOf(route)], 'gradOutput'] : FORWARD_FIELDS[forwardOf(route)]
const OPTIONS = ['encoding', 'dtype', 'axis', 'log', 'keepdims', 'correction', 'normalizedShape', 'eps', 'kind', 'kernelSize', 'ceilMode', 'countIncludePad', 'reduction', 'delta', 'labelSmoothing', 'activation', 'stride', 'padding', 'dilation', 'groups', 'layout', 'causal', 'scale', 'returnWeights', 'explain', 'wrt', 'returnResult',
  'momentum', 'dampening', 'nesterov', 'betas', 'weightDecay', 'lr', 'optimizer']

const extremeNumber = fc.constantFrom(0, -0, -1, 1, 2, 1.5, 1e300, -1e300, 5e-324, 2 ** 31, 2 ** 53, 2 ** 53 + 2, 1e21, 0.1)
const hostileString = fc.constantFrom('NaN', 'Infinity', '-Infinity', 'nan', '', '__proto__', 'AAAA', 'AA=A', 'A', '====', 'AAAA\n', '3', 'true', 'null', '\u0000', 'é'.repeat(50))
const leaf = fc.oneof(extremeNumber, hostileString, fc.boolean(), fc.constant(null), fc.double(), fc.integer())

/** Nested arrays, rectangular or not, up to a depth past the rank cap. */
const nested: fc.Arbitrary<unknown> = fc.letrec(tie => ({
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('node'), { maxLength: 4 }))
})).node
const deep = fc.integer({ min: 7, max: 40 }).map(depth => {
  let v: unknown = 1
  for (let i = 0; i < depth; i++) v = [v]
  return v
})
const rect = fc.tuple(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 4 }), fc.double({ min: -10, max: 10, noNaN: true }))
  .map(([r, c, x]) => Array.from({ length: r }, () => Array.from({ length: c }, () => x)))
const shape = fc.array(fc.oneof(fc.integer({ min: 0, max: 5 }), extremeNumber, fc.constantFrom(2 ** 40, 1e300, -3)), { maxLength: 10 })
const objectTensor = fc.record({
  shape,
  data: fc.oneof(fc.array(leaf, { maxLength: 12 }), fc.base64String({ maxLength: 64 }), hostileString, nested),
  dtype: fc.oneof(fc.constantFrom('float32', 'float64', 'int8', 'FLOAT32'), leaf)
}, { requiredKeys: [] })
const tensor = fc.oneof(rect, nested, deep, objectTensor, leaf, fc.dictionary(fc.string({ maxLength: 8 }), leaf, { maxKeys: 3 }))
const option = fc.oneof(leaf, fc.constantFrom('same', 'valid', 'NCHW', 'NHWC', 'relu', 'gelu', 'base64', 'flat'), fc.array(extremeNumber, { maxLength: 3 }),
  fc.constantFrom([], ['a'], ['b', 'a'], ['mask'], ['input', 'input'], ['query', 'value'], ['kernel', 'bias'], ['__proto__'], ['weights']))

/** A valid body per route, which random options may still spoil. */
const VALID_FORWARD: Record<ForwardName, object> = {
  matmul: { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]] },
  dot: { a: [1, 'NaN', 3], b: [4, 5, 6] },
  linear: { input: [[1, 2, 3]], weights: [[1, 0], [0, 1], [1, 1]], bias: [0.5, -0.5] },
  conv2d: { input: [[[1, 2, 3], [4, 5, 6], [7, 8, 9]]], kernel: [[[[1, 0], [0, -1]]]] },
  attention: { query: [[1, 0]], key: [[1, 0], [0, 1]], value: [[1, 2], [3, 4]] },
  einsum: { equation: 'ij,jk->ik', operands: [[[1, 2], [3, 4]], [[5, 6], [7, 8]]] },
  binary: { op: 'pow', a: [[1, 2], [3, 'NaN']], b: [0.5, '-Infinity'] },
  unary: { op: 'log', input: [[1, 0], [-1, 'Infinity']] },
  softmax: { input: [[1, '-Infinity'], ['-Infinity', '-Infinity']], axis: 0 },
  reduce: { op: 'std', input: [[1, 2], [3, 'NaN']], axis: [0, -1], keepdims: true },
  layer_norm: { input: [[1, 2], [3, 'Infinity']], normalizedShape: [2], weight: [1, 2], bias: [0, 1] },
  pool2d: { input: [[[1, 2, 3], [4, 'Infinity', 6]]], kind: 'max', kernelSize: [1, 2], stride: 1 },
  loss: { kind: 'huber', input: [[1, 2], [3, 'Infinity']], target: [[0, 2], [1, 1]], reduction: 'none', delta: 0.5 }
}
/** A gradOutput of each forward example's result shape. */
const GRAD_OUTPUT: Record<ForwardName, unknown> = {
  matmul: [[1, 0], [0, 1]],
  dot: 1,
  linear: [[1, -1]],
  conv2d: [[[1, 0], [0, 1]]],
  attention: [[1, 1]],
  einsum: [[1, 0], [0, 1]],
  binary: [[1, 0], [0, 1]],
  unary: [[1, 0], [0, 1]],
  softmax: [[1, 0], [0, 1]],
  reduce: [[1]],
  layer_norm: [[1, 0], [0, 1]],
  pool2d: [[[1, 0], [0, 1]]],
  loss: [[1, 0], [0, 1]]
}
const VALID_STEP = { optimizer: 'adam', lr: 0.1, params: { 'fc.w': [1, 2], b: 3 }, grads: { 'fc.w': [1, 'NaN'], b: 'Infinity' }, state: { step: 2, expAvg: { 'fc.w': [0, 1], b: 0 }, expAvgSq: { 'fc.w': [1, 1], b: 1 } } }
const VALID_GRAPH = {
  inputs: { x: [[1, 2], [3, 'NaN']], w: [[1], [-1]], t: [[0], [1]] },
  nodes: [{ name: 'y', operation: 'matmul', a: 'x', b: 'w' }, { name: 'l', operation: 'loss', kind: 'mse', input: 'y', target: 't' }],
  gradients: { of: 'l', wrt: ['w', 'x'] },
  update: { optimizer: 'adam', lr: 0.1 }
}
const VALID = (route: Route): object => route === 'optimizer/step'
  ? VALID_STEP
  : route === 'graph'
    ? VALID_GRAPH
    : backward(route)
      ? { ...VALID_FORWARD[forwardOf(route)], gradOutput: GRAD_OUTPUT[forwardOf(route)] }
      : VALID_FORWARD[forwardOf(route)]

/** Hostile graphs: names that collide or reach the prototype, references to later or unknown names, bad operations and fields. */
const graphName = fc.constantFrom('x', 'w', 'y', 'a', 'b', 'constructor', 'prototype', '__proto__', 'toString', 'hasOwnProperty', '', 'a.b', '0', 'é', 'x'.repeat(80))
const hostileGraph = fc.record({
  nodes: fc.array(fc.record({
    name: graphName,
    operation: fc.constantFrom('matmul', 'binary', 'unary', 'reduce', 'softmax', 'einsum', 'loss', 'attention', 'graph', 'matmul/backward', 'optimizerStep', '__proto__', ''),
    a: graphName,
    b: graphName,
    input: graphName,
    op: fc.constantFrom('add', 'neg', 'sum', 'exp', 'bogus'),
    operands: fc.array(graphName, { maxLength: 3 }),
    equation: fc.constantFrom('ij,jk->ik', 'i,i', 'ii->i', '->'),
    extra: leaf
  }, { requiredKeys: ['name', 'operation'] }), { minLength: 0, maxLength: 6 }),
  outputs: fc.array(graphName, { maxLength: 3 }),
  gradients: fc.record({ of: graphName, wrt: fc.array(graphName, { maxLength: 3 }), gradOutput: tensor }, { requiredKeys: [] }),
  update: fc.record({ optimizer: fc.constantFrom('sgd', 'adam', 'bogus'), lr: extremeNumber, state: fc.oneof(leaf, fc.record({ step: extremeNumber, expAvg: fc.dictionary(graphName, tensor, { maxKeys: 2 }) })) }, { requiredKeys: [] })
}, { requiredKeys: ['nodes'] }).map(g => ({ route: 'graph' as Route, text: JSON.stringify({ inputs: { x: [[1, 2], [3, 4]], w: [[1], [2]], y: [1, 0] }, ...g }) }))

/** A body as JSON text: mostly the route's own shape with hostile parts, some plain junk. */
export const hostileBody = fc.constantFrom(...ROUTES).chain(route => route === 'graph' ? fc.oneof({ weight: 3, arbitrary: hostileGraph }, { weight: 2, arbitrary: hostileFor(route) }) : hostileFor(route))

function hostileFor (route: Route): fc.Arbitrary<{ route: Route, text: string }> {
  return fc.oneof(
    {
      weight: 1,
      arbitrary: fc.subarray(OPTIONS, { maxLength: 2 }).chain(opts => fc.array(option, { minLength: 2, maxLength: 2 }).map(values => {
        const b: Record<string, unknown> = { ...VALID(route) }
        opts.forEach((o, i) => { b[o] = values[i] })
        return { route, text: JSON.stringify(b) }
      }))
    },
    {
      weight: 6,
      arbitrary: fc.tuple(fc.subarray(fieldsOf(route)), fc.array(tensor, { minLength: 5, maxLength: 5 }), fc.subarray(OPTIONS, { maxLength: 4 }), fc.array(option, { minLength: 4, maxLength: 4 }), fc.boolean())
        .map(([fields, tensors, opts, values, proto]) => {
        // (a map field holds tensors by name: one hostile tensor under a name, or under a hostile name)
          const valueOf = (f: string, t: unknown, i: number): unknown => MAP_FIELDS.has(f) && i % 2 === 0 ? { [['w', 'fc.w', '', 'expAvg', 'step'][i]]: t } : t
          const parts = fields.map((f, i) => `${JSON.stringify(f)}:${JSON.stringify(valueOf(f, tensors[i], i))}`)
          opts.forEach((o, i) => parts.push(`${JSON.stringify(o)}:${JSON.stringify(values[i])}`))
          if (proto) parts.push('"__proto__":{"polluted":1}', '"constructor":{"prototype":{"polluted":1}}')
          return { route, text: `{${parts.join(',')}}` }
        })
    },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map(v => ({ route, text: JSON.stringify(v) ?? 'null' })) },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }).map(s => ({ route, text: `{"a":${s}` })) }
  )
}
