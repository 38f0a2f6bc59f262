/**
 * The operations' GEMM-heavy cores on the native engine (./engine.ts): matmul (2-D and batched),
 * conv2d (float32; ONNX Runtime's CPU provider has no float64 Conv) and attention. Each takes
 * the same operands and shape information as the WebAssembly kernels and writes the same result
 * arrays; the kernels in ../ choose between the two (`useEngine`).
 */
import type { Conv2dInfo } from '../conv2d.js'
import type { FloatArray } from '../types.js'
import { run, session, tensor } from './engine.js'
import type { ElemName, Graph } from './onnx.js'

export { useEngine } from './engine.js'

const elemOf = (x: FloatArray): ElemName => x instanceof Float32Array ? 'float32' : 'float64'

/** x as the element type of `like` (a copy only when it differs). */
function as (like: FloatArray, x: FloatArray): FloatArray {
  if (elemOf(like) === elemOf(x)) return x
  return like instanceof Float32Array ? Float32Array.from(x) : Float64Array.from(x)
}

const matmulGraph = (t: ElemName, transA: boolean, transB: boolean) => (): Graph => ({
  inputs: [['a', t], ['b', t]],
  outputs: [['c', t]],
  nodes: [
    ...(transA ? [{ op: 'Transpose', inputs: ['a'], outputs: ['at'], attributes: [{ name: 'perm', ints: [0, 2, 1] }] }] : []),
    ...(transB ? [{ op: 'Transpose', inputs: ['b'], outputs: ['bt'], attributes: [{ name: 'perm', ints: [0, 2, 1] }] }] : []),
    { op: 'MatMul', inputs: [transA ? 'at' : 'a', transB ? 'bt' : 'b'], outputs: ['c'] }
  ]
})

/**
 * out[oOff ..] = the [batches] products of a[aOff ..] [batches,m,k] and b[bOff ..] [batches,k,n]
 * (consecutive blocks), on `threads` intra-op threads. With `transA` a's blocks are stored
 * transposed ([k,m]), with `transB` b's ([n,k]): the engine fuses the transposition into its GEMM.
 */
export function engineMatmul (
  out: FloatArray, oOff: number,
  a: FloatArray, aOff: number,
  b: FloatArray, bOff: number,
  batches: number, m: number, k: number, n: number, threads = 1,
  transA = false, transB = false
): void {
  const t = elemOf(out)
  const s = session(`matmul/${t}${transA ? '/ta' : ''}${transB ? '/tb' : ''}`, threads, matmulGraph(t, transA, transB))
  const A = as(out, a.subarray(aOff, aOff + batches * m * k))
  const B = as(out, b.subarray(bOff, bOff + batches * k * n))
  run(s, { a: tensor(A, transA ? [batches, k, m] : [batches, m, k]), b: tensor(B, transB ? [batches, n, k] : [batches, k, n]) },
    { c: tensor(out.subarray(oOff, oOff + batches * m * n), [batches, m, n]) })
}

/** Whether every element is finite (x − x is 0 for a finite x, NaN for NaN and ±∞). */
export function allFinite (x: FloatArray | Uint8Array): boolean {
  if (x instanceof Float32Array) return finite32(x)
  if (x instanceof Float64Array) return finite64(x)
  return true
}

// one function per array type, so that each loop stays monomorphic
function finite32 (x: Float32Array): boolean {
  let acc = 0
  for (let i = 0; i < x.length; i++) acc += x[i] - x[i]
  return acc === 0
}

function finite64 (x: Float64Array): boolean {
  let acc = 0
  for (let i = 0; i < x.length; i++) acc += x[i] - x[i]
  return acc === 0
}

/**
 * conv2d in float32 on the engine's Conv, NHWC through transposes around it. The caller keeps
 * kernels with non-finite weights for the WebAssembly kernel (which multiplies padded taps by them,
 * as PyTorch does; the engine may skip padding).
 */
export function engineConv2d (out: Float32Array, input: Float32Array, kernel: Float32Array, bias: Float32Array | null, info: Conv2dInfo): void {
  const { N, C, H, W, K, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft, groups } = info
  const nhwc = info.layout === 'NHWC'
  // the bottom and right padding that give exactly OH x OW (rows past the last stride are unused)
  const padBottom = Math.max(0, (OH - 1) * sh + dh * (kh - 1) + 1 - H - padTop)
  const padRight = Math.max(0, (OW - 1) * sw + dw * (kw - 1) + 1 - W - padLeft)
  const hasBias = bias !== null
  const key = `conv/${nhwc ? 'nhwc' : 'nchw'}/${hasBias ? 'b' : ''}/${sh},${sw}/${dh},${dw}/${padTop},${padLeft},${padBottom},${padRight}/${groups}`
  const s = session(key, 1, () => {
    const nodes: Graph['nodes'] = []
    let x = 'x'
    let w = 'w'
    if (nhwc) {
      nodes.push({ op: 'Transpose', inputs: ['x'], outputs: ['xt'], attributes: [{ name: 'perm', ints: [0, 3, 1, 2] }] })
      nodes.push({ op: 'Transpose', inputs: ['w'], outputs: ['wt'], attributes: [{ name: 'perm', ints: [3, 2, 0, 1] }] })
      x = 'xt'
      w = 'wt'
    }
    nodes.push({
      op: 'Conv',
      inputs: hasBias ? [x, w, 'bias'] : [x, w],
      outputs: [nhwc ? 'yt' : 'y'],
      attributes: [
        { name: 'strides', ints: [sh, sw] },
        { name: 'dilations', ints: [dh, dw] },
        { name: 'pads', ints: [padTop, padLeft, padBottom, padRight] },
        { name: 'group', int: groups }
      ]
    })
    if (nhwc) nodes.push({ op: 'Transpose', inputs: ['yt'], outputs: ['y'], attributes: [{ name: 'perm', ints: [0, 2, 3, 1] }] })
    return {
      inputs: hasBias ? [['x', 'float32'], ['w', 'float32'], ['bias', 'float32']] : [['x', 'float32'], ['w', 'float32']],
      outputs: [['y', 'float32']],
      nodes
    }
  })
  const Cg = C / groups
  const inputs: Record<string, ReturnType<typeof tensor>> = {
    x: tensor(input, nhwc ? [N, H, W, C] : [N, C, H, W]),
    w: tensor(kernel, nhwc ? [kh, kw, Cg, K] : [K, Cg, kh, kw])
  }
  if (bias !== null) inputs.bias = tensor(bias.subarray(0, K), [K])
  run(s, inputs, { y: tensor(out, nhwc ? [N, OH, OW, K] : [N, K, OH, OW]) })
}

/**
 * Attention over contiguous [B,Lq,E], [B,Lk,E], [B,Lk,Ev] blocks: softmax((q·scale)·kᵀ + mask)·v,
 * with `mask` (when given) the additive [B,Lq,Lk] term (−∞ for a removed key). The output goes to
 * `out`, the weights to `weights` when given. A row whose scores are all −∞ comes out NaN here:
 * the caller checks and recomputes such results on the WebAssembly kernel.
 */
export function engineAttention (
  out: FloatArray, weights: FloatArray | null,
  q: FloatArray, k: FloatArray, v: FloatArray, mask: FloatArray | null, scale: number,
  B: number, Lq: number, Lk: number, E: number, Ev: number
): void {
  const t = elemOf(out)
  const masked = mask !== null
  const s = session(`attention/${t}/${masked ? 'mask' : ''}`, 1, () => ({
    inputs: masked
      ? [['q', t], ['k', t], ['v', t], ['scale', t], ['mask', t]]
      : [['q', t], ['k', t], ['v', t], ['scale', t]],
    outputs: [['o', t], ['p', t]],
    nodes: [
      { op: 'Transpose', inputs: ['k'], outputs: ['kt'], attributes: [{ name: 'perm', ints: [0, 2, 1] }] },
      { op: 'Mul', inputs: ['q', 'scale'], outputs: ['qs'] },
      { op: 'MatMul', inputs: ['qs', 'kt'], outputs: ['ss'] },
      ...(masked ? [{ op: 'Add', inputs: ['ss', 'mask'], outputs: ['sm'] }] : []),
      { op: 'Softmax', inputs: [masked ? 'sm' : 'ss'], outputs: ['p'], attributes: [{ name: 'axis', int: 2 }] },
      { op: 'MatMul', inputs: ['p', 'v'], outputs: ['o'] }
    ]
  }))
  const sc = out instanceof Float32Array ? Float32Array.of(scale) : Float64Array.of(scale)
  const inputs: Record<string, ReturnType<typeof tensor>> = {
    q: tensor(as(out, q), [B, Lq, E]),
    k: tensor(as(out, k), [B, Lk, E]),
    v: tensor(as(out, v), [B, Lk, Ev]),
    scale: tensor(sc, [])
  }
  if (mask !== null) inputs.mask = tensor(as(out, mask), [B, Lq, Lk])
  const outputs: Record<string, ReturnType<typeof tensor>> = { o: tensor(out, [B, Lq, Ev]) }
  if (weights !== null) outputs.p = tensor(weights, [B, Lq, Lk])
  run(s, inputs, outputs)
}

/**
 * Attention's gradients over contiguous [B,Lq,E], [B,Lk,E], [B,Lk,Ev] blocks and the output
 * gradient g [B,Lq,Ev], in one graph: P = softmax((q·scale)·kᵀ + mask), dv = Pᵀ·g, dP = g·vᵀ,
 * dS = P·(dP − (P·dP)·1)·scale, dq = dS·k, dk = dSᵀ·q. `mask` as in engineAttention. Where the
 * result can differ from the kernel's semantics (a row that attends to nothing, a non-finite
 * value behind a zero weight) it is not finite: the caller checks and computes such cases itself.
 */
export function engineAttentionBackward (
  dq: FloatArray, dk: FloatArray, dv: FloatArray,
  q: FloatArray, k: FloatArray, v: FloatArray, g: FloatArray, mask: FloatArray | null, scale: number,
  B: number, Lq: number, Lk: number, E: number, Ev: number
): void {
  const t = elemOf(dq)
  const masked = mask !== null
  const T = (x: string, y: string): Graph['nodes'][number] => ({ op: 'Transpose', inputs: [x], outputs: [y], attributes: [{ name: 'perm', ints: [0, 2, 1] }] })
  const s = session(`attention-backward/${t}/${masked ? 'mask' : ''}`, 1, () => ({
    inputs: [['q', t], ['k', t], ['v', t], ['g', t], ['scale', t], ['ones', t], ...(masked ? [['mask', t] as [string, ElemName]] : [])],
    outputs: [['dq', t], ['dk', t], ['dv', t]],
    nodes: [
      T('k', 'kt'),
      { op: 'Mul', inputs: ['q', 'scale'], outputs: ['qs'] },
      { op: 'MatMul', inputs: ['qs', 'kt'], outputs: ['ss'] },
      ...(masked ? [{ op: 'Add', inputs: ['ss', 'mask'], outputs: ['sm'] }] : []),
      { op: 'Softmax', inputs: [masked ? 'sm' : 'ss'], outputs: ['p'], attributes: [{ name: 'axis', int: 2 }] },
      T('p', 'pt'),
      { op: 'MatMul', inputs: ['pt', 'g'], outputs: ['dv'] },
      T('v', 'vt'),
      { op: 'MatMul', inputs: ['g', 'vt'], outputs: ['dp'] },
      { op: 'Mul', inputs: ['p', 'dp'], outputs: ['pdp'] },
      { op: 'MatMul', inputs: ['pdp', 'ones'], outputs: ['rs'] },
      { op: 'Sub', inputs: ['dp', 'rs'], outputs: ['d'] },
      { op: 'Mul', inputs: ['p', 'd'], outputs: ['ds0'] },
      { op: 'Mul', inputs: ['ds0', 'scale'], outputs: ['ds'] },
      { op: 'MatMul', inputs: ['ds', 'k'], outputs: ['dq'] },
      T('ds', 'dst'),
      { op: 'MatMul', inputs: ['dst', 'q'], outputs: ['dk'] }
    ]
  }))
  const like = (x: FloatArray): FloatArray => as(dq, x)
  const sc = dq instanceof Float32Array ? Float32Array.of(scale) : Float64Array.of(scale)
  const ones = dq instanceof Float32Array ? new Float32Array(Lk).fill(1) : new Float64Array(Lk).fill(1)
  const inputs: Record<string, ReturnType<typeof tensor>> = {
    q: tensor(like(q), [B, Lq, E]),
    k: tensor(like(k), [B, Lk, E]),
    v: tensor(like(v), [B, Lk, Ev]),
    g: tensor(like(g), [B, Lq, Ev]),
    scale: tensor(sc, []),
    ones: tensor(ones, [Lk, 1])
  }
  if (mask !== null) inputs.mask = tensor(like(mask), [B, Lq, Lk])
  run(s, inputs, { dq: tensor(dq, [B, Lq, E]), dk: tensor(dk, [B, Lk, E]), dv: tensor(dv, [B, Lk, Ev]) })
}

/**
 * conv2d's input gradient in float32 on the engine's ConvTranspose: dx [N,C,H,W] from the planar
 * output gradient g [N,K,OH,OW] and the planar kernel w [K,C/groups,kh,kw]. The far padding is
 * the forward's implied bottom/right padding; rows and columns the forward never read (a negative
 * far padding, less than a stride) come out as output padding, with gradient 0.
 */
export function engineConvTranspose (dx: Float32Array, g: Float32Array, w: Float32Array, info: Conv2dInfo): void {
  const { N, C, H, W, K, kh, kw, OH, OW, sh, sw, dh, dw, padTop, padLeft, groups } = info
  const pb = (OH - 1) * sh + dh * (kh - 1) + 1 - H - padTop
  const pr = (OW - 1) * sw + dw * (kw - 1) + 1 - W - padLeft
  const pads = [padTop, padLeft, Math.max(0, pb), Math.max(0, pr)]
  const outPad = [Math.max(0, -pb), Math.max(0, -pr)]
  const key = `convT/${sh},${sw}/${dh},${dw}/${pads.join(',')}/${outPad.join(',')}/${groups}`
  const s = session(key, 1, () => ({
    inputs: [['g', 'float32'], ['w', 'float32']],
    outputs: [['x', 'float32']],
    nodes: [{
      op: 'ConvTranspose',
      inputs: ['g', 'w'],
      outputs: ['x'],
      attributes: [
        { name: 'strides', ints: [sh, sw] },
        { name: 'dilations', ints: [dh, dw] },
        { name: 'pads', ints: pads },
        { name: 'output_padding', ints: outPad },
        { name: 'group', int: groups }
      ]
    }]
  }))
  run(s, { g: tensor(g, [N, K, OH, OW]), w: tensor(w, [K, C / groups, kh, kw]) }, { x: tensor(dx, [N, C, H, W]) })
}

/** Whether engineConvTranspose expresses this forward: output padding below the stride (else the caller computes). */
export function convTransposable (info: Conv2dInfo): boolean {
  const pb = (info.OH - 1) * info.sh + info.dh * (info.kh - 1) + 1 - info.H - info.padTop
  const pr = (info.OW - 1) * info.sw + info.dw * (info.kw - 1) + 1 - info.W - info.padLeft
  return -pb < info.sh && -pr < info.sw
}

/**
 * softmax (or log_softmax) of float32 rows [rows, n] on the engine's vectorised Softmax. A row that
 * is all −∞ comes out NaN there: such rows are written here as the contract has them, zeros (log:
 * −∞). A row holding NaN or +∞ is NaN on both.
 */
export function engineSoftmaxRows (out: Float32Array, x: Float32Array, rows: number, n: number, log: boolean): void {
  const op = log ? 'LogSoftmax' : 'Softmax'
  const s = session(`softmax/${op}`, 1, () => ({
    inputs: [['x', 'float32']],
    outputs: [['y', 'float32']],
    nodes: [{ op, inputs: ['x'], outputs: ['y'], attributes: [{ name: 'axis', int: 1 }] }]
  }))
  run(s, { x: tensor(x.subarray(0, rows * n), [rows, n]) }, { y: tensor(out.subarray(0, rows * n), [rows, n]) })
  for (let r = 0; r < rows; r++) {
    const o = r * n
    if (!Number.isNaN(out[o])) continue
    let allNegInf = true
    for (let j = 0; j < n && allNegInf; j++) allNegInf = x[o + j] === -Infinity
    if (allNegInf) out.fill(log ? -Infinity : 0, o, o + n)
  }
}

/**
 * The elementwise functions whose float32 results on the engine are those of the float64 loops rounded, within 2e-5
 * (special values exactly), and that the WebAssembly kernel does not compute (src/kernels/unary.ts, unaryF32). Not
 * tanh (it flushes subnormal results) nor sigmoid (its tails are 0 and 1 from about ±17).
 */
export const ENGINE_UNARY: Readonly<Record<string, string>> = { exp: 'Exp', log: 'Log', sin: 'Sin', cos: 'Cos' }
/** add, sub, mul, div: correctly rounded in both dtypes, with the engine's NumPy broadcasting. */
export const ENGINE_BINARY: Readonly<Record<string, string>> = { add: 'Add', sub: 'Sub', mul: 'Mul', div: 'Div' }

/**
 * One elementwise operator of the engine over whole tensors (`operator` from ENGINE_UNARY or
 * ENGINE_BINARY): `out` of shape `outShape`, from the inputs of their shapes.
 */
export function engineElementwise (operator: string, out: FloatArray, outShape: number[], inputs: Array<[FloatArray, number[]]>): void {
  const t = elemOf(out)
  const s = session(`elementwise/${operator}/${t}/${inputs.length}`, 1, () => ({
    inputs: inputs.map((_, i) => [`x${i}`, t]),
    outputs: [['y', t]],
    nodes: [{ op: operator, inputs: inputs.map((_, i) => `x${i}`), outputs: ['y'] }]
  }))
  const feed: Record<string, ReturnType<typeof tensor>> = {}
  inputs.forEach(([data, dims], i) => { feed[`x${i}`] = tensor(as(out, data), dims) })
  run(s, feed, { y: tensor(out, outShape) })
}
