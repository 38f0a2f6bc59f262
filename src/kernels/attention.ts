/**
 * Scaled dot-product attention, `softmax(query·keyᵀ·scale + mask)·value` over the last axis,
 * with PyTorch `scaled_dot_product_attention` semantics:
 *
 * - query `[..., Lq, E]`, key `[..., Lk, E]`, value `[..., Lk, Ev]`; the batch dimensions (all but
 *   the last two) of the three and of the mask broadcast NumPy-style.
 * - mask (optional) broadcastable to `[..., Lq, Lk]` (it may have fewer dimensions, even 0 or 1):
 *   a bool mask (Uint8Array, nonzero = may attend) removes keys; an additive mask is added to
 *   the scores. `causal` additionally lets query i see only keys 0..i (top-left aligned, like
 *   torch `is_causal=True`). Both apply together.
 * - A key that is removed (bool mask or causal) takes no part at all: its score is −∞ without
 *   being computed, so a NaN in its key row does not leak. A key whose weight comes out exactly 0
 *   (removed, a −∞ score, or an underflowed exponential) contributes nothing to the output, so a
 *   non-finite value row behind it does not leak either. Any other NaN propagates (a NaN score
 *   makes its whole row NaN, as a +∞ score does).
 * - A query row that may attend to no key (every score −∞, or Lk = 0) gives zeros in its output
 *   row and its weights row, never NaN.
 * - E = 0: every score is 0 (so weights are uniform unless masked); the default scale is then 1.
 *
 * `attentionInfo` validates everything from shapes alone, before anything is allocated;
 * `attention` is the pure loop and trusts its `info`.
 */
import { invalidArgument, shapeMismatch, tooLarge } from '../errors.js'
import { broadcastOffsets, broadcastShapes, checkFlops, elementCount, formatShape, product } from './shape.js'
import type { FloatArray, Limits } from './types.js'
import { allFinite, engineAttention, useEngine } from './ort/kernels.js'
import { begin, computesInF32, end } from './wasm/runtime.js'

export interface AttentionOperands {
  query: FloatArray
  key: FloatArray
  value: FloatArray
  mask: FloatArray | Uint8Array | null
  info: AttentionInfo
}

export interface AttentionParams { causal?: boolean; scale?: number; returnWeights?: boolean }
export type MaskKind = 'bool' | 'additive'

export interface AttentionInfo {
  /** Broadcast batch dimensions of query, key, value and the mask's own batch dimensions. */
  batchShape: number[]
  /** product(batchShape). */
  B: number
  Lq: number
  Lk: number
  E: number
  Ev: number
  /** params.scale ?? 1/sqrt(E); 1 when E = 0 (the scores are 0 whatever the scale). */
  scale: number
  causal: boolean
  returnWeights: boolean
  /**
   * Per output batch b: element offset of that batch's `[Lq,E]` block in query (broadcast).
   * Empty when there is nothing to compute (output and scores both empty): the kernel then
   * returns at once, and a huge batch of empty matrices allocates no offset tables.
   */
  qOffsets: Int32Array
  kOffsets: Int32Array
  vOffsets: Int32Array
  maskKind: MaskKind | null
  /** Per batch b: element offset into the mask for that batch (null without a mask). */
  maskOffsets: Int32Array | null
  /** 0 if the mask's Lq-dimension is 1 (broadcast), else its Lk-dimension size. */
  maskRowStride: number
  /** 0 if the mask's Lk-dimension is 1, else 1. */
  maskColStride: number
  /** [...batchShape, Lq, Ev] */
  outShape: number[]
  /** [...batchShape, Lq, Lk] */
  weightsShape: number[]
  /** 2*B*Lq*Lk*(E+Ev) */
  flops: number
}

const MAX_INT32 = 0x7fffffff

function operandCount (shape: number[], name: string, limits: Limits): number {
  const n = elementCount(shape, `attention ${name}`, limits)
  // The offset tables are Int32Array: only reachable if MAX_ELEMENTS is configured above 2^31.
  if (n > MAX_INT32) throw tooLarge(`attention ${name} of shape ${formatShape(shape)} has more than ${MAX_INT32} elements`)
  return n
}

/**
 * Validates the shapes and options of an attention call and derives everything the kernel needs.
 * Throws SHAPE_MISMATCH, INVALID_ARGUMENT or TOO_LARGE; allocates only the per-batch offset
 * tables, and only after every check has passed.
 */
export function attentionInfo (
  queryShape: number[],
  keyShape: number[],
  valueShape: number[],
  maskShape: number[] | null,
  maskKind: MaskKind | null,
  params: AttentionParams,
  limits: Limits
): AttentionInfo {
  if ((maskShape === null) !== (maskKind === null)) {
    throw new TypeError('attentionInfo: maskShape and maskKind must be given together')
  }
  for (const [name, shape, dims] of [
    ['query', queryShape, 'Lq, E'],
    ['key', keyShape, 'Lk, E'],
    ['value', valueShape, 'Lk, Ev']
  ] as const) {
    if (shape.length < 2) {
      throw shapeMismatch(`attention ${name} must have at least 2 dimensions [..., ${dims}], got shape ${formatShape(shape)}`)
    }
  }
  const qRank = queryShape.length
  const kRank = keyShape.length
  const vRank = valueShape.length
  const Lq = queryShape[qRank - 2]
  const E = queryShape[qRank - 1]
  const Lk = keyShape[kRank - 2]
  const Ev = valueShape[vRank - 1]
  const q = formatShape(queryShape)
  const k = formatShape(keyShape)
  const v = formatShape(valueShape)

  if (keyShape[kRank - 1] !== E) {
    throw shapeMismatch(
      `attention key ${k} does not match query ${q}: the last dimension (E) of key is ${keyShape[kRank - 1]}, of query ${E}`
    )
  }
  if (valueShape[vRank - 2] !== Lk) {
    throw shapeMismatch(
      `attention value ${v} does not match key ${k}: dimension -2 (Lk) of value is ${valueShape[vRank - 2]}, of key ${Lk}`
    )
  }

  // The mask, right-aligned against [..., Lq, Lk]: missing dimensions are 1.
  let mShape: number[] = []
  if (maskShape !== null) {
    mShape = maskShape.length >= 2 ? maskShape : [...new Array<number>(2 - maskShape.length).fill(1), ...maskShape]
    const m = formatShape(maskShape)
    const mLq = mShape[mShape.length - 2]
    const mLk = mShape[mShape.length - 1]
    if (mLk !== 1 && mLk !== Lk) {
      throw shapeMismatch(
        `attention mask ${m} does not broadcast to the scores [..., Lq=${Lq}, Lk=${Lk}] of query ${q} and key ${k}: ` +
        `dimension -1 of mask is ${mLk}, must be 1 or ${Lk} (Lk)`
      )
    }
    if (mLq !== 1 && mLq !== Lq) {
      throw shapeMismatch(
        `attention mask ${m} does not broadcast to the scores [..., Lq=${Lq}, Lk=${Lk}] of query ${q} and key ${k}: ` +
        `dimension -2 of mask is ${mLq}, must be 1 or ${Lq} (Lq)`
      )
    }
  }

  const qBatch = queryShape.slice(0, -2)
  const kBatch = keyShape.slice(0, -2)
  const vBatch = valueShape.slice(0, -2)
  const mBatch = mShape.slice(0, -2)
  const batchShapes = [qBatch, kBatch, vBatch]
  const names = [`query ${q} batch`, `key ${k} batch`, `value ${v} batch`]
  if (maskShape !== null) {
    batchShapes.push(mBatch)
    names.push(`mask ${formatShape(maskShape)} batch`)
  }
  const batchShape = broadcastShapes(batchShapes, names, 'attention batch dimensions (all but the last two)')

  const scale = params.scale ?? (E > 0 ? 1 / Math.sqrt(E) : 1)
  if (typeof scale !== 'number' || !Number.isFinite(scale)) {
    throw invalidArgument(`attention scale must be a finite number, got ${String(params.scale)}`)
  }

  operandCount(queryShape, 'query', limits)
  operandCount(keyShape, 'key', limits)
  operandCount(valueShape, 'value', limits)
  if (maskShape !== null) operandCount(maskShape, 'mask', limits)
  const outShape = [...batchShape, Lq, Ev]
  const weightsShape = [...batchShape, Lq, Lk]
  const outCount = elementCount(outShape, 'attention output', limits)
  const scoresCount = elementCount(weightsShape, 'attention scores', limits)
  // scoresCount = B*Lq*Lk exactly (it passed the element limit), so this never meets 0 * Infinity.
  const flops = scoresCount === 0 ? 0 : 2 * scoresCount * (E + Ev)
  checkFlops(flops, 'attention', limits)

  const B = product(batchShape)
  const idle = outCount === 0 && scoresCount === 0
  const offsets = (shape: number[], block: number): Int32Array => {
    if (idle) return new Int32Array(0)
    const off = broadcastOffsets(batchShape, shape)
    for (let b = 0; b < off.length; b++) off[b] *= block
    return off
  }
  const mLq = maskShape === null ? 1 : mShape[mShape.length - 2]
  const mLk = maskShape === null ? 1 : mShape[mShape.length - 1]

  return {
    batchShape,
    B,
    Lq,
    Lk,
    E,
    Ev,
    scale,
    causal: params.causal === true,
    returnWeights: params.returnWeights === true,
    qOffsets: offsets(qBatch, Lq * E),
    kOffsets: offsets(kBatch, Lk * E),
    vOffsets: offsets(vBatch, Lk * Ev),
    maskKind,
    maskOffsets: maskShape === null ? null : offsets(mBatch, mLq * mLk),
    maskRowStride: mLq === 1 ? 0 : mLk,
    maskColStride: mLk === 1 ? 0 : 1,
    outShape,
    weightsShape,
    flops
  }
}

/**
 * Computes attention into `out` (`info.outShape`) and, when non-null, the softmax weights into
 * `weights` (`info.weightsShape`). Every element of both is written. On the native engine where
 * it is enabled (worker threads) and the problem is not tiny (see onEngine), else on the
 * WebAssembly SIMD kernels: per batch, scores = query·keyᵀ (GEMM), scaled, masked and softmaxed row by row in
 * place, then output = weights·value (GEMM; a row-by-row sum that skips zero weights when the
 * value block holds a NaN or an infinity). float32 computes in float32 (see computesInF32),
 * float64 in float64.
 */
export function attention (
  out: FloatArray,
  weights: FloatArray | null,
  query: FloatArray,
  key: FloatArray,
  value: FloatArray,
  mask: FloatArray | Uint8Array | null,
  info: AttentionInfo
): void {
  if (out.length === 0 && (weights === null || weights.length === 0)) return
  const { B, Lq, Lk, E, Ev, scale, causal, qOffsets, kOffsets, vOffsets, maskOffsets, maskRowStride, maskColStride } = info
  // float32 runs in float32 unless the problem is small (F32_MIN_MACS) or the scale itself is
  // outside float32's normal range (it would round to 0, a subnormal or ∞ there): then in float64,
  // as the reference does, rounded at the end
  const single = scaleFitsF32(scale) && computesInF32(out, B * Lq * Lk * (E + Ev))
  if ((single || out instanceof Float64Array) && E > 0 && Lk > 0 && useEngine(B * Lq * Lk * (E + Ev)) &&
    onEngine(out, weights, query, key, value, mask, info)) return
  const es = single ? 4 : 8
  const maskKind = mask === null || maskOffsets === null ? 0 : info.maskKind === 'bool' ? 1 : 2
  const keepWeights = weights !== null && weights.length > 0
  const ws = begin()
  try {
    const work = ws.allocWork()
    const pq = ws.alloc(query.length, es)
    const pk = ws.alloc(key.length, es)
    const pv = ws.alloc(value.length, es)
    const pm = maskKind === 0 || mask === null ? 0 : ws.alloc(mask.length, maskKind === 1 ? 1 : es)
    const offs = ws.alloc(4 * B, 4)
    const ps = ws.alloc((keepWeights ? B : 1) * Lq * Lk, es)
    const po = ws.alloc(B * Lq * Ev, es)
    ws.commit()
    ws.view(single, pq, query.length).set(query)
    ws.view(single, pk, key.length).set(key)
    ws.view(single, pv, value.length).set(value)
    if (mask !== null && maskKind === 1) {
      const m = ws.u8(pm, mask.length)
      if (mask instanceof Uint8Array) m.set(mask)
      else for (let i = 0; i < mask.length; i++) m[i] = mask[i] === 0 ? 0 : 1 // nonzero (NaN too) may attend
    }
    if (mask !== null && maskKind === 2) ws.view(single, pm, mask.length).set(mask)
    const tables = ws.i32(offs, 4 * B)
    tables.set(qOffsets, 0)
    tables.set(kOffsets, B)
    tables.set(vOffsets, 2 * B)
    if (maskOffsets !== null) tables.set(maskOffsets, 3 * B)
    const fn = single ? ws.x.attentionF32 : ws.x.attentionF64
    fn(B, Lq, Lk, E, Ev, pq, offs, pk, offs + 4 * B, pv, offs + 8 * B, scale, causal ? 1 : 0,
      maskKind, pm, offs + 12 * B, maskRowStride, maskColStride, ps, keepWeights ? Lq * Lk : 0, po, work)
    if (out.length > 0) out.set(ws.view(single, po, out.length))
    if (weights !== null && keepWeights) weights.set(ws.view(single, ps, weights.length))
  } finally {
    end()
  }
}

/** Whether float32 keeps the scale as it is (0, or a normal float32): else float32 work runs in float64. */
export function scaleFitsF32 (scale: number): boolean {
  return scale === 0 || (Math.abs(Math.fround(scale)) >= 2 ** -126 && Number.isFinite(Math.fround(scale)))
}

/** The [B, L, D] blocks of x at the given offsets, back to back (x itself when they already are). */
export function blocks (x: FloatArray, offsets: Int32Array, size: number): FloatArray {
  let plain = true
  for (let b = 0; b < offsets.length && plain; b++) plain = offsets[b] === b * size
  if (plain) return x.length === offsets.length * size ? x : x.subarray(0, offsets.length * size)
  const out = x instanceof Float32Array ? new Float32Array(offsets.length * size) : new Float64Array(offsets.length * size)
  for (let b = 0; b < offsets.length; b++) out.set(x.subarray(offsets[b], offsets[b] + size), b * size)
  return out
}

/**
 * Attention on the native engine: the mask and `causal` become one additive [B,Lq,Lk] term (−∞ for
 * a removed key). Where the engine's result can differ from the semantics above, it is not finite:
 * a row that attends to no key (its softmax is NaN there), a NaN or infinity in a removed key's row
 * (its score is NaN there, not −∞), in a query, or in a value row behind a zero weight (0·∞). So a
 * result that is not all finite is computed again on the WebAssembly kernel, and false returned.
 * (The output shows a row's NaN weights, unless Ev = 0: then the weights are checked.)
 */
function onEngine (
  out: FloatArray, weights: FloatArray | null,
  query: FloatArray, key: FloatArray, value: FloatArray, mask: FloatArray | Uint8Array | null, info: AttentionInfo
): boolean {
  const { B, Lq, Lk, E, Ev, scale, qOffsets, kOffsets, vOffsets } = info
  const additive = additiveMask(out, mask, info)
  const w = weights !== null && weights.length > 0 ? weights : null
  engineAttention(out, w, blocks(query, qOffsets, Lq * E), blocks(key, kOffsets, Lk * E), blocks(value, vOffsets, Lk * Ev),
    additive, scale, B, Lq, Lk, E, Ev)
  return Ev > 0 ? allFinite(out) : w === null || allFinite(w)
}

/**
 * The mask and `causal` as one additive [B,Lq,Lk] term of out's type (−∞ for a removed key), or
 * null when there is neither.
 */
export function additiveMask (like: FloatArray, mask: FloatArray | Uint8Array | null, info: AttentionInfo): FloatArray | null {
  const { B, Lq, Lk, causal, maskOffsets, maskRowStride, maskColStride } = info
  if (!causal && (mask === null || maskOffsets === null)) return null
  const additive = like instanceof Float32Array ? new Float32Array(B * Lq * Lk) : new Float64Array(B * Lq * Lk)
  const bool = info.maskKind === 'bool'
  for (let b = 0; b < B; b++) {
    const mBase = maskOffsets === null ? 0 : maskOffsets[b]
    for (let i = 0; i < Lq; i++) {
      const row = (b * Lq + i) * Lk
      const mRow = mBase + i * maskRowStride
      const visible = causal && i + 1 < Lk ? i + 1 : Lk
      for (let j = 0; j < Lk; j++) {
        let x = 0
        if (j >= visible) x = -Infinity
        else if (mask !== null && maskOffsets !== null) {
          const mv = mask[mRow + j * maskColStride]
          x = bool ? (mv === 0 ? -Infinity : 0) : mv
        }
        additive[row + j] = x
      }
    }
  }
  return additive
}
