export type DType = 'float32' | 'float64'
/** The dtypes of the wire; float16 and bfloat16 values are held, and computed, in Float32Array (src/tensor/half.ts). */
export type WireDType = DType | 'float16' | 'bfloat16'
export type FloatArray = Float32Array | Float64Array

/** A decoded tensor: row-major (C order) data of the given shape. */
export interface Tensor {
  shape: number[]
  dtype: DType
  data: FloatArray
}

/** The size limits every operation checks from shapes alone, before allocating. */
export interface Limits {
  /** Largest element count of any one tensor: operand, result or intermediate buffer. */
  maxElements: number
  /** Largest work of one request, counted as 2 x multiply-adds. */
  maxFlops: number
  /** Largest JSON reply, counted from the shapes before computing (0 or absent: no limit). */
  maxJsonReplyBytes?: number
  /** Most nodes of one graph (absent: 64). */
  maxGraphNodes?: number
}

/**
 * The arrays a gradient kernel fills, zeroed, each given only when asked for: the gradients of the
 * operands by name, and the forward result (with attention's weights).
 */
export interface GradArrays<Operand extends string> {
  grads: Partial<Record<Operand, FloatArray>>
  result?: FloatArray
  weights?: FloatArray
}

/** The array type a dtype's values are held and computed in. */
export function kernelDtype (dtype: WireDType): DType {
  return dtype === 'float64' ? 'float64' : 'float32'
}

export function allocate (dtype: WireDType, length: number): FloatArray {
  return dtype === 'float64' ? new Float64Array(length) : new Float32Array(length)
}
