/**
 * The client's types (client/src/openapi.ts, generated from the OpenAPI document) are the
 * server's own: for every operation, the body and the 200 reply the TypeBox schemas give
 * (Static<...>) and the client's types accept exactly the same values. A drift fails the type
 * check (npm run lint), naming the operation; the runtime check below covers the names.
 */
import type { Static } from 'typebox'
import { describe, expect, expectTypeOf, it } from 'vitest'
import type { components } from '../client/src/openapi.js'
import { type Args, GraphBuilder, type GraphValue, type Reply, type Tensor } from '../client/src/index.js'
import { OPERATIONS } from '../src/operations/index.js'
import { componentName } from '../src/operations/spec.js'

type Schemas = components['schemas']
type Operations = typeof OPERATIONS
/** componentName at the type level: matmul → Matmul, matmul/backward → MatmulBackward, layer_norm → LayerNorm. */
type ComponentName<N extends string> = N extends `${infer Head}/${infer Tail}`
  ? `${Capitalize<Head>}${ComponentName<Tail>}`
  : N extends `${infer Head}_${infer Tail}` ? `${Capitalize<Head>}${ComponentName<Tail>}` : Capitalize<N>
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
type Component<N extends string, Part extends string> = `${ComponentName<N>}${Part}` extends keyof Schemas ? Schemas[`${ComponentName<N>}${Part}`] : 'missing'

/** The operations whose body or reply differ between the server's schemas and the client's types. */
type Drifted = {
  [N in keyof Operations & string]:
  Same<Static<Operations[N]['body']>, Component<N, 'Body'>> extends true
    ? Same<Static<Operations[N]['reply']>, Component<N, 'Reply'>> extends true ? never : `${N} reply`
    : `${N} body`
}[keyof Operations & string]

describe('the client\'s types are the server\'s schemas', () => {
  it('no operation\'s body or reply drifted (checked by tsc)', () => {
    expectTypeOf<Drifted>().toEqualTypeOf<never>()
  })

  it('the client takes typed tensors where the body takes a tensor, and gives typed tensors back', () => {
    expectTypeOf<{ shape: number[], data: Float32Array }>().toExtend<Args<'/v1/matmul'>['a']>()
    expectTypeOf<{ shape: number[], dtype: 'bfloat16', data: Uint16Array }>().toExtend<Args<'/v1/matmul'>['a']>()
    expectTypeOf<{ shape: number[], dtype: 'int8', data: Uint16Array }>().not.toExtend<Args<'/v1/matmul'>['a']>()
    expectTypeOf<{ shape: number[], data: Float32Array }>().toExtend<NonNullable<Args<'/v1/einsum'>['operands']>[number]>()
    expectTypeOf<[[1, 2]]>().toExtend<Args<'/v1/matmul'>['a']>()
    expectTypeOf<Reply<'/v1/matmul'>['result']>().toExtend<Tensor>()
    expectTypeOf<'relu'>().toExtend<NonNullable<Args<'/v1/linear'>['activation']>>()
    expectTypeOf<'swish'>().not.toExtend<NonNullable<Args<'/v1/linear'>['activation']>>()
  })

  it('the graph builder\'s node methods take their route\'s fields, tensor fields as graph values (checked by tsc)', () => {
    const g = new GraphBuilder()
    const x = g.input('x', [[1, 2]])
    expectTypeOf(g.matmul({ a: x, b: 'x' })).toEqualTypeOf<GraphValue>()
    expectTypeOf<Parameters<GraphBuilder['linear']>[0]['activation']>().toEqualTypeOf<'none' | 'relu' | 'sigmoid' | 'tanh' | 'gelu' | 'softmax' | undefined>()
    // @ts-expect-error: matmul has no field c
    g.matmul({ a: x, b: x, c: x })
    // @ts-expect-error: a node's tensor field takes a graph value or a name, not a tensor
    g.unary({ op: 'neg', input: [[1, 2]] })
    // @ts-expect-error: graphs and backward routes are not nodes
    expect(g.graph).toBeUndefined()
  })

  it('every operation has its named components', async () => {
    const doc = (await import('../openapi/openapi.json', { with: { type: 'json' } })).default as { components: { schemas: Record<string, unknown> } }
    for (const name of Object.keys(OPERATIONS)) {
      expect(doc.components.schemas).toHaveProperty(`${componentName(name)}Body`)
      expect(doc.components.schemas).toHaveProperty(`${componentName(name)}Reply`)
    }
  })
})
